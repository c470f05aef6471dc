package robustness

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.uber.org/goleak"
)

// summaryMain runs the tests and then prints the summary of every run.
type summaryMain struct{ m *testing.M }

func (s summaryMain) Run() int {
	code := s.m.Run()
	if totals.Histories == 0 {
		return code
	}
	text := "robustness summary:\n  " + strings.Join(totals.Lines(), "\n  ") + "\n"
	fmt.Print(text)
	if dir := os.Getenv("EMBEDKV_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "robustness-summary.txt"), []byte(text), 0o644)
		}
	}
	return code
}

func TestMain(m *testing.M) {
	ServeIfChild() // a node of the process profile (RunProc) never returns
	goleak.VerifyTestMain(summaryMain{m})
}

// seed returns EMBEDKV_SEED if set, else a fresh random seed.
func seed(t testing.TB) uint64 {
	if s := os.Getenv("EMBEDKV_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("EMBEDKV_SEED=%q: %v", s, err)
		}
		return v
	}
	return rand.Uint64()
}

// testLogger prints the nodes' logs when EMBEDKV_TEST_LOG is set (at
// debug level when it is "debug").
func testLogger() *slog.Logger {
	level := slog.LevelInfo
	switch os.Getenv("EMBEDKV_TEST_LOG") {
	case "":
		return nil
	case "debug":
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// ciRuns is the CI profile: each run is a fresh cluster under every kind of
// fault for Duration, followed by the checks and a full restart.
var ciRuns = []struct {
	name     string
	nodes    int
	duration time.Duration
	faults   []FaultKind
}{
	{"3 nodes", 3, 30 * time.Second, nil},
	{"5 nodes", 5, 30 * time.Second, nil},
	{"3 nodes crashes", 3, 20 * time.Second, []FaultKind{LeaderKill, FollowerKill, LeaderChange}},
}

// TestLinearizability is the CI profile: linearizability, durability and
// watch guarantees under faults, on 3 and 5 nodes, with random seeds
// (EMBEDKV_SEED forces one).
func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection runs take about a minute; skipped with -short")
	}
	for _, tt := range ciRuns {
		t.Run(tt.name, func(t *testing.T) {
			Run(t, RunConfig{Nodes: tt.nodes, Seed: seed(t), Duration: tt.duration, Faults: tt.faults, Logger: testLogger()})
		})
	}
}

// TestSoak runs the same workloads as TestLinearizability, round after
// round with new seeds, for EMBEDKV_SOAK (a duration such as 30m), e.g.
//
//	EMBEDKV_SOAK=30m go test -race -run Soak -timeout 0 -v ./internal/robustness/
func TestSoak(t *testing.T) {
	d := os.Getenv("EMBEDKV_SOAK")
	if d == "" {
		t.Skip("soak profile: set EMBEDKV_SOAK=30m (and -timeout 0) to run it")
	}
	if testing.Short() {
		t.Skip("soak profile skipped with -short")
	}
	total, err := time.ParseDuration(d)
	if err != nil {
		t.Fatalf("EMBEDKV_SOAK=%q: %v", d, err)
	}
	deadline := time.Now().Add(total)
	for round := 1; time.Now().Before(deadline); round++ {
		// Rounds cycle: 3 nodes in process, 5 nodes in process, 3 or 5
		// nodes as child processes (SIGKILL, SIGSTOP; Linux only).
		nodes := []int{3, 5}[round%2]
		procs := round%3 == 0 && procProfile
		if procs {
			nodes = []int{3, 5}[round/3%2]
		}
		dur := min(time.Minute, max(20*time.Second, time.Until(deadline)-30*time.Second))
		name := fmt.Sprintf("round %d %d nodes", round, nodes)
		if procs {
			name = fmt.Sprintf("round %d %d processes", round, nodes)
		}
		ok := t.Run(name, func(t *testing.T) {
			if procs {
				RunProc(t, RunConfig{Nodes: nodes, Seed: seed(t), Duration: dur})
				return
			}
			Run(t, RunConfig{Nodes: nodes, Seed: seed(t), Duration: dur, Logger: testLogger()})
		})
		if !ok && os.Getenv("EMBEDKV_SOAK_CONTINUE") == "" {
			t.Fatalf("round %d failed; set EMBEDKV_SOAK_CONTINUE=1 to keep going", round)
		}
	}
}

// errorRecorder is a testing.TB whose Errorf records instead of failing.
type errorRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// injectStaleRead makes one acknowledged get of a real history return the
// value its key had before a put that completed before the get began.
func injectStaleRead(ops []Op) (string, bool) {
	byValue := map[string]*Op{}
	for i := range ops {
		if op := &ops[i]; op.Kind == OpPut && op.Outcome == OK && op.Prev != nil {
			byValue[op.Value] = op
		}
	}
	for i := range ops {
		g := &ops[i]
		if g.Kind != OpGet || g.Outcome != OK || len(g.KVs) != 1 {
			continue
		}
		if w, ok := byValue[g.KVs[0].Value]; ok && w.Return < g.Call {
			g.KVs[0].Value = w.Prev.Value
			return g.String(), true
		}
	}
	return "", false
}

// injectHalfTxnRead makes one acknowledged range read of a real history
// see a txn half applied: the first of its puts, and the second key still
// as it was before the txn.
func injectHalfTxnRead(ops []Op) (string, bool) {
	for i := range ops {
		t := &ops[i]
		if t.Kind != OpTxn || t.Outcome != OK || !t.Succeeded || len(t.Txn.Puts) < 2 || t.TxnPutPrev[1] == nil {
			continue
		}
		a, b := t.Txn.Puts[0], t.Txn.Puts[1]
		for j := range ops {
			r := &ops[j]
			if r.Kind != OpRange || r.Outcome != OK || r.Call <= t.Return {
				continue
			}
			ia, ib := -1, -1
			for k, kv := range r.KVs {
				switch {
				case kv.Key == a.Key && kv.Value == a.Value:
					ia = k
				case kv.Key == b.Key && kv.Value == b.Value:
					ib = k
				}
			}
			if ia >= 0 && ib >= 0 {
				r.KVs[ib] = *t.TxnPutPrev[1]
				return r.String(), true
			}
		}
	}
	return "", false
}

// TestRunDetectsInjectedBugs runs a short real workload, breaks one
// operation after the fact, and requires the run to fail through both
// checkers and to write porcupine's visualisation: the pipeline from a
// real cluster to a verdict can fail.
func TestRunDetectsInjectedBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for about 10s per case; skipped with -short")
	}
	tests := []struct {
		name   string
		inject func([]Op) (string, bool)
	}{
		{"stale read", injectStaleRead},
		{"range read sees half a txn", injectHalfTxnRead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &errorRecorder{TB: t}
			var doctored string
			dir := t.TempDir()
			Run(rec, RunConfig{
				Nodes: 3, Seed: seed(t), Duration: 4 * time.Second, Faults: []FaultKind{LeaderChange},
				Artifacts: dir, Logger: testLogger(),
				doctor: func(ops []Op) {
					var ok bool
					if doctored, ok = tt.inject(ops); !ok {
						t.Error("no operation to break")
					}
				},
			})
			t.Logf("doctored: %s", doctored)
			all := strings.Join(rec.errs, "\n")
			for _, want := range []string{"witness: " + doctored, "porcupine: Illegal"} {
				if !strings.Contains(all, want) {
					t.Errorf("run errors do not contain %q:\n%s", want, all)
				}
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !strings.Contains(strings.Join(names, " "), ".html") {
				t.Errorf("artifacts %v, want porcupine's HTML visualisation", names)
			}
		})
	}
}

// TestReplayDump re-runs the checks on the operations and history a failed
// run dumped (EMBEDKV_REPLAY=path/to/...-ops.json), e.g. after changing a
// checker, without a cluster.
func TestReplayDump(t *testing.T) {
	path := os.Getenv("EMBEDKV_REPLAY")
	if path == "" {
		t.Skip("set EMBEDKV_REPLAY to a dump written by a failed run to re-check it")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dump struct {
		Ops     []Op
		History []Event
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		t.Fatal(err)
	}
	last := int64(0)
	for _, e := range dump.History {
		last = max(last, e.Rev)
	}
	h := NewHistory(Root, last, dump.History)
	rep := CheckWitness(dump.Ops, h, KVPrefix)
	for _, v := range rep.Violations {
		t.Errorf("witness: %s", v)
	}
	ph := PorcupineHistory(dump.Ops, DefaultWorkload(KVPrefix).Groups, rep, NewBounds(dump.Ops, nil, last))
	res := CheckPorcupine(ph, 3*time.Minute, t.TempDir(), "replay")
	t.Logf("porcupine %s on %d operations in %v", res.Result, res.Operations, res.Elapsed)
	if res.Result != porcupine.Ok {
		t.Errorf("porcupine: %s", res.Result)
	}
}
