//go:build linux

package robustness

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// ciProcRuns is the CI profile of the process profile: nodes in child
// processes, SIGKILL and SIGSTOP/SIGCONT of leaders and followers and one
// kill of every node at once, then a final kill of all and restart.
var ciProcRuns = []struct {
	name     string
	nodes    int
	duration time.Duration
}{
	{"3 processes", 3, 25 * time.Second},
}

// TestProcesses checks linearizability, watches and durability with every
// node in its own process (fsync on), killed with SIGKILL and paused with
// SIGSTOP. EMBEDKV_SEED forces the seed.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("process fault-injection runs take about a minute; skipped with -short")
	}
	for _, tt := range ciProcRuns {
		t.Run(tt.name, func(t *testing.T) {
			RunProc(t, RunConfig{Nodes: tt.nodes, Seed: seed(t), Duration: tt.duration})
		})
	}
}

// procProfile: the process profile runs on this platform.
const procProfile = true

func TestProcScheduleIsDeterministic(t *testing.T) {
	a := ProcSchedule(rand.New(rand.NewPCG(42, 0)), 40)
	b := ProcSchedule(rand.New(rand.NewPCG(42, 0)), 40)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	kinds := map[FaultKind]int{}
	leader := map[bool]int{}
	for i, f := range a {
		kinds[f.Kind]++
		if f.Kind == KillAll && i > 4 {
			t.Errorf("kill-all at step %d, want it among the first five", i)
		}
		leader[f.WithLeader]++
	}
	if kinds[KillAll] != 1 || kinds[Sigkill] == 0 || kinds[Sigstop] == 0 || len(kinds) != 3 {
		t.Fatalf("kinds %v, want sigkill and sigstop and exactly one kill-all", kinds)
	}
	if leader[true] == 0 || leader[false] == 0 {
		t.Fatalf("targets %v, want leaders and followers", leader)
	}
}
