package lease

import (
	"time"
)

// This file is the expiry goroutine of the primary. One runs per term (from
// Promote to Demote). It loops over rounds: under the Lessor's mutex it
// reads the clock, takes every lease that is due (at most the rate limit
// allows), marks them expiring and re-schedules them for a re-report after
// RetryInterval, and arranges a Clock.After for the next due time; then,
// without the mutex, it hands the batch to OnExpire or waits for the timer,
// a wake-up (an earlier deadline was armed) or the stop signal.

// runner is the state of one term's expiry goroutine.
type runner struct {
	// stop is closed by Demote to stop the goroutine.
	stop chan struct{}
	// done is closed when the goroutine has exited.
	done chan struct{}
	// wake (capacity 1) tells the goroutine that a deadline earlier than
	// its timer was armed. Sends never block.
	wake chan struct{}

	// The fields below are guarded by Lessor.mu.

	// timer is the pending Clock.After channel, nil if none; timerAt is
	// when it fires, as an offset from the Lessor's epoch.
	timer   <-chan time.Time
	timerAt time.Duration
	// idle is true from the end of a round that ended waiting until the
	// goroutine is woken: no wake-up is pending and timer (if any) is
	// the one the goroutine waits on. Tests use it to synchronise with a
	// fake clock.
	idle bool
	// windowStart and windowUsed implement the rate limit: windowUsed
	// leases were reported during the second starting at windowStart.
	windowStart time.Duration
	windowUsed  int
}

// newRunner returns the runner of a new term, whose first round starts a
// new rate window.
func newRunner() *runner {
	return &runner{
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		wake:        make(chan struct{}, 1),
		windowStart: -time.Second,
	}
}

// loop is the expiry goroutine of the term r.
func (l *Lessor) loop(r *runner) {
	defer close(r.done)
	for {
		batch, timer, ok := l.round(r)
		if !ok {
			return
		}
		if len(batch) > 0 {
			if l.onExpire != nil {
				l.onExpire(batch)
			}
			continue
		}
		if l.afterRound != nil {
			l.afterRound()
		}
		select {
		case <-r.stop:
			return
		case <-r.wake:
		case <-timer: // nil (blocks forever) when nothing is tracked
		}
	}
}

// round runs one round of the goroutine of term r: it returns the leases to
// hand to OnExpire now, or, if there are none, the channel to wait on
// (nil: nothing to wait for but a wake-up). ok is false once r has been
// demoted.
func (l *Lessor) round(r *runner) (batch []Expired, timer <-chan time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run != r {
		return nil, nil, false
	}
	r.idle = false
	now := l.nowLocked()
	batch, next, hasNext := l.collectLocked(r, now)
	if len(batch) > 0 {
		return batch, nil, true
	}
	switch {
	case !hasNext:
		r.timer = nil
	case r.timer == nil || next < r.timerAt || r.timerAt <= now:
		// No timer, a timer too late, or one that has fired already.
		// A timer earlier than next is kept: it fires early, and the
		// round it causes arms the right one.
		r.timer, r.timerAt = l.clock.After(next-now), next
	}
	r.idle = true
	return nil, r.timer, true
}

// collectLocked takes, in due order, the leases of r's schedule that are
// due at now, as many as the rate limit allows: it marks them expiring and
// schedules their re-report RetryInterval from now. It returns them and
// when the next round must run (hasNext false: nothing is tracked).
func (l *Lessor) collectLocked(r *runner, now time.Duration) (batch []Expired, next time.Duration, hasNext bool) {
	if now-r.windowStart >= time.Second {
		r.windowStart, r.windowUsed = now, 0
	}
	retries := 0
	defer func() {
		if len(batch) > 0 {
			l.log.Debug("lease: leases expired", "count", len(batch), "reReported", retries)
		}
	}()
	for {
		e, ok := l.sched.first()
		if !ok {
			return batch, 0, false
		}
		if e.due > now {
			return batch, e.due, true
		}
		if r.windowUsed >= l.maxPerSec {
			// Due, but over the limit: wait for the next window.
			return batch, r.windowStart + time.Second, true
		}
		r.windowUsed++
		if batch == nil {
			batch = make([]Expired, 0, min(l.maxPerSec-r.windowUsed+1, l.sched.len()))
		}
		batch = append(batch, Expired{ID: e.id, RenewIndex: e.renewIndex})
		if e.expiring() {
			retries++
			if retries <= maxRetryLogs {
				l.log.Warn("lease: expired lease still present, reporting it again",
					"lease", e.id, "reports", e.reports+1, "renewIndex", e.renewIndex)
			}
		}
		if e.reports < ^uint32(0) {
			e.reports++
		}
		l.sched.setDue(e, deadline(now, l.retry))
	}
}

// maxRetryLogs bounds the Warn lines one round logs for re-reported leases
// (the Debug line of the batch counts them all).
const maxRetryLogs = 10

// armedFirstLocked is called when a lease due at due became the first of
// the schedule: it wakes the goroutine if its timer would fire too late.
func (l *Lessor) armedFirstLocked(due time.Duration) {
	r := l.run
	if r.timer == nil || due < r.timerAt {
		l.wakeLocked()
	}
}

// wakeLocked makes the current goroutine run a round soon. l.mu must be held
// and the Lessor primary.
func (l *Lessor) wakeLocked() {
	r := l.run
	r.idle = false
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}
