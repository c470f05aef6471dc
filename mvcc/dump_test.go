package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// dumpRecords dumps v into a slice of records.
func dumpRecords(t testing.TB, v *View) [][]byte {
	t.Helper()
	var recs [][]byte
	if err := v.Dump(func(r []byte) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return recs
}

// loadRecords loads recs through a next func that reuses one buffer, so
// Load must copy whatever it keeps.
func loadRecords(recs [][]byte) (*Store, error) {
	var buf []byte
	i := 0
	return Load(func() ([]byte, error) {
		if i == len(recs) {
			return nil, io.EOF
		}
		for j := range buf {
			buf[j] = 0xee // scribble over the previous record
		}
		buf = append(buf[:0], recs[i]...)
		i++
		return buf, nil
	})
}

// sameViews compares everything observable: revisions, every readable
// revision's full state, and the event log.
func sameViews(t testing.TB, got, want *View) {
	t.Helper()
	if got.Rev() != want.Rev() || got.CompactRev() != want.CompactRev() {
		t.Fatalf("Rev/CompactRev %d/%d, want %d/%d", got.Rev(), got.CompactRev(), want.Rev(), want.CompactRev())
	}
	all := []byte{0}
	for rev := max(want.CompactRev(), 1); rev <= want.Rev(); rev++ {
		g := fmtResult(got.Range(all, all, RangeOptions{Rev: rev}))
		w := fmtResult(want.Range(all, all, RangeOptions{Rev: rev}))
		if g != w {
			t.Fatalf("rev %d\n got %s\nwant %s", rev, g, w)
		}
	}
	g, w := allEvents(t, got, want.CompactRev(), all, all), allEvents(t, want, want.CompactRev(), all, all)
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Fatalf("events\n got %v\nwant %v", g, w)
	}
}

// checkInvariants verifies the internal consistency of a store: latest
// against history, every key's version chain, compaction leftovers, and the
// event log against history.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("invariant: "+format, args...)
	}
	var (
		items []histItem
		live  int
	)
	flushKey := func() {
		if len(items) == 0 {
			return
		}
		newest := items[0]
		lt, ok := s.latest.Get(liveItem{key: newest.key})
		if newest.kv.isTombstone() == ok || (ok && lt.kv != newest.kv) {
			fail("key %q: latest %v disagrees with newest history item", newest.key, ok)
		}
		if ok {
			live++
		}
		atOrBelowC := 0
		for i, h := range items {
			if h.rev != h.kv.ModRevision || !bytes.Equal(h.key, h.kv.Key) || h.tomb != h.kv.isTombstone() || h.rev < 2 || h.rev > s.rev {
				fail("key %q: bad item at %d", h.key, h.rev)
			}
			if h.rev <= s.compactRev {
				atOrBelowC++
				if h.kv.isTombstone() {
					fail("key %q: tombstone at %d <= compaction revision", h.key, h.rev)
				}
			}
			if i+1 == len(items) {
				if h.kv.isTombstone() || (h.kv.Version == 1 && h.kv.CreateRevision != h.rev) {
					fail("key %q: bad oldest item at %d", h.key, h.rev)
				}
				continue
			}
			o := items[i+1]
			switch {
			case h.kv.isTombstone() && o.kv.isTombstone():
				fail("key %q: two tombstones in a row", h.key)
			case h.kv.isTombstone():
			case o.kv.isTombstone() && (h.kv.Version != 1 || h.kv.CreateRevision != h.rev):
				fail("key %q: recreate at %d is %s", h.key, h.rev, fmtKV(h.kv))
			case !o.kv.isTombstone() && (h.kv.Version != o.kv.Version+1 || h.kv.CreateRevision != o.kv.CreateRevision):
				fail("key %q: %s follows %s", h.key, fmtKV(h.kv), fmtKV(o.kv))
			}
		}
		if atOrBelowC > 1 {
			fail("key %q: %d items at or below the compaction revision", newest.key, atOrBelowC)
		}
		items = items[:0]
	}
	s.hist.Scan(func(h histItem) bool {
		if len(items) > 0 && !bytes.Equal(items[0].key, h.key) {
			flushKey()
		}
		items = append(items, h)
		return true
	})
	flushKey()
	if live != s.latest.Len() {
		fail("%d live keys in history, %d in latest", live, s.latest.Len())
	}
	want := max(s.compactRev, 2)
	s.events.Scan(func(b evBatch) bool {
		if b.rev != want || len(b.evs) == 0 {
			fail("event batch at %d with %d events, want revision %d", b.rev, len(b.evs), want)
		}
		want++
		for sub, ev := range b.evs {
			if ev.Kv.ModRevision != b.rev || (ev.Type == EventDelete) != ev.Kv.isTombstone() {
				fail("event %d/%d: %s", b.rev, sub, fmtEvent(ev))
			}
			if b.rev > s.compactRev {
				h, ok := s.hist.Get(histItem{key: ev.Kv.Key, rev: b.rev, sub: int32(sub)})
				if !ok || h.kv != ev.Kv {
					fail("event %d/%d (%s) is not in history", b.rev, sub, fmtEvent(ev))
				}
			}
		}
		return true
	})
	if s.rev >= max(s.compactRev, 2) && want != s.rev+1 {
		fail("event log ends at %d, revision %d", want-1, s.rev)
	}
}

// randomOp draws one operation and applies it to every store (which must
// all be equal): a write transaction of 1-3 puts and deletes, or, rarely, a
// compaction.
func randomOp(g gen, stores ...*Store) {
	s0 := stores[0]
	if g.Intn(40) == 0 && s0.Rev() > s0.CompactRev() {
		c := s0.CompactRev() + 1 + g.Int63n(s0.Rev()-s0.CompactRev())
		for _, s := range stores {
			if err := s.Compact(c); err != nil {
				panic(err)
			}
		}
		return
	}
	type op struct {
		del        bool
		key, end   []byte
		val        []byte
		lease      int64
		valBigness int
	}
	var ops []op
	for range 1 + g.Intn(3) {
		o := op{key: g.key(), lease: g.Int63n(5) - 1}
		if g.Intn(4) == 0 {
			o.del = true
			if g.Intn(4) == 0 {
				o.key, o.end = g.span()
			}
		} else {
			o.val = fmt.Appendf(nil, "v%d", g.Intn(1000))
			if g.big > 0 && g.Intn(g.big) == 0 {
				o.val = bytes.Repeat(o.val, 10000) // spans records
			}
		}
		ops = append(ops, o)
	}
	for _, s := range stores {
		tx := s.Write()
		for _, o := range ops {
			if o.del {
				tx.DeleteRange(o.key, o.end)
			} else {
				tx.Put(o.key, o.val, o.lease)
			}
		}
		tx.End()
	}
}

func TestDumpLoadRoundTrip(t *testing.T) {
	g := gen{rand.New(rand.NewSource(3)), 50, 50}
	s := New()
	var loaded []*Store
	check := func(stage string) {
		t.Helper()
		v := s.View()
		recs := dumpRecords(t, v)
		l, err := loadRecords(recs)
		if err != nil {
			t.Fatalf("%s: Load: %v", stage, err)
		}
		checkInvariants(t, l)
		sameViews(t, l.View(), v)
		if again := dumpRecords(t, l.View()); !bytes.Equal(bytes.Join(again, nil), bytes.Join(recs, nil)) {
			t.Fatalf("%s: dump of the loaded store differs", stage)
		}
		loaded = append(loaded, l)
	}
	check("empty")
	for i := range 2000 {
		randomOp(g, append([]*Store{s}, loaded...)...)
		if i%250 == 249 {
			checkInvariants(t, s)
			check(fmt.Sprintf("after %d ops (rev %d, compacted at %d)", i+1, s.Rev(), s.CompactRev()))
		}
	}
	// The loaded stores received the same writes since: all still equal.
	for i, l := range loaded {
		checkInvariants(t, l)
		sameViews(t, l.View(), s.View())
		if l.Len() != s.Len() {
			t.Errorf("loaded store %d: Len %d, want %d", i, l.Len(), s.Len())
		}
	}
	t.Logf("rev %d, compacted at %d, %d live keys, %d history items", s.Rev(), s.CompactRev(), s.Len(), s.hist.Len())
}

// edgeStores are small stores covering the corners of the format.
func edgeStores(t testing.TB) map[string]*Store {
	m := map[string]*Store{"empty": New()}

	s := New()
	_ = s.Compact(1)
	put(t, s, "a", "1")
	m["compacted at 1"] = s

	s = New()
	put(t, s, "k", "1")                 // 2
	put(t, s, "gone", "x")              // 3
	tx := s.Write()                     // 4: the batch at the compaction revision
	tx.Put([]byte("k"), nil, -7)        // prev inline (from 2)
	tx.Put([]byte("k"), []byte("3"), 1) // prev from the batch
	tx.DeleteRange([]byte("gone"), nil) // delete at c
	tx.Put([]byte("new"), []byte("n"), 0)
	tx.DeleteRange([]byte("new"), nil)
	tx.Put([]byte("new"), []byte("again"), 0)
	tx.Put([]byte{}, []byte("empty key"), 0)
	tx.End()
	put(t, s, "k", "5") // 5
	if err := s.Compact(4); err != nil {
		t.Fatal(err)
	}
	m["batch at compaction"] = s

	s = New()
	put(t, s, "a", "1")
	put(t, s, "b", strings.Repeat("x", 3*recordTarget))
	del(t, s, "a", "")
	_ = s.Compact(s.Rev())
	m["compacted at rev"] = s
	return m
}

func TestDumpLoadEdgeCases(t *testing.T) {
	for name, s := range edgeStores(t) {
		t.Run(name, func(t *testing.T) {
			checkInvariants(t, s)
			recs := dumpRecords(t, s.View())
			l, err := loadRecords(recs)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkInvariants(t, l)
			sameViews(t, l.View(), s.View())
			// and they keep behaving the same
			g := gen{rand.New(rand.NewSource(1)), 9, 0}
			for range 50 {
				randomOp(g, s, l)
			}
			sameViews(t, l.View(), s.View())
		})
	}
}

func TestDumpEmitError(t *testing.T) {
	s := edgeStores(t)["batch at compaction"]
	boom := errors.New("boom")
	for stop := 0; stop < 4; stop++ {
		n := 0
		err := s.View().Dump(func([]byte) error {
			if n == stop {
				return boom
			}
			n++
			return nil
		})
		if !errors.Is(err, boom) {
			t.Errorf("emit failing at record %d: Dump returned %v", stop, err)
		}
	}
}
