// Package fakeclock is a manually driven clock for tests of time-dependent
// code (lease expiry, keepalives). It satisfies store.Clock and lease.Clock.
package fakeclock

import (
	"sync"
	"time"
)

// Clock only moves when Advance is called. After channels fire when an
// Advance reaches their time. It is safe for concurrent use.
type Clock struct {
	// mu guards every field. Lock order: leaf.
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	afters  int // After calls so far
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock standing at start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once an Advance reaches
// now+d (at once if d <= 0).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.afters++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock forward by d and fires every After channel whose
// time has come.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

// AfterCalls returns how many times After was called.
func (c *Clock) AfterCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.afters
}
