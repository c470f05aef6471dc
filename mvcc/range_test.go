package mvcc

import (
	"bytes"
	"testing"
)

// rangeFixture builds:
//
//	key  value create mod version
//	a    1     2      5   2
//	b    2     3      7   2
//	c    2     4      4   1
//	d    1     6      6   1
//	e/1  x     8      8   1
//	e/2  y     8      8   1
//
// with a=3 (v1) at revisions 2-4, b=1 (v1) at 3-6.
func rangeFixture(t testing.TB) *Store {
	s := New()
	put(t, s, "a", "3") // 2
	put(t, s, "b", "1") // 3
	put(t, s, "c", "2") // 4
	put(t, s, "a", "1") // 5
	put(t, s, "d", "1") // 6
	put(t, s, "b", "2") // 7
	tx := s.Write()     // 8
	tx.Put([]byte("e/1"), []byte("x"), 0)
	tx.Put([]byte("e/2"), []byte("y"), 0)
	tx.End()
	return s
}

func TestRangeKeySelection(t *testing.T) {
	v := rangeFixture(t).View()
	all := []byte{0}
	tests := []struct {
		name     string
		key, end []byte
		rev      int64
		want     string // keys
	}{
		{"single", []byte("a"), nil, 0, "a"},
		{"single with empty end", []byte("a"), []byte{}, 0, "a"},
		{"single absent", []byte("aa"), nil, 0, ""},
		{"interval", []byte("b"), []byte("d"), 0, "b,c"},
		{"interval between keys", []byte("aa"), []byte("cc"), 0, "b,c"},
		{"end before key", []byte("d"), []byte("b"), 0, ""},
		{"end equals key", []byte("b"), []byte("b"), 0, ""},
		{"prefix", []byte("e/"), PrefixEnd([]byte("e/")), 0, "e/1,e/2"},
		{"prefix no match", []byte("f"), PrefixEnd([]byte("f")), 0, ""},
		{"from key", []byte("c"), all, 0, "c,d,e/1,e/2"},
		{"all keys", all, all, 0, "a,b,c,d,e/1,e/2"},
		{"empty key from key", []byte{}, all, 0, "a,b,c,d,e/1,e/2"},
		{"past interval", []byte("a"), []byte("c"), 3, "a,b"},
		{"past all", all, all, 4, "a,b,c"},
		{"past prefix", []byte("e/"), PrefixEnd([]byte("e/")), 7, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := v.Range(tt.key, tt.end, RangeOptions{Rev: tt.rev})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(r); got != tt.want {
				t.Errorf("keys %q, want %q", got, tt.want)
			}
			if r.Count != int64(len(r.KVs)) || r.More {
				t.Errorf("count %d more %v with %d kvs", r.Count, r.More, len(r.KVs))
			}
		})
	}
	t.Run("past values", func(t *testing.T) {
		if got, want := rangeStr(v, "a", "c", 4), "rev=4 count=2 more=false kvs=[a=3@2/2/v1 b=1@3/3/v1]"; got != want {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	})
}

func TestRangeLimit(t *testing.T) {
	v := rangeFixture(t).View()
	all := []byte{0}
	tests := []struct {
		name      string
		key, end  []byte
		limit     int64
		wantKeys  string
		wantCount int64
		wantMore  bool
	}{
		{"no limit", all, all, 0, "a,b,c,d,e/1,e/2", 6, false},
		{"negative is none", all, all, -1, "a,b,c,d,e/1,e/2", 6, false},
		{"cut", all, all, 2, "a,b", 6, true},
		{"one less", all, all, 5, "a,b,c,d,e/1", 6, true},
		{"exact", all, all, 6, "a,b,c,d,e/1,e/2", 6, false},
		{"above", all, all, 7, "a,b,c,d,e/1,e/2", 6, false},
		{"huge", all, all, 1<<63 - 1, "a,b,c,d,e/1,e/2", 6, false},
		{"interval", []byte("b"), []byte("e"), 1, "b", 3, true},
		{"single", []byte("a"), nil, 1, "a", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := v.Range(tt.key, tt.end, RangeOptions{Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(r); got != tt.wantKeys || r.Count != tt.wantCount || r.More != tt.wantMore {
				t.Errorf("got keys %q count %d more %v, want %q %d %v",
					got, r.Count, r.More, tt.wantKeys, tt.wantCount, tt.wantMore)
			}
		})
	}
}

func TestRangeSort(t *testing.T) {
	v := rangeFixture(t).View()
	all := []byte{0}
	tests := []struct {
		name     string
		target   SortTarget
		order    SortOrder
		limit    int64
		wantKeys string
		wantMore bool
	}{
		{"key none", SortByKey, SortNone, 0, "a,b,c,d,e/1,e/2", false},
		{"key ascend", SortByKey, SortAscend, 0, "a,b,c,d,e/1,e/2", false},
		{"key descend", SortByKey, SortDescend, 0, "e/2,e/1,d,c,b,a", false},
		{"version ascend", SortByVersion, SortAscend, 0, "c,d,e/1,e/2,a,b", false},
		{"version descend ties keep key order", SortByVersion, SortDescend, 0, "a,b,c,d,e/1,e/2", false},
		{"version none means ascend", SortByVersion, SortNone, 0, "c,d,e/1,e/2,a,b", false},
		{"create ascend", SortByCreateRevision, SortAscend, 0, "a,b,c,d,e/1,e/2", false},
		{"create descend", SortByCreateRevision, SortDescend, 0, "e/1,e/2,d,c,b,a", false},
		{"mod ascend", SortByModRevision, SortAscend, 0, "c,a,d,b,e/1,e/2", false},
		{"mod descend", SortByModRevision, SortDescend, 0, "e/1,e/2,b,d,a,c", false},
		{"value ascend", SortByValue, SortAscend, 0, "a,d,b,c,e/1,e/2", false},
		{"value descend", SortByValue, SortDescend, 0, "e/2,e/1,b,c,a,d", false},
		{"sorted then limited", SortByModRevision, SortDescend, 3, "e/1,e/2,b", true},
		{"key descend limited", SortByKey, SortDescend, 2, "e/2,e/1", true},
		{"sorted limit not reached", SortByValue, SortAscend, 6, "a,d,b,c,e/1,e/2", false},
		// etcd quirk: with SortNone the limit+1 first keys are fetched
		// before the implied ascending sort (a,b,c → c,a,b → cut to 2).
		{"none with target sorts the fetched page", SortByVersion, SortNone, 2, "c,a", true},
		{"unknown target is key", SortTarget(9), SortDescend, 0, "e/2,e/1,d,c,b,a", false},
		{"unknown order is none", SortByKey, SortOrder(9), 0, "a,b,c,d,e/1,e/2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := v.Range(all, all, RangeOptions{SortTarget: tt.target, SortOrder: tt.order, Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(r); got != tt.wantKeys || r.More != tt.wantMore || r.Count != 6 {
				t.Errorf("got %q more %v count %d, want %q more %v count 6", got, r.More, r.Count, tt.wantKeys, tt.wantMore)
			}
		})
	}
}

func TestRangeFilters(t *testing.T) {
	v := rangeFixture(t).View()
	all := []byte{0}
	tests := []struct {
		name     string
		o        RangeOptions
		wantKeys string
		wantMore bool
	}{
		{"min mod", RangeOptions{MinModRev: 6}, "b,d,e/1,e/2", false},
		{"max mod", RangeOptions{MaxModRev: 5}, "a,c", false},
		{"min create", RangeOptions{MinCreateRev: 4}, "c,d,e/1,e/2", false},
		{"max create", RangeOptions{MaxCreateRev: 3}, "a,b", false},
		{"mod window", RangeOptions{MinModRev: 5, MaxModRev: 7}, "a,b,d", false},
		{"create and mod", RangeOptions{MinCreateRev: 3, MaxModRev: 6}, "c,d", false},
		{"filter then limit", RangeOptions{MinModRev: 5, Limit: 2}, "a,b", true},
		{"filter exact limit", RangeOptions{MinModRev: 7, Limit: 3}, "b,e/1,e/2", false},
		{"filter and sort", RangeOptions{MaxCreateRev: 4, SortTarget: SortByModRevision, SortOrder: SortDescend}, "b,a,c", false},
		{"filter everything", RangeOptions{MinModRev: 100}, "", false},
		{"past rev", RangeOptions{Rev: 5, MinModRev: 4}, "a,c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := v.Range(all, all, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			wantCount := int64(6)
			if tt.o.Rev == 5 {
				wantCount = 3
			}
			if got := keysOf(r); got != tt.wantKeys || r.More != tt.wantMore || r.Count != wantCount {
				t.Errorf("got %q more %v count %d, want %q more %v count %d",
					got, r.More, r.Count, tt.wantKeys, tt.wantMore, wantCount)
			}
		})
	}
}

func TestRangeKeysOnlyCountOnly(t *testing.T) {
	s := rangeFixture(t)
	v := s.View()
	all := []byte{0}
	t.Run("keys only", func(t *testing.T) {
		r, err := v.Range(all, all, RangeOptions{KeysOnly: true, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmtKVs(r.KVs), "[a=@2/5/v2 b=@3/7/v2]"; got != want || !r.More || r.Count != 6 {
			t.Errorf("got %s more %v count %d, want %s more true count 6", got, r.More, r.Count, want)
		}
		// the store's own versions keep their values
		if got, want := rangeStr(v, "a", "", 0), "rev=8 count=1 more=false kvs=[a=1@2/5/v2]"; got != want {
			t.Errorf("after KeysOnly: %s, want %s", got, want)
		}
	})
	t.Run("keys only sorted by value", func(t *testing.T) {
		r, err := v.Range(all, all, RangeOptions{KeysOnly: true, SortTarget: SortByValue, SortOrder: SortDescend})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := keysOf(r), "e/2,e/1,b,c,a,d"; got != want {
			t.Errorf("got %q, want %q (sort must use values)", got, want)
		}
	})
	tests := []struct {
		name      string
		key, end  []byte
		o         RangeOptions
		wantCount int64
	}{
		{"count all", all, all, RangeOptions{CountOnly: true}, 6},
		{"count ignores limit", all, all, RangeOptions{CountOnly: true, Limit: 2}, 6},
		{"count ignores filters", all, all, RangeOptions{CountOnly: true, MinModRev: 8}, 6},
		{"count prefix", []byte("e/"), PrefixEnd([]byte("e/")), RangeOptions{CountOnly: true}, 2},
		{"count single", []byte("c"), nil, RangeOptions{CountOnly: true}, 1},
		{"count past", all, all, RangeOptions{CountOnly: true, Rev: 3}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := v.Range(tt.key, tt.end, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Count != tt.wantCount || r.KVs != nil || r.More {
				t.Errorf("got count %d kvs %v more %v, want count %d, no kvs", r.Count, r.KVs, r.More, tt.wantCount)
			}
		})
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		in, want []byte
	}{
		{[]byte("a"), []byte("b")},
		{[]byte("ab"), []byte("ac")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("a\xff\xff"), []byte("b")},
		{[]byte("\x00"), []byte("\x01")},
		{[]byte("\xfe\xff"), []byte("\xff")},
		{[]byte("\xff\xff"), []byte{0}},
		{[]byte{}, []byte{0}},
		{nil, []byte{0}},
	}
	for _, tt := range tests {
		t.Run(string(tt.in), func(t *testing.T) {
			in := append([]byte(nil), tt.in...)
			if got := PrefixEnd(in); !bytes.Equal(got, tt.want) {
				t.Errorf("PrefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !bytes.Equal(in, tt.in) {
				t.Errorf("PrefixEnd modified its argument: %q", in)
			}
		})
	}
}
