package store

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/embedkv/store/lease"
	"github.com/embedkv/store/mvcc"
)

// Lease state is replicated: every node's FSM keeps the same table. What is
// not replicated is the deadline: only the leader's lessor (package lease)
// counts time, from the remaining TTL recorded here by the last grant, renew
// or checkpoint entry.

// Bounds on lease TTLs, as etcd's.
const maxLeaseTTL = 9_000_000_000 // seconds

type leaseRec struct {
	id          int64
	ttl         int64 // granted TTL, seconds
	remainingMs int64 // remaining TTL recorded by the last grant/renew/checkpoint
	renewIndex  uint64
	keys        map[string]struct{}
}

func (r *leaseRec) state() lease.State {
	return lease.State{ID: r.id, Remaining: time.Duration(r.remainingMs) * time.Millisecond, RenewIndex: r.renewIndex}
}

// leaseTable is the FSM's lease state. The FSM goroutine writes it; other
// goroutines read it under mu.
type leaseTable struct {
	// mu guards every field. Lock order: leaseTable.mu before the lessor's
	// own mutex (the FSM calls lessor.Upsert/Remove while holding it, and
	// promotion calls lessor.Promote while holding it).
	mu     sync.RWMutex
	m      map[int64]*leaseRec
	nextID int64

	// lessor receives grants, renewals and removals applied on this node; it
	// ignores them unless this node is the leader.
	lessor *lease.Lessor
}

func newLeaseTable(l *lease.Lessor) *leaseTable {
	return &leaseTable{m: make(map[int64]*leaseRec), nextID: 1, lessor: l}
}

func (t *leaseTable) exists(id int64) bool {
	t.mu.RLock()
	_, ok := t.m[id]
	t.mu.RUnlock()
	return ok
}

// recorded returns the remaining TTL recorded in the replicated state.
func (t *leaseTable) recorded(id int64) (time.Duration, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	r, ok := t.m[id]
	if !ok {
		return 0, false
	}
	return time.Duration(r.remainingMs) * time.Millisecond, true
}

// info returns a lease's granted TTL and, if withKeys, its attached keys in
// order.
func (t *leaseTable) info(id int64, withKeys bool) (ttl int64, keys [][]byte, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	r, ok := t.m[id]
	if !ok {
		return 0, nil, false
	}
	if withKeys {
		for k := range r.keys {
			keys = append(keys, []byte(k))
		}
		sort.Slice(keys, func(i, j int) bool { return string(keys[i]) < string(keys[j]) })
	}
	return r.ttl, keys, true
}

func (t *leaseTable) ids() []int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]int64, 0, len(t.m))
	for id := range t.m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// promote arms the lessor with every lease's recorded remaining TTL, holding
// mu so that no grant or renewal slips between the copy and the arming.
func (t *leaseTable) promote() {
	t.mu.Lock()
	defer t.mu.Unlock()
	states := make([]lease.State, 0, len(t.m))
	for _, r := range t.m {
		states = append(states, r.state())
	}
	sort.Slice(states, func(i, j int) bool { return states[i].ID < states[j].ID })
	t.lessor.Promote(states)
}

// The methods below run on the FSM goroutine only.

func (t *leaseTable) grant(ttl int64, index uint64) *leaseRec {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.m[t.nextID] != nil { // IDs restored from a backup may be taken
		t.nextID++
	}
	r := &leaseRec{id: t.nextID, ttl: ttl, remainingMs: ttl * 1000, renewIndex: index, keys: map[string]struct{}{}}
	t.nextID++
	t.m[r.id] = r
	t.lessor.Upsert(r.state())
	return r
}

func (t *leaseTable) renew(id int64, index uint64) (*leaseRec, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[id]
	if !ok {
		return nil, false
	}
	r.remainingMs, r.renewIndex = r.ttl*1000, index
	t.lessor.Upsert(r.state())
	return r, true
}

// checkpoint records remaining TTLs measured by the leader. The leader's own
// deadlines are not touched: they are the source of these numbers.
func (t *leaseTable) checkpoint(cps []leaseCheckpoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, cp := range cps {
		if r, ok := t.m[cp.ID]; ok && cp.RenewIndex == r.renewIndex && cp.RemainingMs >= 0 && cp.RemainingMs < r.remainingMs {
			r.remainingMs = cp.RemainingMs
		}
	}
}

// remove deletes a lease and returns its attached keys, sorted.
func (t *leaseTable) remove(id int64) ([]string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[id]
	if !ok {
		return nil, false
	}
	delete(t.m, id)
	t.lessor.Remove(id)
	keys := make([]string, 0, len(r.keys))
	for k := range r.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, true
}

func (t *leaseTable) renewIndexOf(id int64) (uint64, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	r, ok := t.m[id]
	if !ok {
		return 0, false
	}
	return r.renewIndex, true
}

// attach and detach keep each lease's key set in step with the MVCC store.
func (t *leaseTable) attach(id int64, key []byte) {
	t.mu.Lock()
	if r, ok := t.m[id]; ok {
		r.keys[string(key)] = struct{}{}
	}
	t.mu.Unlock()
}

func (t *leaseTable) detach(id int64, key []byte) {
	t.mu.Lock()
	if r, ok := t.m[id]; ok {
		delete(r.keys, string(key))
	}
	t.mu.Unlock()
}

// replace installs leases restored from a snapshot and rebuilds their key
// sets from the live keys of kv.
func (t *leaseTable) replace(recs []*leaseRec, nextID int64, kv *mvcc.View) error {
	m := make(map[int64]*leaseRec, len(recs))
	for _, r := range recs {
		r.keys = map[string]struct{}{}
		m[r.id] = r
	}
	rr, err := kv.Range([]byte{0}, []byte{0}, mvcc.RangeOptions{KeysOnly: true})
	if err != nil {
		return fmt.Errorf("%w: rebuilding lease keys: %v", ErrCorrupt, err)
	}
	for _, k := range rr.KVs {
		if r, ok := m[k.Lease]; ok {
			r.keys[string(k.Key)] = struct{}{}
		}
	}
	t.mu.Lock()
	t.m, t.nextID = m, nextID
	t.mu.Unlock()
	return nil
}

// snapshot copies the table for an FSM snapshot (on the FSM goroutine).
func (t *leaseTable) snapshot() (recs []leaseSnap, nextID int64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, r := range t.m {
		recs = append(recs, leaseSnap{ID: r.id, TTL: r.ttl, RemainingMs: r.remainingMs, RenewIndex: r.renewIndex})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	return recs, t.nextID
}

// leaseSnap is a lease as stored in FSM snapshots (msgpack).
type leaseSnap struct {
	ID          int64  `msgpack:"i"`
	TTL         int64  `msgpack:"t"`
	RemainingMs int64  `msgpack:"r"`
	RenewIndex  uint64 `msgpack:"x"`
}
