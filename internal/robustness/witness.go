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
// against h, the committed history of the keys under keyPrefix. Put, cas
// and txn put values must be unique in ops. Every operation is placed at a
// revision:
//
//   - an acknowledged (OK) operation at the revision its response header
//     reports (Header.Revision: the revision it read at, or wrote);
//   - an Unknown put or cas at the revision where its unique value appears
//     in h, or nowhere (it had no effect) if the value never appears;
//   - an Unknown txn at the revision where its put values appear, all at
//     one revision, or nowhere if none does (some but not all is a
//     violation: half applied);
//   - an Unknown delete at the revision of a DELETE of its key that no
//     acknowledged delete explains (matched greedily, earliest call
//     first), or nowhere: an unmatched one either never applied or found
//     the key absent, and neither changes anything.
//
// It then requires, revision witness rules:
//
//  1. the effects line up: an OK put (cas that succeeded, delete that
//     deleted) has exactly its event at its revision in h; a txn that took
//     its Then branch has every one of its effects (each put, and a delete
//     of each of its delete keys that existed) at its one revision, i.e. it
//     is atomic; no two writes claim the same event or the same revision; a
//     value is written at most once (no write is applied twice); every
//     event of h is explained by a write that was not reported as failed
//     (no phantom or failed-but-applied writes);
//  2. every read is exact: a get, range, failed cas (its Else read), the
//     Else reads of a txn and a delete of nothing return precisely the
//     state h has at their revision (values, create/mod revisions,
//     versions, the exact key set of a range); PrevKVs equal the state just
//     before the write; a cas or txn took its branch according to the
//     state before it (for a txn, the ModRevision its client compared
//     with, which must be the mod revision of the value the client saw);
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
	claimed := map[evKey]int{}    // event -> index of the op it is the effect of
	claimedRev := map[int64]int{} // revision -> index of the op that made it
	claim := func(i int, rev int64, key string) {
		k := evKey{rev, key}
		if j, dup := claimed[k]; dup {
			rep.fail("one event claimed by two writes: %s and %s", &ops[j], &ops[i])
			return
		}
		if j, dup := claimedRev[rev]; dup && j != i {
			rep.fail("revision %d claimed by two writes: %s and %s", rev, &ops[j], &ops[i])
		}
		claimed[k] = i
		claimedRev[rev] = i
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
	checkPrevOf := func(op *Op, key string, prev *KV, rev int64) {
		want := state(key, rev-1)
		var got []KV
		if prev != nil {
			got = []KV{*prev}
		}
		if !kvsEqual(got, want) {
			rep.fail("%s: prev of %s %v, history has %v at revision %d", op, key, got, want, rev-1)
		}
	}
	checkPrev := func(i int, rev int64) { checkPrevOf(&ops[i], ops[i].Key, ops[i].Prev, rev) }
	modAt := func(key string, rev int64) int64 {
		if kv, ok := h.State(key, rev); ok {
			return kv.Mod
		}
		return 0
	}
	// txnCompare checks what a txn's client believed about its compared
	// key: the version at CmpRev holds CmpValue (the value-only porcupine
	// model relies on it).
	txnCompare := func(op *Op) {
		t := op.Txn
		if t.CmpRev == 0 {
			return
		}
		if e, ok := findEvent(t.CmpRev, t.Cmp); !ok || e.Delete || e.KV.Value != t.CmpValue {
			rep.fail("%s: its client saw %s=%q at mod revision %d, history has %v there", op, t.Cmp, t.CmpValue, t.CmpRev, h.Events[min(max(t.CmpRev, 0), h.Rev)])
		}
	}
	// txnApplied checks the effects of a txn applied at rev: every put and
	// every delete of a key present before is an event of rev, and the
	// comparison held before it.
	txnApplied := func(i int, rev int64) {
		op, t := &ops[i], ops[i].Txn
		for _, p := range t.Puts {
			if e, ok := findEvent(rev, p.Key); !ok || e.Delete || e.KV.Value != p.Value {
				rep.fail("%s: not atomic: its put %s=%q is not in the history at revision %d (there: %v)", op, p.Key, p.Value, rev, h.Events[rev])
				continue
			}
			claim(i, rev, p.Key)
		}
		for _, d := range t.Deletes {
			e, ok := findEvent(rev, d)
			switch existed := len(state(d, rev-1)) > 0; {
			case existed && (!ok || !e.Delete):
				rep.fail("%s: not atomic: its delete of %s is not in the history at revision %d (there: %v)", op, d, rev, h.Events[rev])
			case existed:
				claim(i, rev, d)
			}
		}
		if m := modAt(t.Cmp, rev-1); m != t.CmpRev {
			rep.fail("%s: took the Then branch at revision %d, but %s had mod revision %d before", op, rev, t.Cmp, m)
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
		case op.Outcome == OK && op.Kind == OpTxn && op.Succeeded:
			t := op.Txn
			txnCompare(op)
			if len(op.TxnPutPrev) != len(t.Puts) || len(op.TxnDeleted) != len(t.Deletes) || len(op.TxnDelPrev) != len(t.Deletes) {
				rep.fail("%s: responses do not match the txn's operations", op)
				continue
			}
			txnApplied(i, op.Rev)
			for k, p := range t.Puts {
				checkPrevOf(op, p.Key, op.TxnPutPrev[k], op.Rev)
			}
			for j, d := range t.Deletes {
				existed := len(state(d, op.Rev-1)) > 0
				if n := op.TxnDeleted[j]; (n == 1) != existed || n > 1 {
					rep.fail("%s: deleted %d of %s, history has %v before", op, n, d, state(d, op.Rev-1))
				}
				checkPrevOf(op, d, op.TxnDelPrev[j], op.Rev)
			}
		case op.Outcome == OK && op.Kind == OpTxn: // Else branch
			t := op.Txn
			txnCompare(op)
			if m := modAt(t.Cmp, op.Rev); m == t.CmpRev {
				rep.fail("%s: took the Else branch, but %s has mod revision %d at revision %d", op, t.Cmp, m, op.Rev)
			}
			if len(op.TxnGets) != len(t.Gets) {
				rep.fail("%s: responses do not match the txn's gets", op)
				continue
			}
			for k, g := range t.Gets {
				if want := state(g, op.Rev); !kvsEqual(op.TxnGets[k], want) {
					rep.fail("%s: Else read of %s %v, history has %v at revision %d", op, g, op.TxnGets[k], want, op.Rev)
				}
			}
		case op.Outcome == Failed && op.Kind == OpTxn:
			for _, p := range op.Txn.Puts {
				if e, ok := putOf[p.Value]; ok {
					rep.fail("%s: reported as not applied, but history has %s", op, e)
				}
			}
		case op.Outcome == Unknown && op.Kind == OpTxn:
			var found []Event
			for _, p := range op.Txn.Puts {
				if e, ok := putOf[p.Value]; ok {
					found = append(found, e)
				}
			}
			switch {
			case len(found) == 0:
				rep.UnknownNotApplied++
				continue
			case len(found) < len(op.Txn.Puts):
				rep.UnknownApplied++
				rep.fail("%s: half applied: only %v of its puts are in the history", op, found)
				continue
			}
			rep.UnknownApplied++
			txnApplied(i, found[0].Rev)
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
