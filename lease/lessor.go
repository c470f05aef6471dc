package lease

import (
	"log/slog"
	"sync"
	"time"
)

// Lessor tracks lease deadlines while this node is the raft leader (the
// "primary") and reports expired leases to Config.OnExpire. On a follower it
// is idle: it tracks nothing, runs no goroutine, and Upsert, Remove,
// Remaining and Checkpoints are no-ops. See the package documentation.
//
// Promote and Demote are meant to be called by the one goroutine that
// follows leadership changes; every method is safe for concurrent use.
type Lessor struct {
	// Immutable after New.
	clock     Clock
	onExpire  func([]Expired)
	maxPerSec int
	retry     time.Duration
	log       *slog.Logger

	// afterRound, if set, is called by the expiry goroutine after every
	// round that ends waiting (not after a round that delivered a batch),
	// without mu held. Tests set it before Promote to learn when the
	// goroutine went idle; nil in production.
	afterRound func()

	// mu guards every field below, and the fields of the current runner
	// that say so. Lock order: callers' locks (the store's lease table
	// lock) before mu; mu before the Clock's internal lock (Clock.Now and
	// Clock.After are called with mu held). mu is never held while
	// OnExpire or a Checkpoints callback runs, nor while waiting for the
	// goroutine.
	mu sync.Mutex
	// closed is set by Close; Promote is then a no-op.
	closed bool
	// run is the expiry goroutine of the current term, nil when not
	// primary.
	run *runner
	// lastDone is closed when the most recently started goroutine has
	// exited (nil if none was ever started). Demote waits on it.
	lastDone chan struct{}
	// epoch is the Clock time that due offsets count from, set by Promote.
	epoch time.Time
	// sched holds the tracked leases; nil when not primary.
	sched *schedule
}

// New returns an idle Lessor: it tracks nothing and starts no goroutine
// until Promote.
func New(cfg Config) *Lessor {
	cfg = cfg.withDefaults()
	return &Lessor{
		clock:     cfg.Clock,
		onExpire:  cfg.OnExpire,
		maxPerSec: cfg.MaxExpirePerSec,
		retry:     cfg.RetryInterval,
		log:       cfg.Logger,
	}
}

// Promote is called when this node becomes leader. It arms every given
// lease with deadline = now + State.Remaining and starts the expiry
// goroutine. Calling it again while primary replaces the tracked set with
// the given one (the goroutine keeps running). It is a no-op after Close.
//
// It costs O(n) and never blocks on the goroutine, so it may be called
// while holding the lock that also guards Upsert and Remove calls (as the
// store does, so that no grant slips between its copy of the leases and the
// arming).
func (l *Lessor) Promote(leases []State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.run == nil {
		l.epoch = l.clock.Now()
		l.sched = newSchedule(leases, 0)
		l.run = newRunner()
		l.lastDone = l.run.done
		go l.loop(l.run)
	} else {
		l.sched = newSchedule(leases, l.nowLocked())
		l.wakeLocked()
	}
	l.log.Info("lease: lessor promoted", "leases", l.sched.len())
}

// Demote is called when this node loses leadership. It forgets every
// deadline, stops the expiry goroutine and waits for it to exit. If the
// goroutine is inside OnExpire, Demote waits for that call to return: the
// caller must make OnExpire return promptly first (for example by
// cancelling the context OnExpire proposes with BEFORE calling Demote), and
// must not call Demote from OnExpire or while holding a lock OnExpire
// needs. Demote on a Lessor that is not primary returns once any goroutine
// of an earlier term has exited.
func (l *Lessor) Demote() {
	l.mu.Lock()
	r, done := l.run, l.lastDone
	if r != nil {
		l.run, l.sched = nil, nil
		close(r.stop)
		l.log.Info("lease: lessor demoted")
	}
	l.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Close stops the Lessor for good: it demotes it (waiting for the
// goroutine, see Demote) and makes later Promote calls no-ops. It is
// idempotent.
func (l *Lessor) Close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.Demote()
}

// IsPrimary reports whether the Lessor is tracking deadlines (between
// Promote and Demote).
func (l *Lessor) IsPrimary() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.run != nil
}

// Upsert is called when a grant, renewal or checkpoint of a lease is
// applied. On the primary it (re)arms the lease with deadline = now +
// s.Remaining, clearing any expiring state (a renewal that raced with an
// expiry report wins, and the FSM ignores the stale expiry thanks to its
// RenewIndex). It is a no-op when not primary. O(log n).
func (l *Lessor) Upsert(s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run == nil {
		return
	}
	e := l.sched.arm(s.ID, s.RenewIndex, deadline(l.nowLocked(), s.Remaining))
	if e.pos == 0 {
		l.armedFirstLocked(e.due)
	}
}

// Remove forgets a lease (revoked, or its expiry applied). It is a no-op
// when not primary or when the lease is unknown. O(log n).
func (l *Lessor) Remove(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run == nil {
		return
	}
	l.sched.remove(id)
}

// Remaining returns, on the primary, the time until the lease's deadline:
// never negative, and 0 once the lease has been reported expired. It
// returns false when the lease is unknown or the Lessor is not primary.
func (l *Lessor) Remaining(id int64) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run == nil {
		return 0, false
	}
	e, ok := l.sched.get(id)
	if !ok {
		return 0, false
	}
	return e.remaining(l.nowLocked()), true
}

// nowLocked returns the current time as an offset from epoch. l.mu must be
// held and the Lessor primary.
func (l *Lessor) nowLocked() time.Duration {
	return l.clock.Now().Sub(l.epoch)
}
