package robustness

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// simulate produces a linearizable history of n operations by a correct
// store on keys p/k0..p/k2: op i is called at 10*i, takes effect at
// 10*i+5 and returns up to 30 later, so operations overlap. About 5% of the
// writes end Unknown, half of those applied.
func simulate(seed uint64, n int) ([]Op, *History) {
	rng := rand.New(rand.NewPCG(seed, 1))
	keys := []string{"p/k0", "p/k1", "p/k2"}
	state := map[string]KV{}
	rev := int64(1)
	var events []Event
	var ops []Op
	cur := func(k string) []KV {
		if kv, ok := state[k]; ok {
			return []KV{kv}
		}
		return nil
	}
	put := func(k, v string) *KV {
		var prev *KV
		rev++
		kv := KV{Key: k, Value: v, Create: rev, Mod: rev, Version: 1}
		if p, ok := state[k]; ok {
			prev = &p
			kv.Create, kv.Version = p.Create, p.Version+1
		}
		state[k] = kv
		events = append(events, Event{Rev: rev, KV: kv})
		return prev
	}
	for i := range n {
		op := Op{Client: i % 4, Node: i % 3, Call: int64(10 * i), Key: keys[rng.IntN(len(keys))]}
		op.Return = op.Call + 5 + rng.Int64N(30)
		op.Kind = []OpKind{OpPut, OpGet, OpDelete, OpCAS, OpRange, OpSerialGet}[rng.IntN(6)]
		op.Outcome = OK
		if op.Kind.IsWrite() && rng.IntN(20) == 0 {
			op.Outcome = Unknown
			op.Err = "unknown outcome"
		}
		apply := op.Outcome == OK || rng.IntN(2) == 0
		switch op.Kind {
		case OpPut:
			op.Value = fmt.Sprintf("v%d", i)
			if apply {
				op.Prev = put(op.Key, op.Value)
			}
		case OpGet, OpSerialGet:
			op.KVs = cur(op.Key)
		case OpRange:
			op.Key = "p/"
			for _, k := range keys {
				op.KVs = append(op.KVs, cur(k)...)
			}
		case OpDelete:
			if p, ok := state[op.Key]; ok && apply {
				rev++
				delete(state, op.Key)
				events = append(events, Event{Rev: rev, Delete: true, KV: KV{Key: op.Key, Mod: rev}})
				op.Deleted, op.Prev = 1, &p
			}
		case OpCAS:
			op.Value = fmt.Sprintf("v%d", i)
			op.Expect = "nothing"
			if kv, ok := state[op.Key]; ok && rng.IntN(3) > 0 {
				op.Expect = kv.Value
			}
			if kv, ok := state[op.Key]; ok && kv.Value == op.Expect && apply {
				put(op.Key, op.Value)
				op.Succeeded = true
			} else if op.Outcome == OK {
				op.KVs = cur(op.Key)
			}
		}
		op.Rev = rev
		if op.Outcome != OK {
			op.Rev, op.Prev, op.KVs, op.Deleted, op.Succeeded = 0, nil, nil, 0, false
		}
		ops = append(ops, op)
	}
	return ops, NewHistory("p/", rev, events)
}

// lastWriteBefore finds a get of a key whose latest write (a put) returned
// before the get was called, after an earlier put of the same key, and
// returns the indexes of the get, the latest put and the earlier one.
func lastWriteBefore(ops []Op) (get, latest, earlier int) {
	for g := range ops {
		if ops[g].Kind != OpGet || ops[g].Outcome != OK || len(ops[g].KVs) == 0 {
			continue
		}
		w1, w2 := -1, -1
		for i := g - 1; i >= 0; i-- {
			op := &ops[i]
			if op.Key != ops[g].Key || !op.Kind.IsWrite() || op.Outcome != OK {
				continue
			}
			if !op.mutating() || op.Kind != OpPut {
				break
			}
			if w1 < 0 {
				w1 = i
			} else {
				w2 = i
				break
			}
		}
		if w1 >= 0 && w2 >= 0 && ops[w1].Return < ops[g].Call && ops[w1].Value == ops[g].KVs[0].Value {
			return g, w1, w2
		}
	}
	panic("no suitable get in the simulated history")
}

func porcupineResult(t *testing.T, ops []Op, h *History) porcupine.CheckResult {
	t.Helper()
	rep := CheckWitness(ops, h, "p/")
	ph := PorcupineHistory(ops, []string{"p/k0", "p/k1", "p/k2"}, rep, NewBounds(ops, nil, h.Rev))
	res, _ := porcupine.CheckOperationsVerbose(RegisterModel, ph, time.Minute)
	return res
}

func TestCheckersAcceptCorrectHistories(t *testing.T) {
	for s := range uint64(20) {
		ops, h := simulate(s, 2000)
		if bad := h.Validate(true); len(bad) > 0 {
			t.Fatalf("seed %d: simulated history invalid: %v", s, bad[0])
		}
		rep := CheckWitness(ops, h, "p/")
		if len(rep.Violations) > 0 {
			t.Fatalf("seed %d: witness violations on a correct history (%d), first: %s", s, len(rep.Violations), rep.Violations[0])
		}
		if got := porcupineResult(t, ops, h); got != porcupine.Ok {
			t.Fatalf("seed %d: porcupine %s on a correct history", s, got)
		}
		if lost := LostWrites(ops, h); len(lost) > 0 {
			t.Fatalf("seed %d: LostWrites found %d on a correct history", s, len(lost))
		}
	}
}

// TestCheckersCatchInjectedBugs doctors a correct history with one bug each
// and requires the checkers to report it: a checker that cannot fail is
// worthless.
func TestCheckersCatchInjectedBugs(t *testing.T) {
	tests := []struct {
		name string
		// doctor breaks ops or the history (given as its events).
		doctor        func(ops []Op, events []Event) ([]Op, []Event)
		wantWitness   string // a substring of some violation
		wantPorcupine porcupine.CheckResult
	}{
		{
			name: "stale read reporting the current revision",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				g, _, earlier := lastWriteBefore(ops)
				ops[g].KVs[0].Value = ops[earlier].Value
				return ops, evs
			},
			wantWitness: "read [", wantPorcupine: porcupine.Illegal,
		},
		{
			name: "stale read reporting a stale revision",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				g, latest, _ := lastWriteBefore(ops)
				h := NewHistory("p/", 1<<20, append([]Event(nil), evs...))
				ops[g].Rev = ops[latest].Rev - 1
				kv, _ := h.State(ops[g].Key, ops[g].Rev)
				ops[g].KVs = []KV{kv}
				return ops, evs
			},
			wantWitness: "real time", wantPorcupine: porcupine.Illegal,
		},
		{
			name: "acknowledged write lost",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				_, latest, _ := lastWriteBefore(ops)
				for i, e := range evs {
					if e.Rev == ops[latest].Rev {
						evs[i].KV.Value = "overwritten"
					}
				}
				return ops, evs
			},
			// The clients' own view stays consistent, so porcupine cannot
			// see this one: the history (durability) is the witness.
			wantWitness: "at its revision",
		},
		{
			name: "write applied twice",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				_, latest, _ := lastWriteBefore(ops)
				last := evs[len(evs)-1]
				dup := Event{Rev: last.Rev + 1, KV: KV{Key: ops[latest].Key, Value: ops[latest].Value, Create: last.Rev + 1, Mod: last.Rev + 1, Version: 1}}
				return ops, append(evs, dup)
			},
			wantWitness: "applied twice",
		},
		{
			name: "write reported failed was applied",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				_, latest, _ := lastWriteBefore(ops)
				ops[latest].Outcome, ops[latest].Err = Failed, "no leader"
				return ops, evs
			},
			wantWitness: "reported as not applied", wantPorcupine: porcupine.Illegal,
		},
		{
			name: "two writes report one revision",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				_, latest, earlier := lastWriteBefore(ops)
				ops[earlier].Rev = ops[latest].Rev
				return ops, evs
			},
			wantWitness: "at its revision",
		},
		{
			name: "wrong previous value",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				_, latest, _ := lastWriteBefore(ops)
				ops[latest].Prev = &KV{Key: ops[latest].Key, Value: "bogus"}
				return ops, evs
			},
			wantWitness: "prev", wantPorcupine: porcupine.Illegal,
		},
		{
			name: "phantom write",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				last := evs[len(evs)-1]
				return ops, append(evs, Event{Rev: last.Rev + 1, KV: KV{Key: "p/k9", Value: "ghost", Create: last.Rev + 1, Mod: last.Rev + 1, Version: 1}})
			},
			wantWitness: "written by no operation",
		},
		{
			name: "serializable read goes back in time on its node",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				h := NewHistory("p/", 1<<20, append([]Event(nil), evs...))
				last := map[int]int64{}
				for i := range ops {
					op := &ops[i]
					if op.Outcome != OK {
						continue
					}
					if op.Kind == OpSerialGet && last[op.Client] > 3 {
						op.Rev = last[op.Client] - 2 // exact at its revision, but stale
						op.KVs = nil
						if kv, ok := h.State(op.Key, op.Rev); ok {
							op.KVs = []KV{kv}
						}
						return ops, evs
					}
					last[op.Client] = op.Rev
				}
				panic("no serializable read")
			},
			wantWitness: "session:",
		},
		{
			name: "range read not atomic",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				for i := len(ops) - 1; i >= 0; i-- {
					if ops[i].Kind == OpRange && ops[i].Outcome == OK && len(ops[i].KVs) > 0 {
						ops[i].KVs = ops[i].KVs[1:] // one key missing from the snapshot
						return ops, evs
					}
				}
				panic("no range read")
			},
			wantWitness: "read [", wantPorcupine: porcupine.Illegal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, h := simulate(3, 2000)
			var evs []Event
			for _, e := range h.Events {
				evs = append(evs, e...)
			}
			ops, evs = tt.doctor(ops, evs)
			last := int64(0)
			for _, e := range evs {
				last = max(last, e.Rev)
			}
			h = NewHistory("p/", max(last, h.Rev), evs)
			rep := CheckWitness(ops, h, "p/")
			found := false
			for _, v := range rep.Violations {
				found = found || strings.Contains(v, tt.wantWitness)
			}
			if !found {
				t.Errorf("witness violations %q, want one containing %q", rep.Violations, tt.wantWitness)
			}
			if tt.wantPorcupine != "" {
				if got := porcupineResult(t, ops, h); got != tt.wantPorcupine {
					t.Errorf("porcupine: got %s, want %s", got, tt.wantPorcupine)
				}
			}
		})
	}
}

func TestLostWrites(t *testing.T) {
	ops, h := simulate(5, 500)
	_, latest, _ := lastWriteBefore(ops)
	var evs []Event
	for _, e := range h.Events {
		for _, x := range e {
			if x.Rev != ops[latest].Rev {
				evs = append(evs, x)
			}
		}
	}
	lost := LostWrites(ops, NewHistory("p/", h.Rev, evs))
	if len(lost) != 1 || lost[0] != &ops[latest] {
		t.Fatalf("LostWrites = %v, want exactly %s", lost, &ops[latest])
	}
}

func TestScheduleIsDeterministic(t *testing.T) {
	a := Schedule(rand.New(rand.NewPCG(42, 0)), AllFaults, 30)
	b := Schedule(rand.New(rand.NewPCG(42, 0)), AllFaults, 30)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	kinds := map[FaultKind]bool{}
	for _, f := range a[:len(AllFaults)] {
		kinds[f.Kind] = true
	}
	if len(kinds) != len(AllFaults) {
		t.Fatalf("first round of the schedule has kinds %v, want all %d", kinds, len(AllFaults))
	}
	c := Schedule(rand.New(rand.NewPCG(43, 0)), AllFaults, 30)
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("different seeds gave the same schedule")
	}
}
