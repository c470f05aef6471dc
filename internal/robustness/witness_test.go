package robustness

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// simGroups are the key groups of simulate's histories.
var simGroups = [][]string{{"p/a0", "p/a1", "p/a2"}, {"p/b0", "p/b1", "p/b2"}}

// simulate produces a linearizable history of n operations by a correct
// store on the keys of simGroups: op i is called at 10*i, takes effect at
// 10*i+5 and returns up to 30 later, so operations overlap. About 5% of the
// writes end Unknown, half of those applied. Multi-key txns put two keys of
// a group and sometimes delete the third, at one revision.
func simulate(seed uint64, n int) ([]Op, *History) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var keys []string
	for _, g := range simGroups {
		keys = append(keys, g...)
	}
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
	prevOf := func(k string) *KV {
		if p, ok := state[k]; ok {
			return &p
		}
		return nil
	}
	putAt := func(k, v string) *KV {
		prev := prevOf(k)
		kv := KV{Key: k, Value: v, Create: rev, Mod: rev, Version: 1}
		if prev != nil {
			kv.Create, kv.Version = prev.Create, prev.Version+1
		}
		state[k] = kv
		events = append(events, Event{Rev: rev, KV: kv})
		return prev
	}
	delAt := func(k string) *KV {
		prev := prevOf(k)
		if prev != nil {
			delete(state, k)
			events = append(events, Event{Rev: rev, Delete: true, KV: KV{Key: k, Mod: rev}})
		}
		return prev
	}
	put := func(k, v string) *KV {
		rev++
		return putAt(k, v)
	}
	for i := range n {
		op := Op{Client: i % 4, Node: i % 3, Call: int64(10 * i), Key: keys[rng.IntN(len(keys))]}
		op.Return = op.Call + 5 + rng.Int64N(30)
		op.Kind = []OpKind{OpPut, OpGet, OpDelete, OpCAS, OpRange, OpSerialGet, OpTxn}[rng.IntN(7)]
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
			if _, ok := state[op.Key]; ok && apply {
				rev++
				op.Deleted, op.Prev = 1, delAt(op.Key)
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
		case OpTxn:
			g := append([]string(nil), simGroups[rng.IntN(len(simGroups))]...)
			rng.Shuffle(len(g), func(a, b int) { g[a], g[b] = g[b], g[a] })
			t := &TxnSpec{Cmp: g[0], Gets: []string{g[0], g[1]},
				Puts: []KV{{Key: g[0], Value: fmt.Sprintf("v%da", i)}, {Key: g[1], Value: fmt.Sprintf("v%db", i)}}}
			if rng.IntN(2) == 0 {
				t.Deletes = []string{g[2]}
			}
			if rng.IntN(2) == 0 {
				t.Gets = append(t.Gets, g[2])
			}
			if kv, ok := state[g[0]]; ok && rng.IntN(4) > 0 {
				t.CmpRev, t.CmpValue = kv.Mod, kv.Value
			}
			op.Txn, op.Key = t, t.Cmp
			mod := int64(0)
			if kv, ok := state[g[0]]; ok {
				mod = kv.Mod
			}
			if mod == t.CmpRev && apply {
				rev++
				op.Succeeded = true
				for _, p := range t.Puts {
					op.TxnPutPrev = append(op.TxnPutPrev, putAt(p.Key, p.Value))
				}
				for _, d := range t.Deletes {
					prev := delAt(d)
					op.TxnDelPrev = append(op.TxnDelPrev, prev)
					op.TxnDeleted = append(op.TxnDeleted, map[bool]int64{true: 1}[prev != nil])
				}
			} else if op.Outcome == OK {
				for _, k := range t.Gets {
					op.TxnGets = append(op.TxnGets, cur(k))
				}
			}
		}
		op.Rev = rev
		if op.Outcome != OK {
			op.Rev, op.Prev, op.KVs, op.Deleted, op.Succeeded = 0, nil, nil, 0, false
			op.TxnPutPrev, op.TxnDelPrev, op.TxnDeleted, op.TxnGets = nil, nil, nil, nil
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
	ph := PorcupineHistory(ops, simGroups, rep, NewBounds(ops, nil, h.Rev))
	res, _ := porcupine.CheckOperationsVerbose(GroupModel, ph, time.Minute)
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
			// A txn's second put lands in the history at its own revision:
			// a non-atomic txn (half applied at the txn's revision).
			name: "txn half applied",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				i := findTxn(ops, func(op *Op) bool { return op.Outcome == OK && op.Succeeded })
				t := ops[i].Txn
				for k, e := range evs {
					if e.Rev == ops[i].Rev && e.KV.Key == t.Puts[1].Key {
						return ops, append(evs[:k:k], evs[k+1:]...)
					}
				}
				panic("txn event not found")
			},
			wantWitness: "not atomic",
		},
		{
			// A txn of unknown outcome of which only one put made it.
			name: "unknown txn half applied",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				applied := map[string]bool{}
				for _, e := range evs {
					applied[e.KV.Value] = !e.Delete
				}
				i := findTxn(ops, func(op *Op) bool { return op.Outcome == Unknown && applied[op.Txn.Puts[0].Value] })
				for k, e := range evs {
					if e.KV.Value == ops[i].Txn.Puts[1].Value {
						return ops, append(evs[:k:k], evs[k+1:]...)
					}
				}
				panic("txn event not found")
			},
			wantWitness: "half applied",
		},
		{
			// A range read sees one key of a txn new and the other old,
			// as if the txn were two writes. Porcupine's per-key model
			// could linearize each key alone; the group model cannot.
			name: "range read sees half a txn",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				h := NewHistory("p/", 1<<20, append([]Event(nil), evs...))
				for i := range ops {
					t := &ops[i]
					if t.Kind != OpTxn || t.Outcome != OK || !t.Succeeded || t.TxnPutPrev[1] == nil {
						continue
					}
					for j := i + 1; j < len(ops) && j < i+20; j++ {
						r := &ops[j]
						if r.Kind != OpRange || r.Outcome != OK {
							continue
						}
						a, _ := h.State(t.Txn.Puts[0].Key, r.Rev)
						b, _ := h.State(t.Txn.Puts[1].Key, r.Rev)
						if a.Value != t.Txn.Puts[0].Value || b.Value != t.Txn.Puts[1].Value {
							continue
						}
						for k := range r.KVs {
							if r.KVs[k].Key == b.Key {
								r.KVs[k] = *t.TxnPutPrev[1] // b before the txn
								return ops, evs
							}
						}
					}
				}
				panic("no range read after a txn")
			},
			wantWitness: "read [", wantPorcupine: porcupine.Illegal,
		},
		{
			// The Else branch reports a read of a key that is not what
			// the history has at the txn's revision.
			name: "txn else branch reads stale",
			doctor: func(ops []Op, evs []Event) ([]Op, []Event) {
				i := findTxn(ops, func(op *Op) bool {
					return op.Outcome == OK && !op.Succeeded && len(op.TxnGets[0]) == 1 && op.TxnGets[0][0].Version > 1
				})
				kv := &ops[i].TxnGets[0][0]
				for _, e := range evs {
					if e.KV.Key == kv.Key && e.KV.Create == kv.Create && e.KV.Version == kv.Version-1 {
						*kv = e.KV
						return ops, evs
					}
				}
				panic("no earlier version")
			},
			wantWitness: "Else read", wantPorcupine: porcupine.Illegal,
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

// findTxn returns the index of the first txn op matching ok.
func findTxn(ops []Op, ok func(*Op) bool) int {
	for i := range ops {
		if ops[i].Kind == OpTxn && len(ops[i].Txn.Puts) > 1 && ok(&ops[i]) {
			return i
		}
	}
	panic("no matching txn in the simulated history")
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
