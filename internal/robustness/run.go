package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	store "github.com/embedkv/store"
	"github.com/embedkv/store/internal/robustness/testcluster"
)

// Root is the prefix every key of a run lives under; KVPrefix holds the
// linearizability workload's keys.
const (
	Root     = "rb/"
	KVPrefix = Root + "kv/"
)

// RunConfig configures one run.
type RunConfig struct {
	Nodes    int
	Seed     uint64
	Duration time.Duration // of the workload under faults
	Faults   []FaultKind   // nil: AllFaults
	Workload Workload      // zero: DefaultWorkload(KVPrefix)
	// Artifacts is where a failing run writes porcupine's visualisation
	// and its operations (default $EMBEDKV_ARTIFACTS, else a directory
	// under os.TempDir that survives the test).
	Artifacts string
	Logger    *slog.Logger

	// doctor, if set, alters the recorded operations before the checks
	// (self-tests that the checks fail); such runs stay out of the totals.
	doctor func([]Op)
}

// Result is what a run found. Problems lists every failed property.
type Result struct {
	Name                  string
	Seed                  uint64
	Processes             bool // the nodes ran as child processes
	Ops                   OpCounts
	Txns                  TxnCounts
	Witness               *WitnessReport
	Porcupine             PorcupineResult
	Revisions             int64 // of the final committed history
	MultiKeyRevs          int   // revisions of the final history that changed several keys
	LostBefore, LostAfter int   // acknowledged writes missing after heal / after full restart
	WatchEvents           int
	WatchViolations       []string
	Leases                LeaseTotals
	Bad                   *BadReport
	BadViolations         []string // Bad.Violations and markers found written
	Faults                *NemesisReport
	Problems              []string
}

// TxnCounts tallies the multi-key txns of a history.
type TxnCounts struct {
	Total, Then, Else, Unknown, Failed int
}

// CountTxns counts the OpTxn operations of ops.
func CountTxns(ops []Op) TxnCounts {
	var c TxnCounts
	for i := range ops {
		op := &ops[i]
		if op.Kind != OpTxn {
			continue
		}
		c.Total++
		switch {
		case op.Outcome == Unknown:
			c.Unknown++
		case op.Outcome == Failed:
			c.Failed++
		case op.Succeeded:
			c.Then++
		default:
			c.Else++
		}
	}
	return c
}

// multiKeyRevs counts the revisions of h that changed more than one key.
func multiKeyRevs(h *History) int {
	n := 0
	for _, evs := range h.Events {
		if len(evs) > 1 {
			n++
		}
	}
	return n
}

// Linearizable reports whether both checkers accepted the history.
func (r *Result) Linearizable() bool {
	return r.Witness != nil && len(r.Witness.Violations) == 0 && r.Porcupine.Result == porcupine.Ok
}

// Lines is the run's summary, one line per property.
func (r *Result) Lines() []string {
	lin := 0
	if r.Linearizable() {
		lin = 1
	}
	u := r.Witness
	if u == nil {
		u = &WitnessReport{}
	}
	faults := map[FaultKind]int{}
	if r.Faults != nil {
		faults = r.Faults.Injected
	}
	lines := []string{
		fmt.Sprintf("histories checked: 1 (linearizable: %d; porcupine %s on %d operations in %v, witness violations %d)",
			lin, r.Porcupine.Result, r.Porcupine.Operations, r.Porcupine.Elapsed.Round(time.Millisecond), len(u.Violations)),
		fmt.Sprintf("operations: %d (ok %d, failed %d, unknown %d: applied %d, not applied %d, unresolved %d); revisions %d",
			r.Ops.Total, r.Ops.OK, r.Ops.Failed, r.Ops.Unknown, u.UnknownApplied, u.UnknownNotApplied, u.UnknownUnresolved, r.Revisions),
		fmt.Sprintf("multi-key txns: %d (then %d, else %d, unknown %d, failed %d); revisions changing several keys: %d",
			r.Txns.Total, r.Txns.Then, r.Txns.Else, r.Txns.Unknown, r.Txns.Failed, r.MultiKeyRevs),
		fmt.Sprintf("acknowledged writes lost: %d (after heal %d, after full restart %d)", r.LostBefore+r.LostAfter, r.LostBefore, r.LostAfter),
		fmt.Sprintf("watch events checked: %d, violations: %d", r.WatchEvents, len(r.WatchViolations)),
	}
	if !r.Processes {
		lines = append(lines, fmt.Sprintf("lease expiries checked: %d, kept-alive leases checked: %d, violations: %d",
			r.Leases.Expiries, r.Leases.KeptAlive, r.Leases.Violations))
	}
	b := r.Bad
	if b == nil {
		b = &BadReport{}
	}
	lines = append(lines, fmt.Sprintf("bad requests checked: %d (sentinel %d, unavailable under faults %d), violations: %d",
		b.Checked, b.Rejected, b.Unavailable, len(r.BadViolations)))
	return append(lines, fmt.Sprintf("faults injected: %s", FaultCounts(faults)))
}

// Run runs the workload against a fresh cluster under the nemesis, then
// checks every property, and reports failures through t.Errorf (with the
// seed). It returns the result for the summary.
func Run(t testing.TB, cfg RunConfig) *Result {
	t.Helper()
	res := startRun(t, &cfg, false)
	defer finishRun(t, cfg, res)
	if cfg.Faults == nil {
		cfg.Faults = AllFaults
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x656d6265646b76))
	clusterSeed, clientSeed, leaseSeed := rng.Uint64(), rng.Uint64(), rng.Uint64()
	schedule := Schedule(rng, cfg.Faults, 1000)
	badSeed := rng.Uint64()

	c := testcluster.New(t, testcluster.Options{
		Nodes: cfg.Nodes, Seed: clusterSeed, Logger: cfg.Logger,
		Config: func(_ int, sc *store.Config) {
			sc.CompactionRetention = -1 // reads at every past revision
			// Snapshots, log compaction, restores on restart and
			// InstallSnapshot to lagging followers all happen in a run.
			sc.SnapshotThreshold, sc.TrailingLogs = 128, 160
			sc.SnapshotInterval = time.Second
		},
	})
	nem := &Nemesis{C: c, Schedule: schedule, Recover: 30 * time.Second}
	runAndCheck(t, cfg, res, rng, runCluster{
		tg:         inProc{c},
		bad:        inProcBad{c},
		nemesis:    nem.Run,
		clientSeed: clientSeed,
		badSeed:    badSeed,
		startLeases: func(grants context.Context, clk *Clock) *LeaseWorkload {
			return StartLeases(grants, c, clk, leaseSeed)
		},
		// Heal, and let the expiring leases expire.
		heal: func(problem func(string, ...any)) {
			c.Heal()
			if err := WaitExpired(c, 60*time.Second); err != nil {
				problem("leases: %v", err)
			}
		},
		afterFaults: "healing",
		// Kill every node, restart them all from disk.
		restartAll: func(problem func(string, ...any)) bool {
			for i := range c.N() {
				if err := c.Kill(i); err != nil {
					problem("full kill: %v", err)
				}
			}
			for i := range c.N() {
				if err := c.Restart(i); err != nil {
					problem("full restart: %v", err)
					return false
				}
			}
			return true
		},
		restart: "the full restart",
		scan: func(i int) ([]KV, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return scanAll(ctx, c.Node(i))
		},
	})
	return res
}

// startRun returns the Result of a run of cfg, logs its seed and fills in
// cfg's default workload. The caller defers finishRun.
func startRun(t testing.TB, cfg *RunConfig, processes bool) *Result {
	t.Helper()
	res := &Result{Name: t.Name(), Seed: cfg.Seed, Processes: processes}
	t.Logf("seed %d (rerun with EMBEDKV_SEED=%d)", cfg.Seed, cfg.Seed)
	if cfg.Workload.Prefix == "" {
		cfg.Workload = DefaultWorkload(KVPrefix)
	}
	return res
}

// finishRun reports res's problems through t.Errorf (with the seed), logs
// its summary and adds it to the totals (unless the run was doctored).
func finishRun(t testing.TB, cfg RunConfig, res *Result) {
	for _, p := range res.Problems {
		t.Errorf("seed %d: %s", cfg.Seed, p)
	}
	for _, l := range res.Lines() {
		t.Log(l)
	}
	if cfg.doctor == nil {
		totals.add(res)
	}
}

// problem records a failed property.
func (r *Result) problem(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// runCluster is what differs between an in-process run (Run) and a run
// with every node in a child process (RunProc): the steps they share,
// runAndCheck, reach the cluster through it.
type runCluster struct {
	tg  Target
	bad badEnv
	// nemesis injects the run's fault schedule until its ctx ends.
	nemesis             func(ctx context.Context, clk *Clock) *NemesisReport
	clientSeed, badSeed uint64
	// startLeases, if set, starts the lease workload (granting until
	// grants ends); its leases are checked at the end.
	startLeases func(grants context.Context, clk *Clock) *LeaseWorkload
	// heal, if set, runs after the faults, before the history is read.
	heal func(problem func(string, ...any))
	// afterFaults names the moment of the first read of the history in
	// problems ("after <afterFaults>: ...").
	afterFaults string
	// restartAll kills every node and restarts them all from disk; false
	// ends the run (it reported why through problem).
	restartAll func(problem func(string, ...any)) bool
	// restart names restartAll in problems ("after <restart>: ...").
	restart string
	// scan reads node i's whole keyspace.
	scan func(i int) ([]KV, error)
}

// runAndCheck is the part of a run that does not depend on where the
// nodes live: it runs the workload's clients, the watchers, the bad-input
// client (and the lease workload) while the nemesis injects faults, reads
// and checks the committed history, restarts every node from disk, reads
// and checks it again, then checks linearizability. Problems go to res.
func runAndCheck(t testing.TB, cfg RunConfig, res *Result, rng *rand.Rand, rc runCluster) {
	t.Helper()
	problem := res.problem
	tg := rc.tg
	clk := NewClock()
	watchers := StartWatchers(tg, clk, Root)
	defer watchers.Stop()

	// Clients, bad input, leases and nemesis.
	cctx, stopClients := context.WithCancel(context.Background())
	defer stopClients()
	opsCh := make(chan []Op, 1)
	go func() { opsCh <- RunClients(cctx, tg, clk, cfg.Workload, rc.clientSeed) }()
	bad := startBadInput(cctx, rc.bad, rc.badSeed)
	defer bad.Wait()
	var leases *LeaseWorkload
	if rc.startLeases != nil {
		leases = rc.startLeases(cctx, clk)
		defer leases.StopRenewing()
	}
	nctx, stopNemesis := context.WithTimeout(context.Background(), cfg.Duration)
	res.Faults = rc.nemesis(nctx, clk)
	stopNemesis()
	for _, e := range res.Faults.Errors {
		problem("nemesis: %s", e)
	}
	time.Sleep(time.Second) // clients finish on a healthy cluster
	stopClients()
	ops := <-opsCh
	res.Bad = bad.Wait()
	res.BadViolations = append(res.BadViolations, res.Bad.Violations...)
	if cfg.doctor != nil {
		cfg.doctor(ops)
	}
	res.Ops = CountOps(ops)
	res.Txns = CountTxns(ops)
	t.Logf("errors by class: %v", res.Ops.Errors)
	t.Logf("bad requests by case: %v", res.Bad.ByCase)
	for _, l := range res.Faults.Log {
		t.Log("nemesis", l)
	}

	// Read the committed history on every node.
	if rc.heal != nil {
		rc.heal(problem)
	}
	hist, err := settleTarget(tg)
	if leases != nil {
		leases.StopRenewing()
	}
	if err != nil {
		problem("after %s: %v", rc.afterFaults, err)
		return
	}
	if err := watchers.WaitFor(hist.Rev, 30*time.Second); err != nil {
		problem("%v", err)
	}
	watchers.Stop()
	for _, v := range hist.Validate(true) {
		problem("%s", v)
	}
	res.LostBefore = len(LostWrites(ops, hist))
	for _, l := range watchers.Logs {
		n, bad := CheckWatch(fmt.Sprintf("watcher on %s", tg.ID(l.Node)), l.Responses, hist, 1, hist.Rev)
		res.WatchEvents += n
		res.WatchViolations = append(res.WatchViolations, bad...)
	}

	// Restart every node from disk, and read again.
	if !rc.restartAll(problem) {
		return
	}
	final, err := settleTarget(tg)
	if err != nil {
		problem("after %s: %v", rc.restart, err)
		return
	}
	scans := map[string][]KV{}
	for i := range tg.N() {
		kvs, err := rc.scan(i)
		if err != nil {
			problem("scan of %s: %v", tg.ID(i), err)
		}
		scans[tg.ID(i)] = kvs
	}
	res.BadViolations = append(res.BadViolations, res.Bad.CheckAbsent([]*History{hist, final}, watchers.Logs, ops, scans)...)
	for _, v := range res.BadViolations {
		problem("%s", v)
	}
	res.Revisions = final.Rev
	res.MultiKeyRevs = multiKeyRevs(final)
	if d := hist.Diff(final); d != "" || final.Rev < hist.Rev {
		problem("history changed across %s (%d -> %d revisions): %s", rc.restart, hist.Rev, final.Rev, d)
	}
	res.LostAfter = len(LostWrites(ops, final))
	for _, op := range append(LostWrites(ops, hist), LostWrites(ops, final)...) {
		problem("acknowledged write lost: %s", op)
	}
	n, bad2 := checkResume(tg, final, rng)
	res.WatchEvents += n
	res.WatchViolations = append(res.WatchViolations, bad2...)
	for _, v := range res.WatchViolations {
		problem("watch: %s", v)
	}

	bounds := NewBounds(ops, FirstSeen(watchers.Logs), final.Rev)
	if leases != nil {
		lt, bad3, notes := CheckLeases(leases.Records(), hist, bounds.After)
		res.Leases = lt
		for _, v := range bad3 {
			problem("lease: %s", v)
		}
		for _, n := range notes {
			t.Log(n)
		}
	}
	checkLinearizability(t, res, cfg, ops, final, bounds, problem)
}

// checkLinearizability runs both checkers on ops against the final
// history, and dumps the operations and history when the run failed.
func checkLinearizability(t testing.TB, res *Result, cfg RunConfig, ops []Op, final *History, bounds *Bounds, problem func(string, ...any)) {
	for i := range ops {
		if ops[i].ErrClass == "malformed" {
			problem("malformed response: %s", &ops[i])
		}
	}
	res.Witness = CheckWitness(ops, final, cfg.Workload.Prefix)
	for _, v := range res.Witness.Violations {
		problem("witness: %s", v)
	}
	ph := PorcupineHistory(ops, cfg.Workload.Groups, res.Witness, bounds)
	dir := artifactsDir(cfg.Artifacts)
	name := fmt.Sprintf("%s-seed%d", sanitize(t.Name()), cfg.Seed)
	res.Porcupine = CheckPorcupine(ph, 3*time.Minute, dir, name)
	if res.Porcupine.Result != porcupine.Ok {
		problem("porcupine: %s (visualisation: %s %v)", res.Porcupine.Result, res.Porcupine.Visualization, res.Porcupine.VisErr)
	}
	if len(res.Problems) > 0 {
		path := filepath.Join(dir, name+"-ops.json")
		dump := struct {
			Ops     []Op
			History []Event
		}{Ops: ops}
		for _, evs := range final.Events {
			dump.History = append(dump.History, evs...)
		}
		if b, err := json.Marshal(dump); err == nil && os.MkdirAll(dir, 0o755) == nil && os.WriteFile(path, b, 0o644) == nil {
			t.Logf("operations and history written to %s", path)
		}
	}
}

// checkResume opens, on every node, a watch from a random past revision
// and checks it replays exactly the history from there (resumable).
func checkResume(tg Target, h *History, rng *rand.Rand) (int, []string) {
	total := 0
	var bad []string
	if h.Rev < 3 {
		return 0, nil
	}
	clk := NewClock()
	for i := range tg.N() {
		from := 2 + rng.Int64N(h.Rev-1) // revision 1 may be compacted
		conn, _ := tg.Conn(i)
		if conn == nil {
			bad = append(bad, fmt.Sprintf("%s is down for the resumed watch", tg.ID(i)))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var resps []WatchResponse
		for resp := range conn.Watch(ctx, clk, Root, from) {
			// Revisions after h (a kept-alive lease expiring now that
			// renewals stopped) are not part of the check.
			r := WatchResponse{Canceled: resp.Canceled, Err: resp.Err}
			for _, e := range resp.Events {
				if e.Rev <= h.Rev {
					r.Events = append(r.Events, e)
				}
			}
			resps = append(resps, r)
			if n := len(r.Events); n > 0 && r.Events[n-1].Rev == h.Rev {
				break
			}
		}
		cancel()
		conn.Close()
		n, b := CheckWatch(fmt.Sprintf("watch on %s resumed from %d", tg.ID(i), from), resps, h, from, h.Rev)
		total += n
		bad = append(bad, b...)
	}
	return total, bad
}

func artifactsDir(dir string) string {
	if dir == "" {
		dir = os.Getenv("EMBEDKV_ARTIFACTS")
	}
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "embedkv-robustness")
	}
	return dir
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// totals aggregates the results of every run in the test binary, for the
// summary TestMain prints.
var totals = &Totals{Faults: map[FaultKind]int{}}

// Totals sums Results.
type Totals struct {
	mu                         sync.Mutex
	Histories, Linearizable    int
	ProcHistories, ProcLinear  int
	Ops                        OpCounts
	Txns                       TxnCounts
	MultiKeyRevs               int
	UnknownApplied, NotApplied int
	Lost, ProcLost             int
	WatchEvents, WatchBad      int
	Faults                     map[FaultKind]int
	Leases                     LeaseTotals
	Bad                        BadReport
	BadViolations              int
	Seeds                      []uint64
}

// LeaseTotals sums the lease property's checks.
type LeaseTotals struct {
	Expiries, KeptAlive, Violations int
}

func (t *Totals) add(r *Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Histories++
	if r.Linearizable() {
		t.Linearizable++
	}
	if r.Processes {
		t.ProcHistories++
		if r.Linearizable() {
			t.ProcLinear++
		}
		t.ProcLost += r.LostBefore + r.LostAfter
	}
	t.Ops.Total += r.Ops.Total
	t.Ops.OK += r.Ops.OK
	t.Ops.Failed += r.Ops.Failed
	t.Ops.Unknown += r.Ops.Unknown
	t.Txns.Total += r.Txns.Total
	t.Txns.Then += r.Txns.Then
	t.Txns.Else += r.Txns.Else
	t.Txns.Unknown += r.Txns.Unknown
	t.Txns.Failed += r.Txns.Failed
	t.MultiKeyRevs += r.MultiKeyRevs
	if r.Witness != nil {
		t.UnknownApplied += r.Witness.UnknownApplied
		t.NotApplied += r.Witness.UnknownNotApplied
	}
	t.Lost += r.LostBefore + r.LostAfter
	t.WatchEvents += r.WatchEvents
	t.WatchBad += len(r.WatchViolations)
	if r.Faults != nil {
		for k, n := range r.Faults.Injected {
			t.Faults[k] += n
		}
	}
	t.Leases.Expiries += r.Leases.Expiries
	t.Leases.KeptAlive += r.Leases.KeptAlive
	t.Leases.Violations += r.Leases.Violations
	if r.Bad != nil {
		t.Bad.Checked += r.Bad.Checked
		t.Bad.Rejected += r.Bad.Rejected
		t.Bad.Unavailable += r.Bad.Unavailable
	}
	t.BadViolations += len(r.BadViolations)
	t.Seeds = append(t.Seeds, r.Seed)
}

// Lines is the summary of every run so far, one line per property.
func (t *Totals) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return []string{
		fmt.Sprintf("histories checked: %d (linearizable: %d)", t.Histories, t.Linearizable),
		fmt.Sprintf("operations: %d (ok %d, failed %d, unknown %d: %d applied, %d not applied)",
			t.Ops.Total, t.Ops.OK, t.Ops.Failed, t.Ops.Unknown, t.UnknownApplied, t.NotApplied),
		fmt.Sprintf("multi-key txns: %d (then %d, else %d, unknown %d, failed %d); revisions changing several keys: %d",
			t.Txns.Total, t.Txns.Then, t.Txns.Else, t.Txns.Unknown, t.Txns.Failed, t.MultiKeyRevs),
		fmt.Sprintf("acknowledged writes lost: %d", t.Lost),
		fmt.Sprintf("watch events checked: %d, violations: %d", t.WatchEvents, t.WatchBad),
		fmt.Sprintf("lease expiries checked: %d, kept-alive leases checked: %d, violations: %d",
			t.Leases.Expiries, t.Leases.KeptAlive, t.Leases.Violations),
		fmt.Sprintf("bad requests checked: %d (sentinel %d, unavailable under faults %d), violations: %d",
			t.Bad.Checked, t.Bad.Rejected, t.Bad.Unavailable, t.BadViolations),
		fmt.Sprintf("separate processes: histories %d (linearizable: %d), acknowledged writes lost: %d",
			t.ProcHistories, t.ProcLinear, t.ProcLost),
		fmt.Sprintf("faults injected: %s", FaultCounts(t.Faults)),
		fmt.Sprintf("seeds: %v", t.Seeds),
	}
}
