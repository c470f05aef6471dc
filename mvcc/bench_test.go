package mvcc

import (
	"fmt"
	"testing"
)

const benchKeys = 100_000

func benchKey(i int) []byte { return fmt.Appendf(nil, "key%07d", i) }

// benchStore returns a store with n keys key0000000.. (16-byte values),
// written 1,000 per transaction, and the keys.
func benchStore(b *testing.B, n int) (*Store, [][]byte) {
	b.Helper()
	s := New()
	keys := make([][]byte, n)
	val := []byte("0123456789abcdef")
	for i := 0; i < n; i += 1000 {
		tx := s.Write()
		for j := i; j < min(i+1000, n); j++ {
			keys[j] = benchKey(j)
			tx.Put(keys[j], val, 0)
		}
		tx.End()
	}
	return s, keys
}

// benchPut measures one-put transactions on existing keys of a 100k-key
// store, optionally taking a View before each (the copy-on-write cost).
// History is compacted outside the timer every 100k puts.
func benchPut(b *testing.B, withView bool) {
	s, keys := benchStore(b, benchKeys)
	val := []byte("fedcba9876543210")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if withView {
			s.View()
		}
		tx := s.Write()
		tx.Put(keys[(i*7919)%len(keys)], val, 0)
		tx.End()
		if i%benchKeys == benchKeys-1 {
			b.StopTimer()
			if err := s.Compact(s.Rev()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}

func BenchmarkPut(b *testing.B)          { benchPut(b, false) }
func BenchmarkPutAfterView(b *testing.B) { benchPut(b, true) }

func BenchmarkRange(b *testing.B) {
	s, keys := benchStore(b, benchKeys)
	// rewrite every key once so that past revisions read history
	past := s.Rev()
	for i := 0; i < len(keys); i += 1000 {
		tx := s.Write()
		for j := i; j < i+1000; j++ {
			tx.Put(keys[j], []byte("second version.."), 0)
		}
		tx.End()
	}
	v := s.View()
	prefixes := make([][2][]byte, len(keys)/100)
	for i := range prefixes {
		p := fmt.Appendf(nil, "key%05d", i) // 100 keys each
		prefixes[i] = [2][]byte{p, PrefixEnd(p)}
	}
	cases := []struct {
		name string
		rev  int64
		fn   func(i int, o RangeOptions) (*RangeResult, error)
		want int
	}{
		{"single", 0, func(i int, o RangeOptions) (*RangeResult, error) {
			return v.Range(keys[(i*7919)%len(keys)], nil, o)
		}, 1},
		{"single-past", past, func(i int, o RangeOptions) (*RangeResult, error) {
			return v.Range(keys[(i*7919)%len(keys)], nil, o)
		}, 1},
		{"prefix100", 0, func(i int, o RangeOptions) (*RangeResult, error) {
			p := prefixes[(i*31)%len(prefixes)]
			return v.Range(p[0], p[1], o)
		}, 100},
		{"prefix100-past", past, func(i int, o RangeOptions) (*RangeResult, error) {
			p := prefixes[(i*31)%len(prefixes)]
			return v.Range(p[0], p[1], o)
		}, 100},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r, err := c.fn(i, RangeOptions{Rev: c.rev})
				if err != nil || len(r.KVs) != c.want {
					b.Fatalf("got %v kvs, err %v", r, err)
				}
			}
		})
	}
}

// BenchmarkEventsCatchUp replays the last 1,000 revisions (2 events each)
// of a store with 5,000 revisions, unfiltered and filtered to a prefix.
func BenchmarkEventsCatchUp(b *testing.B) {
	s := New()
	for i := range 5000 {
		tx := s.Write()
		tx.Put(benchKey(i%500), []byte("value"), 0)
		tx.Put(benchKey(500+i%500), []byte("value"), 0)
		tx.End()
	}
	v := s.View()
	from := v.Rev() - 999
	cases := []struct {
		name     string
		key, end []byte
		want     int
	}{
		{"all", []byte{0}, []byte{0}, 2000},
		{"prefix", []byte("key000000"), PrefixEnd([]byte("key000000")), 20},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				n := 0
				err := v.Events(from, c.key, c.end, func(rev int64, evs []*Event) bool {
					n += len(evs)
					return true
				})
				if err != nil || n != c.want {
					b.Fatalf("got %d events, err %v; want %d", n, err, c.want)
				}
			}
		})
	}
}

// BenchmarkCompact measures one compaction of a 100k- and a 1M-key store
// after 10k single-put revisions of scattered keys (what the automatic
// compactor sees under write load: retention 10k revisions).
func BenchmarkCompact(b *testing.B) {
	for _, n := range []int{benchKeys, 10 * benchKeys} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) { benchCompact(b, n) })
	}
}

func benchCompact(b *testing.B, n int) {
	s, keys := benchStore(b, n)
	if err := s.Compact(s.Rev()); err != nil { // the loading history
		b.Fatal(err)
	}
	val := []byte("fedcba9876543210")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := 0; j < 10_000; j++ {
			tx := s.Write()
			tx.Put(keys[(j*7919+i*13)%len(keys)], val, 0)
			tx.End()
		}
		b.StartTimer()
		if err := s.Compact(s.Rev() - 1); err != nil {
			b.Fatal(err)
		}
	}
}
