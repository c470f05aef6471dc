package lease

import (
	"container/heap"
	"slices"
	"time"
)

// Checkpoints returns, on the primary, the leases whose actual remaining TTL
// (see Remaining) is below their recorded remaining TTL by more than
// minDrift: at most max of them, smallest remaining first (ties by ID). The
// root proposes them as a checkpoint entry, so that a future leader re-arms
// each lease from a recent value instead of its full TTL (see the package
// documentation for the resulting bound on late expiry).
//
// recorded returns a lease's remaining TTL as recorded in the replicated
// state; leases for which it returns false are skipped. It is called
// without the Lessor's mutex held, so it may take the caller's locks (the
// store's lease table lock, which ranks before the Lessor's).
//
// A lease reported expired counts as having 0 remaining: checkpointing it
// makes a future leader expire it at once should its expiry not be applied
// before a leader change.
//
// It returns nil when not primary, when max <= 0 or recorded is nil. It
// costs O(n) under the Lessor's mutex (one copy of the deadlines) plus n
// recorded calls and O(n log max) without it.
func (l *Lessor) Checkpoints(recorded func(id int64) (time.Duration, bool), minDrift time.Duration, max int) []Checkpoint {
	if max <= 0 || recorded == nil {
		return nil
	}
	actual := l.actualRemaining()
	if len(actual) == 0 {
		return nil
	}
	sel := topK{max: max}
	for _, c := range actual {
		rec, ok := recorded(c.ID)
		if !ok || rec-c.Remaining <= minDrift {
			continue
		}
		sel.offer(c)
	}
	out := []Checkpoint(sel.h)
	slices.SortFunc(out, compareCheckpoints)
	return out
}

// actualRemaining returns the remaining TTL of every tracked lease, in no
// particular order; nil when not primary.
func (l *Lessor) actualRemaining() []Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run == nil {
		return nil
	}
	now := l.nowLocked()
	out := make([]Checkpoint, 0, l.sched.len())
	l.sched.each(func(e *entry) {
		out = append(out, Checkpoint{ID: e.id, Remaining: e.remaining(now), RenewIndex: e.renewIndex})
	})
	return out
}

// compareCheckpoints orders checkpoints by remaining TTL, then ID.
func compareCheckpoints(a, b Checkpoint) int {
	switch {
	case a.Remaining < b.Remaining:
		return -1
	case a.Remaining > b.Remaining:
		return 1
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}

// topK keeps the max smallest checkpoints offered (by compareCheckpoints):
// the first max are appended, then kept as a max-heap whose top is replaced
// by any smaller offer (O(log max), no allocation).
type topK struct {
	max int
	h   maxHeap
}

// offer adds c if fewer than max are kept or if c is smaller than the
// largest kept one (which it then replaces).
func (t *topK) offer(c Checkpoint) {
	if len(t.h) < t.max {
		t.h = append(t.h, c)
		if len(t.h) == t.max {
			heap.Init(&t.h)
		}
		return
	}
	if compareCheckpoints(c, t.h[0]) < 0 {
		t.h[0] = c
		heap.Fix(&t.h, 0)
	}
}

// maxHeap is a heap of checkpoints, largest (by compareCheckpoints) first.
// It implements heap.Interface.
type maxHeap []Checkpoint

// Len implements heap.Interface.
func (h maxHeap) Len() int { return len(h) }

// Less implements heap.Interface: the larger checkpoint comes first.
func (h maxHeap) Less(i, j int) bool { return compareCheckpoints(h[i], h[j]) > 0 }

// Swap implements heap.Interface.
func (h maxHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push implements heap.Interface; x must be a Checkpoint.
func (h *maxHeap) Push(x any) { *h = append(*h, x.(Checkpoint)) }

// Pop implements heap.Interface: it removes and returns the last element.
func (h *maxHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
