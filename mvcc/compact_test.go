package mvcc

import (
	"fmt"
	"runtime"
	"testing"
	"weak"
)

// compactFixture builds
//
//	2 put a=1   3 put a=2   4 put a=3   5 put b=1   6 del b
//	7 put c=1   8 del c     9 put c=2
//
// leaving 8 history items: a×3, b×2 (one tombstone), c×3 (one tombstone).
func compactFixture(t testing.TB) *Store {
	s := New()
	put(t, s, "a", "1")
	put(t, s, "a", "2")
	put(t, s, "a", "3")
	put(t, s, "b", "1")
	del(t, s, "b", "")
	put(t, s, "c", "1")
	del(t, s, "c", "")
	put(t, s, "c", "2")
	if s.Rev() != 9 || s.hist.Len() != 8 {
		t.Fatalf("fixture: rev %d, %d history items; want 9, 8", s.Rev(), s.hist.Len())
	}
	return s
}

func TestCompact(t *testing.T) {
	s := compactFixture(t)
	before := s.View()
	steps := []struct {
		compact   int64
		wantHist  int
		wantState string // all keys at the compaction revision
		wantEvs   []string
	}{
		// a keeps its version at 6 (rev 4); b's newest at 6 is a tombstone:
		// gone entirely; c is all newer than 6.
		{6, 4, "[a=3@2/4/v3]", []string{
			"6:[DELETE b=@0/6/v0 (prev b=1@5/5/v1)]",
			"7:[PUT c=1@7/7/v1 (prev <nil>)]",
			"8:[DELETE c=@0/8/v0 (prev c=1@7/7/v1)]",
			"9:[PUT c=2@9/9/v1 (prev <nil>)]",
		}},
		// c's tombstone at 8 and the version before it go; the delete
		// event at exactly 8 stays, with its prev value.
		{8, 2, "[a=3@2/4/v3]", []string{
			"8:[DELETE c=@0/8/v0 (prev c=1@7/7/v1)]",
			"9:[PUT c=2@9/9/v1 (prev <nil>)]",
		}},
		{9, 2, "[a=3@2/4/v3 c=2@9/9/v1]", []string{
			"9:[PUT c=2@9/9/v1 (prev <nil>)]",
		}},
	}
	all := []byte{0}
	for _, st := range steps {
		t.Run(fmt.Sprintf("compact %d", st.compact), func(t *testing.T) {
			if err := s.Compact(st.compact); err != nil {
				t.Fatal(err)
			}
			if got := s.hist.Len(); got != st.wantHist {
				t.Errorf("history items %d, want %d", got, st.wantHist)
			}
			if s.CompactRev() != st.compact {
				t.Errorf("CompactRev() = %d, want %d", s.CompactRev(), st.compact)
			}
			v := s.View()
			r, err := v.Range(all, all, RangeOptions{Rev: st.compact})
			if err != nil {
				t.Fatalf("read at compaction revision: %v", err)
			}
			if got := fmtKVs(r.KVs); got != st.wantState {
				t.Errorf("state at %d: %s, want %s", st.compact, got, st.wantState)
			}
			_, err = v.Range(all, all, RangeOptions{Rev: st.compact - 1})
			wantErr(t, "read below compaction", err, ErrCompacted)
			err = v.Events(st.compact-1, all, all, func(int64, []*Event) bool { return true })
			wantErr(t, "events below compaction", err, ErrCompacted)
			got := allEvents(t, v, st.compact, all, all)
			if fmt.Sprint(got) != fmt.Sprint(st.wantEvs) {
				t.Errorf("events from %d\n got %v\nwant %v", st.compact, got, st.wantEvs)
			}
			if got := s.events.Len(); got != len(st.wantEvs) {
				t.Errorf("event log holds %d revisions, want %d", got, len(st.wantEvs))
			}
			// every revision from the compaction on still reads as before
			for rev := st.compact; rev <= 9; rev++ {
				if got, want := rangeStr(v, "\x00", "\x00", rev), rangeStr(before, "\x00", "\x00", rev); got != want {
					t.Errorf("rev %d after compaction: %s, want %s", rev, got, want)
				}
			}
		})
	}
	t.Run("old view unaffected", func(t *testing.T) {
		if got, want := rangeStr(before, "a", "", 2), "rev=2 count=1 more=false kvs=[a=1@2/2/v1]"; got != want {
			t.Errorf("old view at 2: %s, want %s", got, want)
		}
		if got := len(allEvents(t, before, 2, all, all)); got != 8 {
			t.Errorf("old view events: %d revisions, want 8", got)
		}
	})
}

func TestCompactErrors(t *testing.T) {
	s := New()
	wantErr(t, "Compact(0) on a new store", s.Compact(0), ErrCompacted)
	wantErr(t, "Compact(-1)", s.Compact(-1), ErrCompacted)
	wantErr(t, "Compact(2) at rev 1", s.Compact(2), ErrFutureRev)
	if err := s.Compact(1); err != nil {
		t.Fatalf("Compact(1) on a new store: %v", err)
	}
	put(t, s, "a", "1")
	put(t, s, "a", "2")
	tests := []struct {
		rev  int64
		want error
	}{
		{1, ErrCompacted}, // == compact rev
		{4, ErrFutureRev},
		{3, nil},
		{3, ErrCompacted},
		{2, ErrCompacted},
	}
	for _, tt := range tests {
		err := s.Compact(tt.rev)
		if tt.want == nil && err != nil {
			t.Errorf("Compact(%d): %v", tt.rev, err)
		} else if tt.want != nil {
			wantErr(t, fmt.Sprintf("Compact(%d)", tt.rev), err, tt.want)
		}
	}
	if s.CompactRev() != 3 {
		t.Errorf("CompactRev() = %d, want 3", s.CompactRev())
	}
}

// TestCompactLarge drops more items than one compaction chunk holds.
func TestCompactLarge(t *testing.T) {
	s := New()
	const n = 3 * compactChunk
	for round := range 3 {
		tx := s.Write()
		for i := range n {
			tx.Put(fmt.Appendf(nil, "k%05d", i), fmt.Appendf(nil, "v%d", round), 0)
		}
		tx.End()
	}
	// delete every third key
	tx := s.Write()
	for i := 0; i < n; i += 3 {
		tx.DeleteRange(fmt.Appendf(nil, "k%05d", i), nil)
	}
	tx.End()
	if got, want := s.hist.Len(), 3*n+n/3; got != want {
		t.Fatalf("history before: %d, want %d", got, want)
	}
	if err := s.Compact(s.Rev()); err != nil {
		t.Fatal(err)
	}
	if got, want := s.hist.Len(), n-n/3; got != want {
		t.Errorf("history after: %d, want %d", got, want)
	}
	if got, want := s.Len(), n-n/3; got != want {
		t.Errorf("live keys: %d, want %d", got, want)
	}
	r, err := s.View().Range([]byte("k00001"), nil, RangeOptions{})
	if err != nil || fmtKVs(r.KVs) != "[k00001=v2@2/4/v3]" {
		t.Errorf("k00001 after compaction: %s", fmtResult(r, err))
	}
}

// TestDocExample checks the worked example of the package documentation.
func TestDocExample(t *testing.T) {
	s := New()
	put(t, s, "foo", "a") // 2
	put(t, s, "foo", "b") // 3
	put(t, s, "bar", "x") // 4
	del(t, s, "foo", "")  // 5
	put(t, s, "foo", "c") // 6
	v := s.View()
	all := []byte{0}
	reads := []struct {
		rev  int64
		want string
	}{
		{1, "[]"}, {2, "[foo=a@2/2/v1]"}, {3, "[foo=b@2/3/v2]"}, {4, "[foo=b@2/3/v2]"},
		{5, "[]"}, {6, "[foo=c@6/6/v1]"}, {0, "[foo=c@6/6/v1]"},
	}
	for _, r := range reads {
		res, err := v.Range([]byte("foo"), nil, RangeOptions{Rev: r.rev})
		if err != nil || fmtKVs(res.KVs) != r.want {
			t.Errorf("foo at %d: %s, want %s", r.rev, fmtResult(res, err), r.want)
		}
	}
	_, err := v.Range([]byte("foo"), nil, RangeOptions{Rev: 7})
	wantErr(t, "foo at 7", err, ErrFutureRev)
	if got := rangeStr(v, "\x00", "\x00", 5); got != "rev=5 count=1 more=false kvs=[bar=x@4/4/v1]" {
		t.Errorf("all at 5: %s", got)
	}
	if got := rangeStr(v, "\x00", "\x00", 4); got != "rev=4 count=2 more=false kvs=[bar=x@4/4/v1 foo=b@2/3/v2]" {
		t.Errorf("all at 4: %s", got)
	}
	wantEvents := []string{
		"2:[PUT foo=a@2/2/v1 (prev <nil>)]",
		"3:[PUT foo=b@2/3/v2 (prev foo=a@2/2/v1)]",
		"4:[PUT bar=x@4/4/v1 (prev <nil>)]",
		"5:[DELETE foo=@0/5/v0 (prev foo=b@2/3/v2)]",
		"6:[PUT foo=c@6/6/v1 (prev <nil>)]",
	}
	if got := allEvents(t, v, 0, all, all); fmt.Sprint(got) != fmt.Sprint(wantEvents) {
		t.Errorf("events\n got %v\nwant %v", got, wantEvents)
	}
	if err := s.Compact(4); err != nil {
		t.Fatal(err)
	}
	if got := s.hist.Len(); got != 4 { // foo 6.0, 5.0, 3.0; bar 4.0
		t.Errorf("after Compact(4): %d history items, want 4", got)
	}
	v = s.View()
	_, err = v.Range([]byte("foo"), nil, RangeOptions{Rev: 3})
	wantErr(t, "foo at 3 after Compact(4)", err, ErrCompacted)
	if got := rangeStr(v, "\x00", "\x00", 4); got != "rev=4 count=2 more=false kvs=[bar=x@4/4/v1 foo=b@2/3/v2]" {
		t.Errorf("all at 4 after Compact(4): %s", got)
	}
	if got := allEvents(t, v, 4, all, all); fmt.Sprint(got) != fmt.Sprint(wantEvents[2:]) {
		t.Errorf("events from 4: %v", got)
	}
	if err := s.Compact(5); err != nil {
		t.Fatal(err)
	}
	if got := s.hist.Len(); got != 2 { // foo 6.0; bar 4.0
		t.Errorf("after Compact(5): %d history items, want 2", got)
	}
	if got := allEvents(t, s.View(), 5, all, all); fmt.Sprint(got) != fmt.Sprint(wantEvents[3:]) {
		t.Errorf("events from 5: %v", got)
	}
}

// TestCompactedVersionsAreFreed checks that a compacted version, with its
// key and value bytes, becomes garbage: no later version, event or shared
// buffer may keep it reachable (an Event allocated with its KeyValue used
// to hold PrevKv, so a key kept every version ever written to it).
func TestCompactedVersionsAreFreed(t *testing.T) {
	key := []byte("hot-key")
	for _, tc := range []struct {
		name string
		then func(tx *WriteTxn) // what follows the first version
	}{
		{"overwritten", func(tx *WriteTxn) { tx.Put(key, []byte("second"), 0) }},
		{"deleted-and-recreated", func(tx *WriteTxn) {
			tx.DeleteRange(key, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			kvRef, valueRef := firstVersion(t, s, key)
			for i := range 3 {
				tx := s.Write()
				if i == 0 {
					tc.then(tx)
				} else {
					tx.Put(key, fmt.Appendf(nil, "v%d", i), 0)
				}
				tx.End()
			}
			if err := s.Compact(s.Rev()); err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			if kvRef.Value() != nil {
				t.Errorf("got the first KeyValue still reachable after compaction, want it freed")
			}
			if valueRef.Value() != nil {
				t.Errorf("got the first value's bytes still reachable after compaction, want them freed")
			}
			if r, err := s.View().Range(key, nil, RangeOptions{}); err != nil || len(r.KVs) != 1 || string(r.KVs[0].Value) != "v2" {
				t.Fatalf("got %v, %v; want v2", r, err)
			}
		})
	}
}

// firstVersion writes key's first version and returns weak pointers to its
// KeyValue and to its value bytes.
func firstVersion(t *testing.T, s *Store, key []byte) (weak.Pointer[KeyValue], weak.Pointer[byte]) {
	t.Helper()
	tx := s.Write()
	tx.Put(key, []byte("first version"), 0)
	tx.End()
	r, err := s.View().Range(key, nil, RangeOptions{})
	if err != nil || len(r.KVs) != 1 {
		t.Fatalf("got %v, %v; want the first version", r, err)
	}
	return weak.Make(r.KVs[0]), weak.Make(&r.KVs[0].Value[0])
}
