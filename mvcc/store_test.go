package mvcc

import (
	"fmt"
	"testing"
)

func TestPutGet(t *testing.T) {
	s := New()
	if got, want := s.Rev(), int64(1); got != want {
		t.Fatalf("empty store Rev() = %d, want %d", got, want)
	}
	put(t, s, "a", "1")
	put(t, s, "b", "2")
	put(t, s, "a", "3")
	v := s.View()
	tests := []struct {
		name, key string
		want      string
	}{
		{"updated key", "a", "rev=4 count=1 more=false kvs=[a=3@2/4/v2]"},
		{"single put", "b", "rev=4 count=1 more=false kvs=[b=2@3/3/v1]"},
		{"absent key", "c", "rev=4 count=0 more=false kvs=[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rangeStr(v, tt.key, "", 0); got != tt.want {
				t.Errorf("Range(%q)\n got %s\nwant %s", tt.key, got, tt.want)
			}
		})
	}
	if got, want := s.Len(), 2; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
}

// TestVersionsLifecycle follows one key through create, modify, delete and
// re-create (the example of the package documentation) and reads every
// revision.
func TestVersionsLifecycle(t *testing.T) {
	s := New()
	revs := []int64{
		put(t, s, "foo", "a"), // 2: create
		put(t, s, "foo", "b"), // 3: modify
		put(t, s, "bar", "x"), // 4: another key
	}
	if n := del(t, s, "foo", ""); n != 1 { // 5: delete
		t.Fatalf("delete foo deleted %d keys, want 1", n)
	}
	revs = append(revs, s.Rev(), put(t, s, "foo", "c")) // 6: re-create
	if got, want := fmt.Sprint(revs), "[2 3 4 5 6]"; got != want {
		t.Fatalf("revisions %s, want %s", got, want)
	}
	v := s.View()
	tests := []struct {
		rev  int64
		key  string
		want string
	}{
		{1, "foo", "[]"},
		{2, "foo", "[foo=a@2/2/v1]"},
		{3, "foo", "[foo=b@2/3/v2]"},
		{4, "foo", "[foo=b@2/3/v2]"},
		{4, "bar", "[bar=x@4/4/v1]"},
		{5, "foo", "[]"}, // tombstone
		{5, "bar", "[bar=x@4/4/v1]"},
		{6, "foo", "[foo=c@6/6/v1]"}, // new generation
		{0, "foo", "[foo=c@6/6/v1]"}, // 0 = current
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s@%d", tt.key, tt.rev), func(t *testing.T) {
			r, err := v.Range([]byte(tt.key), nil, RangeOptions{Rev: tt.rev})
			if err != nil {
				t.Fatal(err)
			}
			if got := fmtKVs(r.KVs); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			wantRev := tt.rev
			if wantRev == 0 {
				wantRev = 6
			}
			if r.Rev != wantRev {
				t.Errorf("result Rev = %d, want %d", r.Rev, wantRev)
			}
		})
	}
	t.Run("all keys at each revision", func(t *testing.T) {
		want := map[int64]string{
			1: "", 2: "foo", 3: "foo", 4: "bar,foo", 5: "bar", 6: "bar,foo",
		}
		for rev := int64(1); rev <= 6; rev++ {
			r, err := v.Range([]byte{0}, []byte{0}, RangeOptions{Rev: rev})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(r); got != want[rev] || r.Count != int64(len(r.KVs)) {
				t.Errorf("rev %d: keys %q count %d, want %q", rev, got, r.Count, want[rev])
			}
		}
	})
}

func TestMultiKeyDeleteSubRevisions(t *testing.T) {
	s := New()
	tx := s.Write()
	for _, k := range []string{"c", "a", "b"} {
		tx.Put([]byte(k), []byte("v"+k), 0)
	}
	evs := tx.End()
	if got, want := fmtEvents(evs), "[PUT c=vc@2/2/v1 (prev <nil>); PUT a=va@2/2/v1 (prev <nil>); PUT b=vb@2/2/v1 (prev <nil>)]"; got != want {
		t.Fatalf("put events\n got %s\nwant %s", got, want)
	}
	put(t, s, "z", "vz") // 3, outside the deleted range
	tx = s.Write()
	deleted := tx.DeleteRange([]byte("a"), []byte("d"))
	evs = tx.End()
	if got, want := fmtKVs(deleted), "[a=va@2/2/v1 b=vb@2/2/v1 c=vc@2/2/v1]"; got != want {
		t.Errorf("deleted\n got %s\nwant %s", got, want)
	}
	// one revision (4) for the whole delete, sub-revisions in key order
	want := "[DELETE a=@0/4/v0 (prev a=va@2/2/v1); DELETE b=@0/4/v0 (prev b=vb@2/2/v1); DELETE c=@0/4/v0 (prev c=vc@2/2/v1)]"
	if got := fmtEvents(evs); got != want {
		t.Errorf("delete events\n got %s\nwant %s", got, want)
	}
	if s.Rev() != 4 {
		t.Errorf("Rev() = %d, want 4", s.Rev())
	}
	v := s.View()
	if got, want := allEvents(t, v, 4, []byte{0}, []byte{0}), []string{"4:" + want}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("Events(4) = %v, want %v", got, want)
	}
	if got := rangeStr(v, "a", "zz", 3); got != "rev=3 count=4 more=false kvs=[a=va@2/2/v1 b=vb@2/2/v1 c=vc@2/2/v1 z=vz@3/3/v1]" {
		t.Errorf("range at 3: %s", got)
	}
	if got := rangeStr(v, "a", "zz", 4); got != "rev=4 count=1 more=false kvs=[z=vz@3/3/v1]" {
		t.Errorf("range at 4: %s", got)
	}
}

func TestNoopTxnKeepsRevision(t *testing.T) {
	s := New()
	put(t, s, "a", "1")
	v := s.View()
	tests := []struct {
		name string
		do   func(tx *WriteTxn)
	}{
		{"empty", func(tx *WriteTxn) {}},
		{"read only", func(tx *WriteTxn) { _, _ = tx.Range([]byte("a"), nil, RangeOptions{}) }},
		{"delete nothing", func(tx *WriteTxn) {
			if d := tx.DeleteRange([]byte("x"), []byte("z")); d != nil {
				t.Errorf("DeleteRange of nothing returned %v", d)
			}
			if d := tx.DeleteRange([]byte("b"), nil); d != nil {
				t.Errorf("DeleteRange of absent key returned %v", d)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := s.Write()
			if tx.Rev() != 3 {
				t.Errorf("txn Rev() = %d, want 3", tx.Rev())
			}
			tt.do(tx)
			if evs := tx.End(); evs != nil {
				t.Errorf("End() = %v, want nil", evs)
			}
			if s.Rev() != 2 {
				t.Errorf("Rev() = %d, want 2", s.Rev())
			}
			if s.View() != v {
				t.Errorf("View() changed after a no-op txn")
			}
		})
	}
}

func TestTxnReadsOwnWrites(t *testing.T) {
	s := New()
	put(t, s, "a", "1") // 2
	put(t, s, "b", "1") // 3
	tx := s.Write()
	read := func(key, end string, rev int64) string {
		return fmtResult(tx.Range(b(key), b(end), RangeOptions{Rev: rev}))
	}
	if got, want := read("a", "z", 0), "rev=3 count=2 more=false kvs=[a=1@2/2/v1 b=1@3/3/v1]"; got != want {
		t.Errorf("before writes\n got %s\nwant %s", got, want)
	}
	tx.Put([]byte("c"), []byte("2"), 7)
	tx.Put([]byte("a"), []byte("2"), 0)
	tx.DeleteRange([]byte("b"), nil)
	steps := []struct {
		name, key, end string
		rev            int64
		want           string
	}{
		{"current sees own writes", "a", "z", 0, "rev=4 count=2 more=false kvs=[a=2@2/4/v2 c=2@4/4/v1L7]"},
		{"explicit txn rev", "a", "z", 4, "rev=4 count=2 more=false kvs=[a=2@2/4/v2 c=2@4/4/v1L7]"},
		{"past rev does not", "a", "z", 3, "rev=3 count=2 more=false kvs=[a=1@2/2/v1 b=1@3/3/v1]"},
		{"own delete", "b", "", 0, "rev=4 count=0 more=false kvs=[]"},
		{"future", "a", "", 5, "error: " + ErrFutureRev.Error()},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if got := read(st.key, st.end, st.rev); got != st.want {
				t.Errorf("\n got %s\nwant %s", got, st.want)
			}
		})
	}
	evs := tx.End()
	if len(evs) != 3 || s.Rev() != 4 {
		t.Fatalf("End: %d events, Rev %d; want 3, 4", len(evs), s.Rev())
	}
}

func TestSameKeyTwiceInTxn(t *testing.T) {
	tests := []struct {
		name    string
		ops     func(tx *WriteTxn)
		wantEvs string
		wantKV  string // key k at rev 2
	}{
		{
			"put put",
			func(tx *WriteTxn) {
				tx.Put([]byte("k"), []byte("1"), 0)
				tx.Put([]byte("k"), []byte("2"), 0)
			},
			"[PUT k=1@2/2/v1 (prev <nil>); PUT k=2@2/2/v2 (prev k=1@2/2/v1)]",
			"[k=2@2/2/v2]",
		},
		{
			"put delete",
			func(tx *WriteTxn) {
				tx.Put([]byte("k"), []byte("1"), 0)
				tx.DeleteRange([]byte("k"), nil)
			},
			"[PUT k=1@2/2/v1 (prev <nil>); DELETE k=@0/2/v0 (prev k=1@2/2/v1)]",
			"[]",
		},
		{
			"put delete put",
			func(tx *WriteTxn) {
				tx.Put([]byte("k"), []byte("1"), 0)
				tx.DeleteRange([]byte("k"), nil)
				tx.Put([]byte("k"), []byte("3"), 0)
			},
			"[PUT k=1@2/2/v1 (prev <nil>); DELETE k=@0/2/v0 (prev k=1@2/2/v1); PUT k=3@2/2/v1 (prev <nil>)]",
			"[k=3@2/2/v1]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			tx := s.Write()
			tt.ops(tx)
			if got := fmtEvents(tx.End()); got != tt.wantEvs {
				t.Errorf("events\n got %s\nwant %s", got, tt.wantEvs)
			}
			put(t, s, "other", "x") // so that rev 2 is a past revision
			r, err := s.View().Range([]byte("k"), nil, RangeOptions{Rev: 2})
			if err != nil {
				t.Fatal(err)
			}
			if got := fmtKVs(r.KVs); got != tt.wantKV {
				t.Errorf("k at 2: got %s, want %s", got, tt.wantKV)
			}
		})
	}
}

func TestFutureRev(t *testing.T) {
	s := New()
	put(t, s, "a", "1")
	v := s.View()
	for _, rev := range []int64{3, 100} {
		_, err := v.Range([]byte("a"), nil, RangeOptions{Rev: rev})
		wantErr(t, "Range future", err, ErrFutureRev)
	}
	wantErr(t, "Compact future", s.Compact(3), ErrFutureRev)
	// negative revisions mean current, like etcd
	if got := rangeStr(v, "a", "", -5); got != "rev=2 count=1 more=false kvs=[a=1@2/2/v1]" {
		t.Errorf("Rev -5: %s", got)
	}
	// a view cannot read past its own revision even after the store moved on
	put(t, s, "a", "2")
	_, err := v.Range([]byte("a"), nil, RangeOptions{Rev: 3})
	wantErr(t, "old view, newer rev", err, ErrFutureRev)
}

func TestPutCopiesBuffers(t *testing.T) {
	s := New()
	key, val := []byte("key"), []byte("value")
	tx := s.Write()
	tx.Put(key, val, 0)
	tx.End()
	copy(key, "XXX")
	copy(val, "YYYYY")
	if got := rangeStr(s.View(), "key", "", 0); got != "rev=2 count=1 more=false kvs=[key=value@2/2/v1]" {
		t.Errorf("after reusing buffers: %s", got)
	}
}

func TestMisusePanics(t *testing.T) {
	tests := []struct {
		name string
		do   func(s *Store)
	}{
		{"two open txns", func(s *Store) { s.Write(); s.Write() }},
		{"view during txn", func(s *Store) { s.Write(); s.View() }},
		{"compact during txn", func(s *Store) { s.Write(); _ = s.Compact(1) }},
		{"put after end", func(s *Store) { tx := s.Write(); tx.End(); tx.Put([]byte("a"), nil, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			tt.do(New())
		})
	}
	t.Run("double End", func(t *testing.T) {
		s := New()
		tx := s.Write()
		tx.Put([]byte("a"), nil, 0)
		if len(tx.End()) != 1 || tx.End() != nil {
			t.Errorf("second End should return nil")
		}
	})
}
