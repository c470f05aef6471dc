package mvcc

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
)

func TestEventsCatchUp(t *testing.T) {
	s := New()
	put(t, s, "a", "1") // 2
	put(t, s, "b", "1") // 3
	tx := s.Write()     // 4
	tx.Put([]byte("a"), []byte("2"), 0)
	tx.Put([]byte("c"), []byte("1"), 0)
	tx.End()
	del(t, s, "a", "c") // 5: a, b
	put(t, s, "b", "2") // 6
	v := s.View()
	all := []byte{0}
	var (
		e2 = "2:[PUT a=1@2/2/v1 (prev <nil>)]"
		e3 = "3:[PUT b=1@3/3/v1 (prev <nil>)]"
		e4 = "4:[PUT a=2@2/4/v2 (prev a=1@2/2/v1); PUT c=1@4/4/v1 (prev <nil>)]"
		e5 = "5:[DELETE a=@0/5/v0 (prev a=2@2/4/v2); DELETE b=@0/5/v0 (prev b=1@3/3/v1)]"
		e6 = "6:[PUT b=2@6/6/v1 (prev <nil>)]"
	)
	tests := []struct {
		name     string
		from     int64
		key, end []byte
		want     []string
	}{
		{"all from start", 2, all, all, []string{e2, e3, e4, e5, e6}},
		{"from zero", 0, all, all, []string{e2, e3, e4, e5, e6}},
		{"from middle", 4, all, all, []string{e4, e5, e6}},
		{"from current", 6, all, all, []string{e6}},
		{"from future", 7, all, all, nil},
		{"single key", 2, []byte("a"), nil, []string{e2, "4:[PUT a=2@2/4/v2 (prev a=1@2/2/v1)]", "5:[DELETE a=@0/5/v0 (prev a=2@2/4/v2)]"}},
		{"interval", 3, []byte("b"), []byte("c"), []string{e3, "5:[DELETE b=@0/5/v0 (prev b=1@3/3/v1)]", e6}},
		{"prefix", 2, []byte("c"), PrefixEnd([]byte("c")), []string{"4:[PUT c=1@4/4/v1 (prev <nil>)]"}},
		{"from key", 2, []byte("b"), all, []string{e3, "4:[PUT c=1@4/4/v1 (prev <nil>)]", "5:[DELETE b=@0/5/v0 (prev b=1@3/3/v1)]", e6}},
		{"no match", 2, []byte("zz"), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := allEvents(t, v, tt.from, tt.key, tt.end)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("\n got %v\nwant %v", got, tt.want)
			}
		})
	}
	t.Run("early stop", func(t *testing.T) {
		var revs []int64
		err := v.Events(2, all, all, func(rev int64, evs []*Event) bool {
			revs = append(revs, rev)
			return len(revs) < 2
		})
		if err != nil || fmt.Sprint(revs) != "[2 3]" {
			t.Errorf("got revisions %v (err %v), want [2 3]", revs, err)
		}
	})
	t.Run("view does not see later events", func(t *testing.T) {
		put(t, s, "d", "1") // 7
		if got := allEvents(t, v, 6, all, all); fmt.Sprint(got) != fmt.Sprint([]string{e6}) {
			t.Errorf("old view from 6: %v", got)
		}
		if got := allEvents(t, s.View(), 6, all, all); len(got) != 2 {
			t.Errorf("new view from 6: %v, want 2 revisions", got)
		}
	})
}

// snapshotOf renders everything a reader can observe of v at its own
// revision and the one before.
func snapshotOf(t testing.TB, v *View) string {
	var sb strings.Builder
	all := []byte{0}
	for _, rev := range []int64{v.Rev(), v.Rev() - 1} {
		if rev < v.CompactRev() || rev < 1 {
			continue
		}
		sb.WriteString(fmtResult(v.Range(all, all, RangeOptions{Rev: rev})))
		sb.WriteByte('\n')
	}
	err := v.Events(max(v.Rev()-3, v.CompactRev()), all, all, func(rev int64, evs []*Event) bool {
		fmt.Fprintf(&sb, "%d:%s\n", rev, fmtEvents(evs))
		return true
	})
	if err != nil {
		t.Errorf("Events: %v", err)
	}
	return sb.String()
}

func TestViewImmutable(t *testing.T) {
	s := rangeFixture(t)
	v := s.View()
	want := snapshotOf(t, v)
	rng := rand.New(rand.NewSource(1))
	for i := range 300 {
		tx := s.Write()
		k := fmt.Appendf(nil, "%c", 'a'+rng.Intn(6))
		if rng.Intn(4) == 0 {
			tx.DeleteRange(k, nil)
		} else {
			tx.Put(k, fmt.Appendf(nil, "w%d", i), 0)
		}
		tx.End()
		if i%50 == 49 {
			if err := s.Compact(s.Rev() - 5); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := snapshotOf(t, v); got != want {
		t.Errorf("old view changed\n got %s\nwant %s", got, want)
	}
	if v.Rev() != 8 || v.CompactRev() != 0 {
		t.Errorf("old view Rev/CompactRev = %d/%d, want 8/0", v.Rev(), v.CompactRev())
	}
}

// TestViewConcurrentReaders checks, under -race, that views handed to other
// goroutines stay unchanged while the writer keeps writing and compacting.
func TestViewConcurrentReaders(t *testing.T) {
	type snap struct {
		v    *View
		want string
	}
	const (
		readers = 4
		txns    = 1500
	)
	ch := make(chan snap, 16)
	var wg sync.WaitGroup
	errs := make(chan string, readers)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(r)))
			var held []snap
			check := func(sn snap) bool {
				if got := snapshotOf(t, sn.v); got != sn.want {
					errs <- fmt.Sprintf("view at %d changed:\n got %s\nwant %s", sn.v.Rev(), got, sn.want)
					return false
				}
				return true
			}
			for sn := range ch {
				held = append(held, sn)
				// re-check a few older views while the writer goes on
				for range 2 {
					if !check(held[rng.Intn(len(held))]) {
						return
					}
				}
			}
			for _, sn := range held {
				if !check(sn) {
					return
				}
			}
		}()
	}
	s := New()
	rng := rand.New(rand.NewSource(42))
	for i := range txns {
		tx := s.Write()
		for range 1 + rng.Intn(3) {
			k := fmt.Appendf(nil, "k%02d", rng.Intn(40))
			switch rng.Intn(5) {
			case 0:
				tx.DeleteRange(k, PrefixEnd(k[:2]))
			default:
				tx.Put(k, fmt.Appendf(nil, "v%d", i), int64(rng.Intn(3)))
			}
		}
		tx.End()
		if i%97 == 0 && s.Rev() > 10 {
			if err := s.Compact(s.Rev() - 10); err != nil {
				t.Fatal(err)
			}
		}
		if i%5 == 0 {
			v := s.View()
			ch <- snap{v, snapshotOf(t, v)}
		}
	}
	close(ch)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
