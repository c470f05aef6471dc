package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/embedkv/store/internal/robustness/testcluster"
)

// FaultKind is a kind of fault the nemesis injects.
type FaultKind int

// Fault kinds.
const (
	LeaderKill   FaultKind = iota // kill the leader, restart it after Hold
	FollowerKill                  // kill a follower, restart it after Hold
	Partition                     // cut a minority off (both ways), with or without the leader
	OneWay                        // block one direction: leader -> everyone, or one pair
	Delay                         // delay every link
	Drop                          // drop connections on every link with some probability
	LeaderChange                  // isolate the leader briefly without killing it

	// Faults of the process profile (RunProc): the target is the leader
	// or a follower (Fault.WithLeader).
	Sigkill // SIGKILL a node's process, restart it from its directory after Hold
	Sigstop // SIGSTOP a node's process for Hold (longer than an election timeout), then SIGCONT
	KillAll // SIGKILL every node at once, restart them all after Hold
)

// AllFaults lists every fault kind of the in-process profile.
var AllFaults = []FaultKind{LeaderKill, FollowerKill, Partition, OneWay, Delay, Drop, LeaderChange}

// ProcFaults lists the fault kinds of the process profile.
var ProcFaults = []FaultKind{Sigkill, Sigstop, KillAll}

func (k FaultKind) String() string {
	return [...]string{"leader-kill", "follower-kill", "partition", "one-way", "delay", "drop", "leader-change",
		"sigkill", "sigstop", "kill-all"}[k]
}

// Fault is one step of the nemesis schedule. Everything in it is drawn
// from the seed; which node is "the leader" is resolved when the fault is
// injected, and Pick chooses among the nodes of the role it names.
type Fault struct {
	Kind       FaultKind
	Wait, Hold time.Duration // quiet time before the fault; how long it lasts
	Pick       uint64
	Mode       testcluster.Mode // Refuse or Blackhole, for partitions
	WithLeader bool             // partition: the minority includes the leader
	Delay      time.Duration    // delay: per chunk, plus up to Delay of jitter
	Drop       float64          // drop: probability per chunk
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s hold %v", f.Kind, f.Hold.Round(time.Millisecond))
	switch f.Kind {
	case Partition:
		s += fmt.Sprintf(" %s leader-in-minority=%v", f.Mode, f.WithLeader)
	case OneWay:
		s += fmt.Sprintf(" %s", f.Mode)
	case Delay:
		s += fmt.Sprintf(" %v+jitter", f.Delay)
	case Drop:
		s += fmt.Sprintf(" p=%.3f", f.Drop)
	}
	return s
}

// Schedule returns count faults drawn from rng: the kinds cycle through
// shuffled rounds of kinds, so a run sees every kind before any repeats.
// The result depends only on rng's state, kinds and count.
func Schedule(rng *rand.Rand, kinds []FaultKind, count int) []Fault {
	var out []Fault
	for len(out) < count {
		for _, i := range rng.Perm(len(kinds)) {
			f := Fault{
				Kind: kinds[i],
				Wait: time.Duration(300+rng.IntN(1200)) * time.Millisecond,
				Hold: time.Duration(800+rng.IntN(1700)) * time.Millisecond,
				Pick: rng.Uint64(),
				Mode: testcluster.Refuse,
			}
			if rng.IntN(2) == 0 {
				f.Mode = testcluster.Blackhole
			}
			f.WithLeader = rng.IntN(2) == 0
			f.Delay = time.Duration(5+rng.IntN(45)) * time.Millisecond
			f.Drop = 0.01 + 0.09*rng.Float64()
			out = append(out, f)
		}
	}
	return out[:count]
}

// NemesisReport says what the nemesis did.
type NemesisReport struct {
	Injected map[FaultKind]int
	Skipped  int      // faults that found no leader to target
	Errors   []string // harness errors and recovery failures
	Log      []string // one line per fault, with timings
}

// Nemesis injects a schedule of faults into a cluster.
type Nemesis struct {
	C        *testcluster.Cluster
	Schedule []Fault
	// Recover bounds the wait for an agreed leader after each fault heals
	// (a failure to recover is reported as an error).
	Recover time.Duration
}

// Run injects faults until ctx ends or the schedule is exhausted. It
// always undoes the fault in progress (heal, restart) before returning.
func (n *Nemesis) Run(ctx context.Context, clk *Clock) *NemesisReport {
	return runSchedule(ctx, clk, n.Schedule, n.inject, n.C.WaitLeader, n.Recover)
}

// runSchedule injects the faults of schedule one after another until ctx
// ends or the schedule is exhausted: it sleeps each fault's Wait, runs
// inject (which undoes the fault before it returns), then waits up to
// recoverWithin for waitLeader to find an agreed leader. Both nemeses
// (Nemesis, and procNemesis of the process profile) run their schedule
// with it.
func runSchedule(ctx context.Context, clk *Clock, schedule []Fault,
	inject func(context.Context, Fault) (string, error),
	waitLeader func(time.Duration) (int, error), recoverWithin time.Duration) *NemesisReport {
	rep := &NemesisReport{Injected: map[FaultKind]int{}}
	for _, f := range schedule {
		sleepCtx(ctx, f.Wait)
		if ctx.Err() != nil {
			break
		}
		start := clk.Now()
		what, err := inject(ctx, f)
		switch {
		case err != nil:
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", f, err))
		case what == "":
			rep.Skipped++
		default:
			rep.Injected[f.Kind]++
		}
		if _, err := waitLeader(recoverWithin); err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("after %s (%s): %v", f, what, err))
		}
		rep.Log = append(rep.Log, fmt.Sprintf("%8.3fs %s: %s; recovered at %.3fs", secs(start), f, what, secs(clk.Now())))
	}
	return rep
}

func secs(ns int64) float64 { return float64(ns) / 1e9 }

// inject performs f, waits f.Hold (cut short if ctx ends), and undoes it.
// It returns a description of what it did, or "" if it found no target.
func (n *Nemesis) inject(ctx context.Context, f Fault) (string, error) {
	c := n.C
	leader := c.Leader()
	if leader < 0 && f.Kind != Delay && f.Kind != Drop {
		return "", nil
	}
	others := func(except ...int) []int {
		var out []int
	next:
		for i := range c.N() {
			for _, e := range except {
				if i == e {
					continue next
				}
			}
			out = append(out, i)
		}
		return out
	}
	hold := func() { sleepCtx(ctx, f.Hold) }
	switch f.Kind {
	case LeaderKill, FollowerKill:
		victim := leader
		if f.Kind == FollowerKill {
			fs := others(leader)
			victim = fs[f.Pick%uint64(len(fs))]
		}
		kerr := c.Kill(victim)
		hold()
		return fmt.Sprintf("killed and restarted %s", c.ID(victim)), errors.Join(kerr, c.Restart(victim))
	case Partition, LeaderChange:
		size := 1
		if f.Kind == Partition && c.N() > 3 {
			size += int(f.Pick % uint64((c.N()-1)/2))
		}
		var minority []int
		if f.Kind == LeaderChange || f.WithLeader {
			minority = append(minority, leader)
		}
		rest := others(leader)
		rng := rand.New(rand.NewPCG(f.Pick, 0))
		rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
		minority = append(minority, rest[:size-len(minority)]...)
		sort.Ints(minority)
		mode := f.Mode
		if f.Kind == LeaderChange {
			mode = testcluster.Refuse
		}
		c.Partition(mode, minority)
		hold()
		c.Heal()
		return fmt.Sprintf("cut off %s (leader %s)", ids(c, minority), c.ID(leader)), nil
	case OneWay:
		var what string
		if f.Pick%2 == 0 {
			for _, i := range others(leader) {
				c.SetLink(leader, i, testcluster.Link{Mode: f.Mode})
			}
			what = fmt.Sprintf("blocked %s -> all", c.ID(leader))
		} else {
			a := int(f.Pick / 2 % uint64(c.N()))
			b := (a + 1 + int(f.Pick/2/uint64(c.N())%uint64(c.N()-1))) % c.N()
			c.SetLink(a, b, testcluster.Link{Mode: f.Mode})
			what = fmt.Sprintf("blocked %s -> %s (leader %s)", c.ID(a), c.ID(b), c.ID(leader))
		}
		hold()
		c.Heal()
		return what, nil
	case Delay:
		c.SetAllLinks(testcluster.Link{Delay: f.Delay, Jitter: f.Delay})
		hold()
		c.Heal()
		return fmt.Sprintf("delayed all links by %v + up to %v", f.Delay, f.Delay), nil
	case Drop:
		c.SetAllLinks(testcluster.Link{Drop: f.Drop})
		hold()
		c.Heal()
		return fmt.Sprintf("dropped connections with p=%.3f per chunk", f.Drop), nil
	}
	return "", fmt.Errorf("unknown fault kind %d", f.Kind)
}

func ids(c *testcluster.Cluster, nodes []int) string {
	var s []string
	for _, i := range nodes {
		s = append(s, c.ID(i))
	}
	return "{" + strings.Join(s, ",") + "}"
}

// FaultCounts formats per-kind counts in AllFaults, then ProcFaults order.
func FaultCounts(m map[FaultKind]int) string {
	var parts []string
	for _, k := range append(append([]FaultKind(nil), AllFaults...), ProcFaults...) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
