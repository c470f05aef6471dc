package lease

import (
	"container/heap"
	"time"
)

// This file holds the data structure of the primary: the tracked leases,
// indexed by ID (a map) and ordered by due time (a binary min-heap whose
// entries know their own position, so that re-arming or removing a lease is
// a heap.Fix or heap.Remove: O(log n), no lazy deletion, no garbage left in
// the heap). Nothing here locks: the Lessor's mutex guards a schedule.

// entry is one lease tracked by the primary.
type entry struct {
	// id identifies the lease.
	id int64
	// renewIndex is the last State.RenewIndex given for the lease.
	renewIndex uint64
	// due is when the expiry goroutine must next look at the lease, as an
	// offset from the Lessor's epoch. While the lease is live (reports ==
	// 0) it is the lease's deadline; once the lease has been reported
	// expired it is the time of its next re-report.
	due time.Duration
	// reports counts how many times the lease has been handed to OnExpire
	// since it was last armed; > 0 means "expiring": Remaining answers 0.
	reports uint32
	// pos is the entry's index in the heap, kept up to date by dueHeap.
	pos int
}

// expiring reports whether e has been handed to OnExpire since it was last
// armed.
func (e *entry) expiring() bool { return e.reports > 0 }

// remaining is the time from now until e's deadline: 0 once the deadline
// has passed or the lease has been reported expired.
func (e *entry) remaining(now time.Duration) time.Duration {
	if e.expiring() || e.due <= now {
		return 0
	}
	return e.due - now
}

// dueHeap is a min-heap of entries by due time, ties broken by ID so that
// leases due together are handled in a deterministic order. It implements
// heap.Interface; use it through the heap package only.
type dueHeap []*entry

// Len implements heap.Interface.
func (h dueHeap) Len() int { return len(h) }

// Less implements heap.Interface: earlier due first, then smaller ID.
func (h dueHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].id < h[j].id
}

// Swap implements heap.Interface and keeps both entries' pos up to date.
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos = i
	h[j].pos = j
}

// Push implements heap.Interface; x must be an *entry.
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.pos = len(*h)
	*h = append(*h, e)
}

// Pop implements heap.Interface: it removes and returns the last element.
func (h *dueHeap) Pop() any {
	old := *h
	n := len(old) - 1
	e := old[n]
	old[n] = nil // let the entry be collected
	e.pos = -1
	*h = old[:n]
	return e
}

// schedule is the set of leases tracked by the primary.
type schedule struct {
	// byID finds an entry by lease ID.
	byID map[int64]*entry
	// due orders the same entries by due time.
	due dueHeap
}

// newSchedule returns a schedule of the given leases, each due at now plus
// its remaining TTL (negative remaining counts as 0). A later State of an
// ID given twice wins. It costs O(n): the heap is built in one pass.
func newSchedule(states []State, now time.Duration) *schedule {
	s := &schedule{
		byID: make(map[int64]*entry, len(states)),
		due:  make(dueHeap, 0, len(states)),
	}
	for _, st := range states {
		due := deadline(now, st.Remaining)
		if e, ok := s.byID[st.ID]; ok {
			e.renewIndex, e.due = st.RenewIndex, due
			continue
		}
		e := &entry{id: st.ID, renewIndex: st.RenewIndex, due: due, pos: len(s.due)}
		s.byID[st.ID] = e
		s.due = append(s.due, e)
	}
	heap.Init(&s.due)
	return s
}

// deadline returns now + remaining, with a negative remaining counted as 0
// and the sum saturated instead of overflowing.
func deadline(now, remaining time.Duration) time.Duration {
	if remaining <= 0 {
		return now
	}
	if d := now + remaining; d >= now {
		return d
	}
	return time.Duration(1<<63 - 1)
}

// len returns the number of tracked leases.
func (s *schedule) len() int { return len(s.due) }

// get returns the entry of a lease.
func (s *schedule) get(id int64) (*entry, bool) {
	e, ok := s.byID[id]
	return e, ok
}

// arm tracks a lease as live with the given deadline, adding it or
// re-arming it (which clears its expiring state). It returns the entry.
func (s *schedule) arm(id int64, renewIndex uint64, due time.Duration) *entry {
	e, ok := s.byID[id]
	if !ok {
		e = &entry{id: id, renewIndex: renewIndex, due: due}
		s.byID[id] = e
		heap.Push(&s.due, e)
		return e
	}
	e.renewIndex, e.reports = renewIndex, 0
	s.setDue(e, due)
	return e
}

// setDue moves e to a new due time.
func (s *schedule) setDue(e *entry, due time.Duration) {
	if e.due == due {
		return
	}
	e.due = due
	heap.Fix(&s.due, e.pos)
}

// remove forgets a lease; it reports whether the lease was tracked.
func (s *schedule) remove(id int64) bool {
	e, ok := s.byID[id]
	if !ok {
		return false
	}
	delete(s.byID, id)
	heap.Remove(&s.due, e.pos)
	return true
}

// first returns the entry due first, if any.
func (s *schedule) first() (*entry, bool) {
	if len(s.due) == 0 {
		return nil, false
	}
	return s.due[0], true
}

// each calls f for every entry, in no particular order.
func (s *schedule) each(f func(e *entry)) {
	for _, e := range s.due {
		f(e)
	}
}
