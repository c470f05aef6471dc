//go:build linux

package robustness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	store "github.com/embedkv/store"
	"github.com/embedkv/store/internal/robustness/proccluster"
)

// procTarget is a Target whose nodes are child processes.
type procTarget struct{ pc *proccluster.Cluster }

func (p *procTarget) N() int          { return p.pc.N() }
func (p *procTarget) ID(i int) string { return fmt.Sprintf("n%d", i+1) }

func (p *procTarget) Incarnation(i int) int {
	_, inc := p.pc.Addr(i)
	return inc
}

func (p *procTarget) Conn(i int) (Conn, int) {
	addr, inc := p.pc.Addr(i)
	if addr == "" {
		return nil, 0
	}
	return &procConn{addr: addr}, inc
}

// status asks node i for its raft status (nil if it is down, paused or
// does not answer quickly).
func (p *procTarget) status(i int) *store.Status {
	addr, _ := p.pc.Addr(i)
	if addr == "" || p.pc.Paused(i) {
		return nil
	}
	c := &procConn{addr: addr}
	defer c.Close()
	resp, _, err := c.call(procRequest{Cmd: "status"}, time.Second)
	if err != nil {
		return nil
	}
	return resp.Status
}

// Leader returns the running, unpaused node that believes it leads with
// the highest term, or -1.
func (p *procTarget) Leader() int {
	best, term := -1, uint64(0)
	for i := range p.N() {
		if st := p.status(i); st != nil && st.RaftState == "Leader" && st.Term >= term {
			best, term = i, st.Term
		}
	}
	return best
}

// WaitLeader polls until every running, unpaused node names the same
// leader, which is one of them and leads.
func (p *procTarget) WaitLeader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, why := p.agreedLeader()
		if l >= 0 {
			return l, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no agreed leader after %v: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
}

func (p *procTarget) agreedLeader() (int, string) {
	leader, running := "", 0
	states := map[string]string{}
	for i := range p.N() {
		if !p.pc.Up(i) || p.pc.Paused(i) {
			continue
		}
		st := p.status(i)
		if st == nil {
			return -1, fmt.Sprintf("%s does not answer", p.ID(i))
		}
		running++
		states[st.NodeID] = st.RaftState
		if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
			return -1, fmt.Sprintf("%s sees leader %q", st.NodeID, st.LeaderID)
		}
		leader = st.LeaderID
	}
	if running == 0 {
		return -1, "no node is running"
	}
	if states[leader] != "Leader" {
		return -1, fmt.Sprintf("leader %q is %q", leader, states[leader])
	}
	var l int
	if _, err := fmt.Sscanf(leader, "n%d", &l); err != nil {
		return -1, fmt.Sprintf("unknown leader %q", leader)
	}
	return l - 1, ""
}

// procConn is a Conn over a child's control protocol. One connection
// carries one request at a time; it is re-dialled after any failure.
type procConn struct {
	addr string
	conn net.Conn
	enc  *json.Encoder
	dec  *json.Decoder
}

func (c *procConn) Close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// call sends req and waits up to wait for the answer. sent is false when
// the request certainly never reached the child (the dial failed).
func (c *procConn) call(req procRequest, wait time.Duration) (resp procResponse, sent bool, err error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, time.Second)
		if err != nil {
			return resp, false, err
		}
		c.conn, c.enc, c.dec = conn, json.NewEncoder(conn), json.NewDecoder(bufio.NewReader(conn))
	}
	_ = c.conn.SetDeadline(time.Now().Add(wait))
	if err := c.enc.Encode(&req); err != nil {
		c.Close()
		return resp, true, err
	}
	if err := c.dec.Decode(&resp); err != nil {
		c.Close() // a late answer would arrive out of step
		return resp, true, err
	}
	return resp, true, nil
}

func (c *procConn) Do(clk *Clock, op Op, timeout time.Duration) Op {
	call := clk.Now()
	op.Call = call
	resp, sent, err := c.call(procRequest{Cmd: "op", Op: &op, TimeoutMs: timeout.Milliseconds()}, timeout+time.Second)
	ret := clk.Now()
	if err == nil && resp.Op == nil {
		err = errors.New(resp.Err)
	}
	if err != nil {
		op.Return = ret
		op.Err, op.ErrClass = "control connection: "+err.Error(), "conn"
		switch {
		case !sent:
			op.Outcome = Failed // never reached the node
		case op.Kind.IsWrite():
			op.Outcome = Unknown // the node may have applied it (a paused node may still)
		default:
			op.Outcome = Failed
		}
		return op
	}
	out := *resp.Op
	out.Call, out.Return = call, ret
	return out
}

func (c *procConn) Watch(ctx context.Context, clk *Clock, prefix string, from int64) <-chan WatchResponse {
	out := make(chan WatchResponse)
	go func() {
		defer close(out)
		conn, err := net.DialTimeout("tcp", c.addr, time.Second)
		if err != nil {
			return
		}
		defer conn.Close()
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		defer stop()
		if err := json.NewEncoder(conn).Encode(&procRequest{Cmd: "watch", Prefix: prefix, Rev: from}); err != nil {
			return
		}
		dec := json.NewDecoder(bufio.NewReader(conn))
		for {
			var resp procResponse
			if err := dec.Decode(&resp); err != nil || resp.Watch == nil {
				return // the node died, or ctx ended
			}
			r := *resp.Watch
			r.Time = clk.Now()
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func ctxWait(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return time.Minute
}

func (c *procConn) Rev(ctx context.Context) (int64, error) {
	wait := ctxWait(ctx)
	resp, _, err := c.call(procRequest{Cmd: "rev", TimeoutMs: wait.Milliseconds()}, wait+time.Second)
	if err == nil && resp.Err != "" {
		err = errors.New(resp.Err)
	}
	return resp.Rev, err
}

func (c *procConn) History(ctx context.Context, prefix string, upTo int64) (*History, error) {
	wait := ctxWait(ctx)
	resp, _, err := c.call(procRequest{Cmd: "history", Prefix: prefix, Rev: upTo, TimeoutMs: wait.Milliseconds()}, wait+time.Second)
	if err == nil && resp.Err != "" {
		err = errors.New(resp.Err)
	}
	if err != nil {
		return nil, err
	}
	return NewHistory(prefix, resp.Rev, resp.Events), nil
}

// procBad is the badEnv of a process cluster: the children run the cases.
type procBad struct{ t *procTarget }

func (e procBad) N() int          { return e.t.N() }
func (e procBad) ID(i int) string { return e.t.ID(i) }

func (e procBad) issue(bc *badCase, node int, key, val string) (error, bool, bool) {
	if bc.retired {
		return nil, false, false // a child never closes its store
	}
	addr, _ := e.t.pc.Addr(node)
	if addr == "" || e.t.pc.Paused(node) {
		return nil, false, false
	}
	c := &procConn{addr: addr}
	defer c.Close()
	resp, _, err := c.call(procRequest{Cmd: "bad", Case: bc.name, Key: key, Value: val}, 4*time.Second)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", errConnLost, err), true, true
	case resp.Op == nil:
		return fmt.Errorf("child: %s", resp.Err), false, true
	case resp.Err == "":
		return nil, false, true
	}
	return newRemoteError(resp.Err, resp.Sentinels), false, true
}

func (e procBad) compact() bool {
	l := e.t.Leader()
	if l < 0 {
		return false
	}
	addr, _ := e.t.pc.Addr(l)
	c := &procConn{addr: addr}
	defer c.Close()
	resp, _, err := c.call(procRequest{Cmd: "compact"}, 4*time.Second)
	return err == nil && resp.Err == ""
}

// scan reads node i's whole keyspace.
func (e procBad) scan(i int) ([]KV, error) {
	addr, _ := e.t.pc.Addr(i)
	c := &procConn{addr: addr}
	defer c.Close()
	resp, _, err := c.call(procRequest{Cmd: "scan"}, 10*time.Second)
	if err == nil && resp.Err != "" {
		err = errors.New(resp.Err)
	}
	return resp.KVs, err
}

// ProcSchedule draws the process profile's faults from rng: SIGKILL and
// SIGSTOP of the leader or a follower, in shuffled rounds, and one kill of
// every node at once among the first faults.
func ProcSchedule(rng *rand.Rand, count int) []Fault {
	fs := Schedule(rng, []FaultKind{Sigkill, Sigstop}, count)
	fs[2+rng.IntN(3)].Kind = KillAll
	return fs
}

// procNemesis injects a schedule of process faults.
type procNemesis struct {
	t        *procTarget
	Schedule []Fault
	Recover  time.Duration
}

// Run injects faults until ctx ends or the schedule is exhausted, always
// undoing the fault in progress (SIGCONT, restart) before returning.
func (n *procNemesis) Run(ctx context.Context, clk *Clock) *NemesisReport {
	return runSchedule(ctx, clk, n.Schedule, n.inject, n.t.WaitLeader, n.Recover)
}

func (n *procNemesis) inject(ctx context.Context, f Fault) (string, error) {
	pc := n.t.pc
	hold := func() { sleepCtx(ctx, f.Hold) }
	if f.Kind == KillAll {
		kerr := pc.KillAll()
		hold()
		var errs []error
		for i := range pc.N() {
			errs = append(errs, pc.Start(i))
		}
		return "killed every node at once and restarted them", errors.Join(append(errs, kerr)...)
	}
	leader := n.t.Leader()
	if leader < 0 {
		return "", nil
	}
	victim, role := leader, "leader"
	if !f.WithLeader {
		var fs []int
		for i := range pc.N() {
			if i != leader {
				fs = append(fs, i)
			}
		}
		victim, role = fs[f.Pick%uint64(len(fs))], "follower"
	}
	id := n.t.ID(victim)
	switch f.Kind {
	case Sigkill:
		kerr := pc.Kill(victim)
		hold()
		return fmt.Sprintf("SIGKILL %s %s, restarted", role, id), errors.Join(kerr, pc.Start(victim))
	case Sigstop:
		if err := pc.Pause(victim); err != nil {
			return "", err
		}
		// At least two election timeouts: the others elect a new leader
		// (or carry on without the follower) while it sleeps.
		sleepCtx(ctx, f.Hold+400*time.Millisecond)
		return fmt.Sprintf("SIGSTOP %s %s for %v, SIGCONT", role, id, (f.Hold + 400*time.Millisecond).Round(time.Millisecond)), pc.Resume(victim)
	}
	return "", fmt.Errorf("fault kind %s is not a process fault", f.Kind)
}

// RunProc is Run with every node in a child process (fsync on): the
// workload's clients and one watcher per node drive the children over the
// control protocol while the nemesis SIGKILLs and restarts nodes, pauses
// them with SIGSTOP/SIGCONT (leaders and followers alike) and once kills
// them all at once. Then it checks linearizability (both checkers), the
// watch guarantees, and that no acknowledged write is lost, after the
// faults and again after killing every node with SIGKILL and restarting
// them from their directories. A child that dies on its own, panics or
// reports a data race fails the run. The children's output (with their
// logs when EMBEDKV_TEST_LOG is set) is copied to the artifacts directory
// when the run fails.
func RunProc(t testing.TB, cfg RunConfig) *Result {
	t.Helper()
	res := startRun(t, &cfg, true)
	defer finishRun(t, cfg, res)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x70726f63))
	clientSeed := rng.Uint64()
	schedule := ProcSchedule(rng, 1000)
	badSeed := rng.Uint64()

	base := t.TempDir()
	addrs, err := freeAddrs(cfg.Nodes)
	if err != nil {
		t.Fatal(err)
	}
	var peers []store.Peer
	for i, a := range addrs {
		peers = append(peers, store.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
	}
	pc := proccluster.New(t, proccluster.Options{
		N: cfg.Nodes, LogDir: filepath.Join(base, "logs"),
		Payload: func(i int) string {
			b, _ := json.Marshal(procNodeConfig{NodeID: peers[i].ID, Dir: filepath.Join(base, peers[i].ID),
				BindAddr: addrs[i], Peers: peers, LogLevel: os.Getenv("EMBEDKV_TEST_LOG")})
			return string(b)
		},
	})
	defer func() {
		for _, p := range childProblems(pc) {
			res.problem("%s", p)
		}
		if len(res.Problems) > 0 { // keep the nodes' output (EMBEDKV_TEST_LOG=1 for their logs)
			dir := artifactsDir(cfg.Artifacts)
			for i := range pc.N() {
				b, err := os.ReadFile(pc.LogPath(i))
				path := filepath.Join(dir, fmt.Sprintf("%s-seed%d-n%d.log", sanitize(t.Name()), cfg.Seed, i+1))
				if err == nil && os.MkdirAll(dir, 0o755) == nil && os.WriteFile(path, b, 0o644) == nil {
					t.Logf("output of n%d written to %s", i+1, path)
				}
			}
		}
	}()
	for i := range cfg.Nodes {
		if err := pc.Start(i); err != nil {
			t.Fatal(err)
		}
	}
	tg := &procTarget{pc: pc}
	if _, err := tg.WaitLeader(60 * time.Second); err != nil {
		res.problem("start: %v", err)
		return res
	}
	nem := &procNemesis{t: tg, Schedule: schedule, Recover: 60 * time.Second}
	runAndCheck(t, cfg, res, rng, runCluster{
		tg:          tg,
		bad:         procBad{tg},
		nemesis:     nem.Run,
		clientSeed:  clientSeed,
		badSeed:     badSeed,
		afterFaults: "the faults",
		// SIGKILL every node at once and restart them all from disk.
		restartAll: func(problem func(string, ...any)) bool {
			if err := pc.KillAll(); err != nil {
				problem("final kill: %v", err)
			}
			for i := range cfg.Nodes {
				if err := pc.Start(i); err != nil {
					problem("final restart: %v", err)
					return false
				}
			}
			return true
		},
		restart: "the final kill and restart",
		scan:    procBad{tg}.scan,
	})
	return res
}

// childProblems reports children that exited on their own and children
// whose output shows a panic, a fatal error or a data race.
func childProblems(pc *proccluster.Cluster) []string {
	out := pc.Unexpected()
	for i := range pc.N() {
		b, err := os.ReadFile(pc.LogPath(i))
		if err != nil {
			continue
		}
		log := string(b)
		for _, sign := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if k := strings.Index(log, sign); k >= 0 {
				excerpt := log[k:min(len(log), k+3000)]
				out = append(out, fmt.Sprintf("n%d's output (%s) shows %q:\n%s", i+1, pc.LogPath(i), sign, excerpt))
			}
		}
	}
	return out
}

// freeAddrs reserves n distinct loopback ports and releases them for the
// nodes to bind.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
