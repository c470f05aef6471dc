package mvcc

import (
	"bytes"
	"math"
	"slices"

	"github.com/tidwall/btree"
)

// Store is an in-memory multi-version key-value store with etcd v3
// semantics. See the package documentation for the data model.
//
// A Store is not safe for concurrent use: exactly one goroutine (the Raft
// FSM) calls its methods. Other goroutines read through Views, which are
// immutable copy-on-write snapshots and may be used concurrently with the
// writer and with each other.
type Store struct {
	rev        int64 // current revision; 1 for an empty store
	compactRev int64 // reads below this fail with ErrCompacted; 0 = never compacted

	latest *btree.BTreeG[liveItem] // live keys at rev
	hist   *btree.BTreeG[histItem] // every retained version and tombstone
	events *btree.BTreeG[evBatch]  // event log, one item per revision >= compactRev

	txn  *WriteTxn // the open write transaction, if any
	view *View     // View of the current state, nil once anything changed

	compactPath compactPath // how Compact finds what to drop; tests force one
}

// compactPath selects how Compact finds the history to drop.
type compactPath uint8

const (
	compactAuto compactPath = iota // seek the changed keys when few, else scan
	compactSeek                    // always seek the changed keys
	compactScan                    // always scan the whole history
)

// treeOpts are the options of every tree: the store does its own
// synchronisation (single writer, immutable copies for readers).
var treeOpts = btree.Options{NoLocks: true, Degree: 16}

// New returns an empty store at revision 1, never compacted.
func New() *Store {
	return &Store{
		rev:    1,
		latest: btree.NewBTreeGOptions(liveLess, treeOpts),
		hist:   btree.NewBTreeGOptions(histLess, treeOpts),
		events: btree.NewBTreeGOptions(evLess, treeOpts),
	}
}

// Rev returns the current revision: the revision of the last write
// transaction that changed something, or 1 for an empty store.
func (s *Store) Rev() int64 { return s.rev }

// CompactRev returns the revision of the last compaction, 0 if the store was
// never compacted. Reads at revisions below it fail with ErrCompacted.
func (s *Store) CompactRev() int64 { return s.compactRev }

// Len returns the number of live keys at the current revision.
func (s *Store) Len() int { return s.latest.Len() }

// View returns an immutable snapshot of the current state. It is O(1): the
// trees are shared copy-on-write, so the first write after a View clones the
// tree paths it touches (a few KB per tree). The View stays valid and
// unchanged forever, whatever the store does later, and may be used from any
// goroutine. Calls without a write or compaction in between return the same
// View, so calling it once per applied batch is cheap.
//
// View panics if a write transaction is open: its partial writes are not a
// state the store has ever been in.
func (s *Store) View() *View {
	if s.txn != nil {
		panic("mvcc: View called while a write transaction is open")
	}
	if s.view == nil {
		s.view = &View{r: reader{
			rev:        s.rev,
			compactRev: s.compactRev,
			latest:     s.latest.Copy(),
			hist:       s.hist.Copy(),
		}, events: s.events.Copy()}
	}
	return s.view
}

// Write starts a write transaction at revision Rev()+1. At most one may be
// open at a time, and no View or Compact may be called while it is open;
// Write panics if another transaction is open. Finish it with End.
func (s *Store) Write() *WriteTxn {
	if s.txn != nil {
		panic("mvcc: Write called while another write transaction is open")
	}
	t := &WriteTxn{s: s, rev: s.rev + 1}
	s.txn = t
	return t
}

// reader returns a reader of the store's live trees at revision rev.
func (s *Store) reader(rev int64) reader {
	return reader{rev: rev, compactRev: s.compactRev, latest: s.latest, hist: s.hist}
}

// changed drops the cached View after a mutation.
func (s *Store) changed() { s.view = nil }

// compactChunk bounds how many history items a scanning Compact collects
// before deleting them, so a large compaction needs little transient memory.
const compactChunk = 4096

// Compact discards history that no read at a revision >= rev can see, and
// the events below rev. Afterwards reads at revisions below rev fail with
// ErrCompacted, while reads at rev and above (and Events from rev on, deletes
// at exactly rev included) are unaffected.
//
// For each key it keeps every version newer than rev plus the newest
// version at or below rev, unless that one is a tombstone (the key did not
// exist at rev, so nothing at or after rev needs it). A key whose history
// ends in a tombstone at or below rev disappears entirely. Events keep their
// PrevKv, so catch-up with previous values still works for events at or
// after rev even when the previous version itself was pruned from history.
//
// It fails with ErrCompacted if rev <= CompactRev() and with ErrFutureRev if
// rev > Rev(). Existing Views are not affected (they keep their own copies
// of the trees).
//
// After a compaction at c every key has at most one version at or below c,
// and it is not a tombstone, so only keys with an event in (c, rev] can
// have anything to drop, and the event log lists exactly those. When they
// are few against the history, Compact seeks just them (O(log n) each);
// else it scans the whole history, as etcd's compaction does. Either way it
// then deletes O(log n) per dropped item.
//
// Compact panics if a write transaction is open.
func (s *Store) Compact(rev int64) error {
	if s.txn != nil {
		panic("mvcc: Compact called while a write transaction is open")
	}
	if rev <= s.compactRev {
		return ErrCompacted
	}
	if rev > s.rev {
		return ErrFutureRev
	}
	limit := s.hist.Len() / seekRatio
	switch s.compactPath {
	case compactSeek:
		limit = math.MaxInt
	case compactScan:
		limit = 0
	}
	if keys, ok := s.changedKeys(s.compactRev, rev, limit); ok {
		for _, h := range s.droppable(keys, rev) {
			s.hist.Delete(h)
		}
	} else {
		var (
			from = histAt(nil, math.MaxInt64) // first item of the first key
			drop []histItem
			more = true
		)
		for more {
			drop, from, more = s.compactScan(from, rev, drop[:0])
			for _, h := range drop {
				s.hist.Delete(h)
			}
		}
	}
	for {
		b, ok := s.events.Min()
		if !ok || b.rev >= rev {
			break
		}
		s.events.PopMin()
	}
	s.compactRev = rev
	s.changed()
	return nil
}

// seekRatio: seeking one key's history costs about as much as stepping
// over this many history items, so Compact seeks the changed keys only
// when there are fewer than Len()/seekRatio events to visit, and else scans
// the whole history (BenchmarkCompact: 100k keys scan faster, 1M keys seek
// faster, for 10k changed keys).
const seekRatio = 32

// changedKeys returns, sorted and without repeats, the keys with an event
// at a revision in [from, to], or false if there are more than limit
// events.
func (s *Store) changedKeys(from, to int64, limit int) ([][]byte, bool) {
	var keys [][]byte
	it := s.events.Iter()
	defer it.Release()
	for ok := it.Seek(evBatch{rev: from}); ok && it.Item().rev <= to; ok = it.Next() {
		for _, ev := range it.Item().evs {
			if len(keys) >= limit {
				return nil, false
			}
			keys = append(keys, ev.Kv.Key)
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	return slices.CompactFunc(keys, bytes.Equal), true
}

// droppable returns the history items of keys that compaction at rev
// removes (see dropVersions).
func (s *Store) droppable(keys [][]byte, rev int64) []histItem {
	var drop []histItem
	it := s.hist.Iter()
	defer it.Release()
	for _, key := range keys {
		if it.Seek(histAt(key, rev)) && bytes.Equal(it.Item().key, key) {
			drop, _ = dropVersions(&it, rev, drop)
		}
	}
	return drop
}

// dropVersions appends to drop the items of the key under it that
// compaction at rev removes: every version older than the newest one at or
// below rev, and that one too if it is a tombstone. It leaves it on the
// first item of the next key and reports whether there is one.
func dropVersions(it *btree.IterG[histItem], rev int64, drop []histItem) ([]histItem, bool) {
	key := it.Item().key
	seen := false // key's newest item <= rev has been seen
	for {
		h := it.Item()
		switch {
		case h.rev > rev:
			// still visible at revisions > rev
		case !seen:
			// the version visible at rev: keep it unless it is a tombstone
			seen = true
			if h.tomb {
				drop = append(drop, h)
			}
		default:
			// older than the version visible at rev: invisible from rev on
			drop = append(drop, h)
		}
		if !it.Next() {
			return drop, false
		}
		if !bytes.Equal(it.Item().key, key) {
			return drop, true
		}
	}
}

// compactScan walks history from the probe from, appending to drop the items
// that compaction at rev removes. It stops at a key boundary once drop holds
// compactChunk items and returns the probe to resume from (the first item
// of the next key) with more == true.
func (s *Store) compactScan(from histItem, rev int64, drop []histItem) (_ []histItem, next histItem, more bool) {
	it := s.hist.Iter()
	defer it.Release()
	for ok := it.Seek(from); ok; {
		if len(drop) >= compactChunk {
			return drop, histAt(it.Item().key, math.MaxInt64), true
		}
		drop, ok = dropVersions(&it, rev, drop)
	}
	return drop, histItem{}, false
}
