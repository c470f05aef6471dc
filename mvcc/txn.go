package mvcc

import "github.com/tidwall/btree"

// WriteTxn is a write transaction: every change it makes shares one main
// revision, Rev(), and gets consecutive sub-revisions 0, 1, 2, ... in the
// order performed. Reads through the transaction see its own earlier
// writes. The revision is committed (and the events published to the event
// log) by End; a transaction that changed nothing leaves the revision alone.
//
// A WriteTxn belongs to the store's single writer goroutine. There is no
// rollback: writes are applied to the store's trees as they are made (they
// only become visible to Views after End, since no View can be taken while
// the transaction is open).
type WriteTxn struct {
	s    *Store
	rev  int64    // the revision this txn writes at: store rev + 1
	evs  []*Event // events so far; evs[i] has sub-revision i
	done bool
}

// Rev returns the revision the transaction writes at: the store's revision
// at Write plus one.
func (t *WriteTxn) Rev() int64 { return t.rev }

func (t *WriteTxn) check() {
	if t.done {
		panic("mvcc: use of a write transaction after End")
	}
}

// Range reads like View.Range, but sees this transaction's own writes: with
// o.Rev 0 it reads the current state including them (at Rev() once the txn
// has written something, else at the store's revision). A positive o.Rev
// reads a past revision as usual; it may not exceed that current
// revision.
func (t *WriteTxn) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	t.check()
	cur := t.rev - 1
	if len(t.evs) > 0 {
		cur = t.rev
	}
	r := t.s.reader(cur)
	return r.rangeKeys(key, end, o)
}

// Put sets key to value with the given lease (0 for none) and returns the
// version it replaced, nil if the key did not exist. The key and value are
// copied; the caller may reuse its buffers. A put on an existing key keeps
// its CreateRevision and increments its Version; on an absent key it starts
// a new generation at Version 1. An empty value is stored as nil.
func (t *WriteTxn) Put(key, value []byte, lease int64) (prev *KeyValue) {
	t.check()
	s := t.s
	var hint btree.PathHint // the Set below lands where the Get looked
	old, _ := s.latest.GetHint(liveItem{key: key}, &hint)
	prev = old.kv
	// The KeyValue and the Event are separate allocations, and the new
	// version gets its own copy of the key: a version must not keep alive
	// anything of the versions before it (an Event allocated with its
	// KeyValue would hold PrevKv, and so every version ever written to the
	// key, for as long as the key lives).
	kv := new(KeyValue)
	setKV(kv, key, value)
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
	} else {
		kv.CreateRevision = t.rev
		kv.Version = 1
	}
	kv.ModRevision = t.rev
	kv.Lease = lease
	s.latest.SetHint(liveItem{key: kv.Key, kv: kv}, &hint)
	s.hist.Set(mkHist(kv, t.rev, len(t.evs)))
	t.evs = append(t.evs, &Event{Type: EventPut, Kv: kv, PrevKv: prev})
	s.changed()
	return prev
}

// delBlock allocates a tombstone and its delete event together. Unlike a
// put's, a delete's Event may share the tombstone's allocation: what it
// keeps alive (PrevKv) is dropped by the same compaction that drops the
// tombstone, and no later version refers to a tombstone.
type delBlock struct {
	kv KeyValue
	ev Event
}

// DeleteRange deletes every live key in the range (same key/end semantics
// as Range) and returns their previous versions in key order, nil if
// nothing matched (then nothing is written). Each deleted key gets its own
// sub-revision, in key order, and a tombstone in history.
func (t *WriteTxn) DeleteRange(key, end []byte) (deleted []*KeyValue) {
	t.check()
	s := t.s
	sp := mkSpan(key, end)
	if sp.single {
		if it, ok := s.latest.Get(liveItem{key: key}); ok {
			deleted = []*KeyValue{it.kv}
		}
	} else {
		it := s.latest.Iter()
		for ok := it.Seek(liveItem{key: sp.start}); ok && !sp.beyond(it.Item().key); ok = it.Next() {
			deleted = append(deleted, it.Item().kv)
		}
		it.Release()
	}
	if len(deleted) == 0 {
		return nil
	}
	blocks := make([]delBlock, len(deleted))
	for i, prev := range deleted {
		b := &blocks[i]
		b.kv = KeyValue{Key: prev.Key, ModRevision: t.rev}
		s.latest.Delete(liveItem{key: prev.Key})
		s.hist.Set(mkHist(&b.kv, t.rev, len(t.evs)))
		b.ev = Event{Type: EventDelete, Kv: &b.kv, PrevKv: prev}
		t.evs = append(t.evs, &b.ev)
	}
	s.changed()
	return deleted
}

// End finishes the transaction. If it wrote anything, the store's revision
// becomes Rev() and the events are appended to the event log; End returns
// them in sub-revision order (the slice is the caller's; the Events and
// KeyValues are shared and read-only). If nothing was written it returns nil
// and the revision is unchanged. Calling End again returns nil.
func (t *WriteTxn) End() []*Event {
	if t.done {
		return nil
	}
	t.done = true
	s := t.s
	s.txn = nil
	if len(t.evs) == 0 {
		return nil
	}
	stored := make([]*Event, len(t.evs))
	copy(stored, t.evs)
	s.events.Set(evBatch{rev: t.rev, evs: stored})
	s.rev = t.rev
	s.changed()
	return t.evs
}

// setKV points kv.Key and kv.Value at private copies of key and value,
// made in a single allocation. An empty value is stored as nil.
func setKV(kv *KeyValue, key, value []byte) {
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	kv.Key = buf[:len(key):len(key)]
	if len(value) > 0 {
		kv.Value = buf[len(key):]
	}
}
