package mvcc

import (
	"bytes"

	"github.com/tidwall/btree"
)

// View is an immutable snapshot of a Store, taken by Store.View. It holds
// copy-on-write copies of the store's trees, so it never changes whatever
// the store does afterwards, and all its methods may be called from any
// number of goroutines at once. A View keeps the history it can see alive
// (including history later compacted in the store) until it is dropped.
type View struct {
	r      reader
	events *btree.BTreeG[evBatch]
}

// Rev returns the revision the view was taken at.
func (v *View) Rev() int64 { return v.r.rev }

// CompactRev returns the store's compaction revision when the view was
// taken. Reads below it fail with ErrCompacted.
func (v *View) CompactRev() int64 { return v.r.compactRev }

// Len returns the number of live keys at the view's revision.
func (v *View) Len() int { return v.r.latest.Len() }

// Range returns the keys in the range at revision o.Rev (0: the view's
// revision), with etcd's semantics:
//
//	end == nil (or empty) → only key
//	end == []byte{0}      → every key >= key (all keys when key is also []byte{0})
//	otherwise             → every key in [key, end); empty if end <= key
//
// It fails with ErrFutureRev if o.Rev > Rev() and with ErrCompacted if
// o.Rev < CompactRev() (o.Rev == CompactRev() is readable). See
// RangeOptions for limits, sorting, filters and the shape of the result.
func (v *View) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	return v.r.rangeKeys(key, end, o)
}

// Events calls fn for each revision r in [from, Rev()] that has events,
// in increasing order, with all events of r whose key is in the range (key,
// end with the same semantics as Range) in sub-revision order. Revisions
// without matching events are skipped. It stops early when fn returns
// false. It fails with ErrCompacted if from < CompactRev(); events at
// exactly CompactRev() are always available, deletes included.
//
// evs and the Events are shared with the store: fn may keep them but must
// not modify them.
func (v *View) Events(from int64, key, end []byte, fn func(rev int64, evs []*Event) bool) error {
	if from < v.r.compactRev {
		return ErrCompacted
	}
	sp := mkSpan(key, end)
	all := sp.all()
	it := v.events.Iter()
	defer it.Release()
	for ok := it.Seek(evBatch{rev: from}); ok; ok = it.Next() {
		b := it.Item()
		if b.rev > v.r.rev {
			break
		}
		evs := b.evs
		if !all {
			evs = filterEvents(evs, &sp)
			if len(evs) == 0 {
				continue
			}
		}
		if !fn(b.rev, evs[:len(evs):len(evs)]) {
			break
		}
	}
	return nil
}

// filterEvents returns the events of evs whose key is in sp: evs itself if
// all match, nil if none, else a new slice.
func filterEvents(evs []*Event, sp *span) []*Event {
	n := 0
	for _, ev := range evs {
		if sp.contains(ev.Kv.Key) {
			n++
		}
	}
	switch n {
	case 0:
		return nil
	case len(evs):
		return evs
	}
	out := make([]*Event, 0, n)
	for _, ev := range evs {
		if sp.contains(ev.Kv.Key) {
			out = append(out, ev)
		}
	}
	return out
}

// reader reads the state of a pair of trees at any revision in
// [compactRev, rev]. latest must hold exactly the live keys at rev.
type reader struct {
	rev, compactRev int64
	latest          *btree.BTreeG[liveItem]
	hist            *btree.BTreeG[histItem]
}

// checkRev resolves a requested revision (<= 0 means current) and checks it
// against the readable window, in etcd's order.
func (r *reader) checkRev(rev int64) (int64, error) {
	if rev > r.rev {
		return 0, ErrFutureRev
	}
	if rev <= 0 {
		rev = r.rev
	}
	if rev < r.compactRev {
		return 0, ErrCompacted
	}
	return rev, nil
}

// visit calls fn with the version of every key in sp that is live at rev, in
// key order, until fn returns false. rev must be in [compactRev, r.rev].
//
// At the current revision it walks the latest tree. At a past revision it
// walks history: seeking {key, rev, maxSub} lands on the newest version of
// key at rev, or, if key has none, on the first (newest) item of a later
// key, which is advanced the same way when it is newer than rev. After
// using a key's version it skips that key's older versions. Both moves step
// a few items before falling back to a seek, so a key with a short history
// costs O(1) and a hot key with a long history O(log n), not O(history).
func (r *reader) visit(sp *span, rev int64, fn func(kv *KeyValue) bool) {
	if rev == r.rev {
		if sp.single {
			if it, ok := r.latest.Get(liveItem{key: sp.start}); ok {
				fn(it.kv)
			}
			return
		}
		it := r.latest.Iter()
		defer it.Release()
		for ok := it.Seek(liveItem{key: sp.start}); ok; ok = it.Next() {
			item := it.Item()
			if sp.beyond(item.key) || !fn(item.kv) {
				return
			}
		}
		return
	}
	it := r.hist.Iter()
	defer it.Release()
	ok := it.Seek(histAt(sp.start, rev))
	for ok {
		h := it.Item()
		if sp.beyond(h.key) {
			return
		}
		if h.rev > rev {
			// The newest item of a key, written after rev: move on to the
			// key's newest version at rev, or to a later key.
			ok = seekAt(&it, h.key, rev)
			continue
		}
		if !h.tomb && !fn(h.kv) {
			return
		}
		if sp.single {
			return
		}
		ok = skipKey(&it, h.key)
	}
}

// seekAt moves it, positioned on an item of key newer than rev, to the
// first item that is either of key and at or below rev, or of a later key.
// Older versions are adjacent, so it steps a few items before seeking.
func seekAt(it *btree.IterG[histItem], key []byte, rev int64) bool {
	for range 4 {
		if !it.Next() {
			return false
		}
		if h := it.Item(); h.rev <= rev || !bytes.Equal(h.key, key) {
			return true
		}
	}
	return it.Seek(histAt(key, rev))
}

// skipKey moves it past the remaining (older) items of key.
func skipKey(it *btree.IterG[histItem], key []byte) bool {
	for range 4 {
		if !it.Next() {
			return false
		}
		if !bytes.Equal(it.Item().key, key) {
			return true
		}
	}
	return it.Seek(histAfter(key))
}
