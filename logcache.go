package store

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logCacheEntries and logCacheBytes bound the raft log cache: at most this
// many of the newest entries, holding at most this many bytes of data.
//
// raft's own LogCache bounds entries only. With proposal coalescing one
// entry can carry thousands of writes (up to maxBatchBytes), so 512 cached
// entries held up to 28 % of a node's heap while bulk-loading; replication
// needs only the last few entries in memory.
const (
	logCacheEntries = 512
	logCacheBytes   = 8 << 20
)

// logCache is a raft.LogStore that keeps the newest entries of the store it
// wraps in memory, so that the leader replicates them and the FSM applies
// them without reading bolt. The cached entries are always a contiguous
// range of indexes [first, next).
type logCache struct {
	store    raft.LogStore
	maxBytes int

	// mu guards the fields below. Lock order: leaf.
	mu          sync.RWMutex
	ring        []*raft.Log // entry i at ring[i % len(ring)]
	first, next uint64      // cached indexes: [first, next)
	bytes       int         // data and extensions bytes of the cached entries
}

var _ raft.LogStore = (*logCache)(nil)

// newLogCache wraps store with a cache of at most entries entries and
// maxBytes bytes.
func newLogCache(store raft.LogStore, entries, maxBytes int) (*logCache, error) {
	if entries <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("store: log cache of %d entries and %d bytes", entries, maxBytes)
	}
	return &logCache{store: store, maxBytes: maxBytes, ring: make([]*raft.Log, entries)}, nil
}

// logSize is what a cached entry counts against the byte budget.
func logSize(l *raft.Log) int { return len(l.Data) + len(l.Extensions) }

// IsMonotonic passes the wrapped store's answer through (raft asks).
func (c *logCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// GetLog returns entry idx from the cache, or else from the store.
func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	if idx >= c.first && idx < c.next {
		*log = *c.ring[idx%uint64(len(c.ring))]
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	return c.store.GetLog(idx, log)
}

// StoreLog stores one entry.
func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores logs in the wrapped store and, once that succeeded,
// caches them, dropping the oldest cached entries beyond the bounds.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return fmt.Errorf("unable to store logs within log store, err: %q", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		if l.Index != c.next {
			c.resetLocked(l.Index) // not contiguous: start over
		}
		if c.next-c.first == uint64(len(c.ring)) {
			c.evictLocked()
		}
		c.ring[l.Index%uint64(len(c.ring))] = l
		c.bytes += logSize(l)
		c.next++
		for c.bytes > c.maxBytes && c.first < c.next {
			c.evictLocked()
		}
	}
	return nil
}

// evictLocked drops the oldest cached entry.
func (c *logCache) evictLocked() {
	slot := &c.ring[c.first%uint64(len(c.ring))]
	c.bytes -= logSize(*slot)
	*slot = nil
	c.first++
}

// resetLocked empties the cache; the next entry cached must be index from.
func (c *logCache) resetLocked(from uint64) {
	clear(c.ring)
	c.first, c.next, c.bytes = from, from, 0
}

// FirstIndex is the store's.
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex is the store's.
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange empties the cache (raft deletes a prefix after snapshots and
// a conflicting suffix on followers) and deletes from the store.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.resetLocked(0)
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}
