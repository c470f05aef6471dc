package store

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore counts the reads that reach the wrapped store.
type countingStore struct {
	*raft.InmemStore
	reads int
}

func (s *countingStore) GetLog(idx uint64, l *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(idx, l)
}

func entries(from, to uint64, size int) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: make([]byte, size)})
	}
	return out
}

func TestLogCacheBounds(t *testing.T) {
	tests := []struct {
		name     string
		entries  int
		maxBytes int
		ops      func(c *logCache) error
		cached   []uint64 // must be served from memory
		missed   []uint64 // must be read from the store
	}{
		{"keeps the newest entries", 4, 1 << 20,
			func(c *logCache) error { return c.StoreLogs(entries(1, 6, 10)) },
			[]uint64{3, 4, 5, 6}, []uint64{1, 2}},
		{"byte budget drops the oldest", 100, 35,
			func(c *logCache) error { return c.StoreLogs(entries(1, 6, 10)) },
			[]uint64{4, 5, 6}, []uint64{1, 2, 3}},
		{"an entry over the budget is not kept", 100, 35,
			func(c *logCache) error {
				if err := c.StoreLogs(entries(1, 2, 10)); err != nil {
					return err
				}
				return c.StoreLogs(entries(3, 3, 100))
			},
			nil, []uint64{1, 2, 3}},
		{"separate calls stay contiguous", 8, 1 << 20,
			func(c *logCache) error {
				for i := uint64(1); i <= 5; i++ {
					if err := c.StoreLog(entries(i, i, 1)[0]); err != nil {
						return err
					}
				}
				return nil
			},
			[]uint64{1, 2, 3, 4, 5}, nil},
		{"delete range empties it", 8, 1 << 20,
			func(c *logCache) error {
				if err := c.StoreLogs(entries(1, 5, 1)); err != nil {
					return err
				}
				if err := c.DeleteRange(4, 5); err != nil {
					return err
				}
				return c.StoreLogs(entries(4, 4, 1))
			},
			[]uint64{4}, []uint64{1, 2, 3}},
		{"a gap starts over", 8, 1 << 20,
			func(c *logCache) error {
				if err := c.StoreLogs(entries(1, 3, 1)); err != nil {
					return err
				}
				return c.StoreLogs(entries(10, 11, 1))
			},
			[]uint64{10, 11}, []uint64{1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &countingStore{InmemStore: raft.NewInmemStore()}
			c, err := newLogCache(st, tc.entries, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.ops(c); err != nil {
				t.Fatal(err)
			}
			check := func(idx uint64, fromMemory bool) {
				before := st.reads
				var l raft.Log
				if err := c.GetLog(idx, &l); err != nil {
					t.Fatalf("GetLog(%d): %v", idx, err)
				}
				if l.Index != idx {
					t.Errorf("GetLog(%d) returned index %d", idx, l.Index)
				}
				if got := st.reads == before; got != fromMemory {
					t.Errorf("GetLog(%d) served from memory: got %v, want %v", idx, got, fromMemory)
				}
			}
			for _, idx := range tc.cached {
				check(idx, true)
			}
			for _, idx := range tc.missed {
				check(idx, false)
			}
			c.mu.RLock()
			defer c.mu.RUnlock()
			if c.bytes > tc.maxBytes || c.next-c.first > uint64(tc.entries) {
				t.Errorf("cache holds %d entries, %d bytes; bounds %d, %d", c.next-c.first, c.bytes, tc.entries, tc.maxBytes)
			}
		})
	}
}

func TestLogCacheRejectsBadBounds(t *testing.T) {
	for _, b := range [][2]int{{0, 1}, {1, 0}, {-1, 5}} {
		t.Run(fmt.Sprint(b), func(t *testing.T) {
			if _, err := newLogCache(raft.NewInmemStore(), b[0], b[1]); err == nil {
				t.Errorf("newLogCache(%d, %d): got no error", b[0], b[1])
			}
		})
	}
}
