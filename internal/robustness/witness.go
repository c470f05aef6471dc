package robustness

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// WitnessReport is the result of CheckWitness.
type WitnessReport struct {
	// Violations describes every broken rule (empty = linearizable).
	Violations []string
	// Applied maps the index of every write whose effect is in the history
	// (acknowledged mutating writes and unknown writes found there) to the
	// revision of that effect.
	Applied map[int]int64
	// Unknown writes: found applied, proven not applied (a put or cas whose
	// unique value is nowhere in the history), unresolved (deletes, which
	// carry no unique value).
	UnknownApplied, UnknownNotApplied, UnknownUnresolved int
}

func (r *WitnessReport) fail(format string, a ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, a...))
}

// CheckWitness is a linear-time (n log n) revision-witness check of ops
// against h, the committed history of the keys under keyPrefix. Put and cas
// values must be unique in ops. Every operation is placed at a revision:
//
//   - an acknowledged (OK) operation at the revision its response header
//     reports (Header.Revision: the revision it read at, or wrote);
//   - an Unknown put or cas at the revision where its unique value appears
//     in h, or nowhere (it had no effect) if the value never appears;
//   - an Unknown delete at the revision of a DELETE of its key that no
//     acknowledged delete explains (matched greedily, earliest call
//     first), or nowhere: an unmatched one either never applied or found
//     the key absent, and neither changes anything.
//
// It then requires, revision witness rules:
//
//  1. the effects line up: an OK put (cas that succeeded, delete that
//     deleted) has exactly its event at its revision in h, and no two writes
//     claim the same event; a value is written at most once (no write is
//     applied twice); every event of h is explained by a write that was not
//     reported as failed (no phantom or failed-but-applied writes);
//  2. every read is exact: a get, range, failed cas (its Else read) and
//     delete of nothing return precisely the state h has at their revision
//     (values, create/mod revisions, versions, the exact key set of a
//     range); PrevKVs equal the state just before the write; a cas took its
//     branch according to the state before it;
//  3. real time: if operation A returned before operation B was called,
//     rev(A) <= rev(B), and rev(A) < rev(B) when B created a revision
//     (Unknown writes only get the lower bound: their return is unknown;
//     serializable reads are exempt, but bound others: what a node applied
//     was committed);
//  4. sessions: see checkSessions (serializable reads and writes on a
//     follower).
//
// Given h, rules 1-3 are sound and complete for linearizability: ordering
// operations by revision (the write of a revision first, then its reads by
// call time) yields a legal sequential history that respects real time, and
// each rule is necessary for any such order. h itself is checked by
// History.Validate and against the other replicas, and independently by
// CheckPorcupine, which does not trust revisions.
func CheckWitness(ops []Op, h *History, keyPrefix string) *WitnessReport {
	rep := &WitnessReport{Applied: map[int]int64{}}
	// Index the PUT events by value; values are unique, so two events with
	// one value mean a write was applied twice.
	putOf := map[string]Event{}
	for _, evs := range h.Events {
		for _, e := range evs {
			if e.Delete || !strings.HasPrefix(e.KV.Key, keyPrefix) {
				continue
			}
			if prev, dup := putOf[e.KV.Value]; dup {
				rep.fail("value %q applied twice: %s and %s", e.KV.Value, prev, e)
			}
			putOf[e.KV.Value] = e
		}
	}
	type evKey struct {
		rev int64
		key string
	}
	claimed := map[evKey]int{} // event -> index of the op it is the effect of
	claim := func(i int, rev int64, key string) {
		k := evKey{rev, key}
		if j, dup := claimed[k]; dup {
			rep.fail("one event claimed by two writes: %s and %s", &ops[j], &ops[i])
			return
		}
		claimed[k] = i
		rep.Applied[i] = rev
	}
	findEvent := func(rev int64, key string) (Event, bool) {
		if rev < 0 || rev > h.Rev {
			return Event{}, false
		}
		for _, e := range h.Events[rev] {
			if e.KV.Key == key {
				return e, true
			}
		}
		return Event{}, false
	}
	state := func(key string, rev int64) []KV {
		if kv, ok := h.State(key, rev); ok {
			return []KV{kv}
		}
		return nil
	}
	checkPrev := func(i int, rev int64) {
		op := &ops[i]
		want := state(op.Key, rev-1)
		var got []KV
		if op.Prev != nil {
			got = []KV{*op.Prev}
		}
		if !kvsEqual(got, want) {
			rep.fail("%s: prev %v, history has %v at revision %d", op, got, want, rev-1)
		}
	}

	var unknownDeletes []int
	for i := range ops {
		op := &ops[i]
		if op.Outcome == OK && op.Rev > h.Rev {
			rep.fail("%s: revision %d is beyond the committed history (%d)", op, op.Rev, h.Rev)
			continue
		}
		switch {
		case op.Outcome == OK && (op.Kind == OpGet || op.Kind == OpRange || op.Kind == OpSerialGet):
			want := state(op.Key, op.Rev)
			if op.Kind == OpRange {
				want = h.Range(op.Key, op.Rev)
			}
			if !kvsEqual(op.KVs, want) {
				rep.fail("%s: read %v, history has %v at revision %d", op, op.KVs, want, op.Rev)
			}
		case op.Outcome == OK && op.mutating():
			e, ok := findEvent(op.Rev, op.Key)
			switch {
			case !ok:
				rep.fail("%s: acknowledged write missing from the history at revision %d (there: %v)", op, op.Rev, h.Events[op.Rev])
				continue
			case op.Kind == OpDelete && !e.Delete, op.Kind != OpDelete && (e.Delete || e.KV.Value != op.Value):
				rep.fail("%s: history has %s at its revision", op, e)
				continue
			}
			claim(i, op.Rev, op.Key)
			switch op.Kind {
			case OpCAS:
				if st := state(op.Key, op.Rev-1); len(st) == 0 || st[0].Value != op.Expect {
					rep.fail("%s: succeeded, but the key was %v before", op, st)
				}
			case OpDelete:
				if op.Deleted != 1 {
					rep.fail("%s: deleted %d keys with a single-key delete", op, op.Deleted)
				}
				checkPrev(i, op.Rev)
			default:
				checkPrev(i, op.Rev)
			}
		case op.Outcome == OK && op.Kind == OpDelete: // deleted nothing
			if st := state(op.Key, op.Rev); len(st) != 0 || op.Prev != nil {
				rep.fail("%s: deleted nothing, but history has %v at revision %d", op, st, op.Rev)
			}
		case op.Outcome == OK && op.Kind == OpCAS: // failed comparison
			st := state(op.Key, op.Rev)
			if len(st) == 1 && st[0].Value == op.Expect {
				rep.fail("%s: comparison failed, but history has %v at revision %d", op, st, op.Rev)
			}
			if !kvsEqual(op.KVs, st) {
				rep.fail("%s: Else read %v, history has %v at revision %d", op, op.KVs, st, op.Rev)
			}
		case op.Outcome == Failed && (op.Kind == OpPut || op.Kind == OpCAS):
			if e, ok := putOf[op.Value]; ok {
				rep.fail("%s: reported as not applied, but history has %s", op, e)
			}
		case op.Outcome == Unknown && (op.Kind == OpPut || op.Kind == OpCAS):
			e, ok := putOf[op.Value]
			if !ok {
				rep.UnknownNotApplied++
				continue
			}
			rep.UnknownApplied++
			if e.KV.Key != op.Key {
				rep.fail("%s: its value was written to another key: %s", op, e)
				continue
			}
			claim(i, e.Rev, op.Key)
			if op.Kind == OpCAS {
				if st := state(op.Key, e.Rev-1); len(st) == 0 || st[0].Value != op.Expect {
					rep.fail("%s: applied at %d, but the key was %v before", op, e.Rev, st)
				}
			}
		case op.Outcome == Unknown && op.Kind == OpDelete:
			unknownDeletes = append(unknownDeletes, i)
		}
	}

	// Every event must be explained; unexplained deletes go to unknown
	// deletes of the same key called before them (checked below).
	lb := newLowerBound(ops)
	pool := map[string][]int{}
	for _, i := range unknownDeletes {
		pool[ops[i].Key] = append(pool[ops[i].Key], i)
	}
	for k := range pool {
		// Earliest call first (lb grows with the call time): the matched
		// deletes are then the earliest-called eligible ones, the most
		// permissive choice for PorcupineHistory.
		sort.Slice(pool[k], func(a, b int) bool { return ops[pool[k][a]].Call < ops[pool[k][b]].Call })
	}
	for r := int64(0); r <= h.Rev; r++ {
		for _, e := range h.Events[r] {
			if !strings.HasPrefix(e.KV.Key, keyPrefix) {
				continue
			}
			if _, ok := claimed[evKey{e.Rev, e.KV.Key}]; ok {
				continue
			}
			if !e.Delete {
				rep.fail("%s was written by no operation", e)
				continue
			}
			cands := pool[e.KV.Key]
			if len(cands) == 0 || lb.at(ops[cands[0]].Call) >= e.Rev {
				rep.fail("%s is explained by no delete (none with unknown outcome called before it)", e)
				continue
			}
			i := cands[0]
			pool[e.KV.Key] = cands[1:]
			claim(i, e.Rev, e.KV.Key)
			rep.UnknownApplied++
		}
	}
	for _, rest := range pool {
		rep.UnknownUnresolved += len(rest)
	}

	// Real time (serializable reads may be stale by design).
	for i := range ops {
		op := &ops[i]
		if op.Kind == OpSerialGet {
			continue
		}
		rev, mut := op.Rev, op.mutating()
		if op.Outcome != OK {
			var ok bool
			if rev, ok = rep.Applied[i]; !ok {
				continue
			}
			mut = true
		}
		bound, by := lb.atWith(op.Call)
		if by >= 0 && (rev < bound || (mut && rev == bound)) {
			rep.fail("real time: %s is at revision %d, but %s returned before it was called", op, rev, &ops[by])
		}
	}
	checkSessions(ops, rep)
	return rep
}

// checkSessions checks rule 4: a node's applied state never goes back
// while it runs, and a write returns only after the node it was sent to
// applied it. So within one incarnation of a node, each client's
// acknowledged operations report non-decreasing revisions (a serializable
// read included: it sees at least what the client last wrote or read
// there).
func checkSessions(ops []Op, rep *WitnessReport) {
	idx := make([]int, 0, len(ops))
	for i := range ops {
		if ops[i].Outcome == OK {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool {
		x, y := &ops[idx[a]], &ops[idx[b]]
		if x.Client != y.Client {
			return x.Client < y.Client
		}
		return x.Call < y.Call
	})
	for k := 1; k < len(idx); k++ {
		prev, op := &ops[idx[k-1]], &ops[idx[k]]
		if prev.Client == op.Client && prev.Session == op.Session && op.Rev < prev.Rev {
			rep.fail("session: %s went back to revision %d after %s on the same node", op, op.Rev, prev)
		}
	}
}

// lowerBound answers "the highest revision reported by an OK operation that
// returned before time t" in O(log n).
type lowerBound struct {
	returns []int64 // ascending
	maxRev  []int64 // prefix maxima of the revisions in return order
	argMax  []int   // index of the op holding maxRev
}

func newLowerBound(ops []Op) *lowerBound {
	var idx []int
	for i := range ops {
		if ops[i].Outcome == OK {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool { return ops[idx[a]].Return < ops[idx[b]].Return })
	lb := &lowerBound{}
	best, arg := int64(0), -1
	for _, i := range idx {
		if ops[i].Rev > best {
			best, arg = ops[i].Rev, i
		}
		lb.returns = append(lb.returns, ops[i].Return)
		lb.maxRev = append(lb.maxRev, best)
		lb.argMax = append(lb.argMax, arg)
	}
	return lb
}

func (lb *lowerBound) at(t int64) int64 { r, _ := lb.atWith(t); return r }

func (lb *lowerBound) atWith(t int64) (int64, int) {
	n := sort.Search(len(lb.returns), func(i int) bool { return lb.returns[i] >= t })
	if n == 0 {
		return 0, -1
	}
	return lb.maxRev[n-1], lb.argMax[n-1]
}

func kvsEqual(a, b []KV) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
