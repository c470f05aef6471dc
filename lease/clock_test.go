package lease

import (
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store/internal/fakeclock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is the shared manual clock; see internal/fakeclock.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock {
	return fakeclock.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
}

// quiescent reports whether the expiry goroutine (if any) is waiting, with
// no wake-up pending and a timer that has not fired: nothing will happen
// until the clock moves or a method is called. Test helper.
func (l *Lessor) quiescent() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.run
	if r == nil {
		return true
	}
	return r.idle && len(r.wake) == 0 && (r.timer == nil || r.timerAt > l.nowLocked())
}

// harness drives a Lessor on a fake clock and records what it expires.
type harness struct {
	t    testing.TB
	clk  *fakeClock
	l    *Lessor
	idle chan struct{} // signalled after every round that ends waiting

	mu  sync.Mutex
	got [][]Expired // batches handed to OnExpire, not yet taken
	n   int         // leases handed to OnExpire so far
}

// newHarness returns a harness whose Lessor has cfg with the fake clock
// and, unless cfg.OnExpire is set, a recording OnExpire. The Lessor is
// closed when the test ends.
func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, clk: newFakeClock(), idle: make(chan struct{}, 1)}
	cfg.Clock = h.clk
	if cfg.OnExpire == nil {
		cfg.OnExpire = h.record
	}
	h.l = New(cfg)
	h.l.afterRound = func() {
		select {
		case h.idle <- struct{}{}:
		default:
		}
	}
	t.Cleanup(h.l.Close)
	return h
}

// record is the default OnExpire: it keeps the batch.
func (h *harness) record(batch []Expired) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, batch)
	h.n += len(batch)
}

// take returns the batches recorded since the last take.
func (h *harness) take() [][]Expired {
	h.mu.Lock()
	defer h.mu.Unlock()
	got := h.got
	h.got = nil
	return got
}

// expiredCount returns how many leases were handed to OnExpire so far.
func (h *harness) expiredCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// settle waits (on events, not on time) until the Lessor is quiescent. The
// real-time guard only turns a hang into a failure.
func (h *harness) settle() {
	h.t.Helper()
	guard := time.NewTimer(10 * time.Second)
	defer guard.Stop()
	for !h.l.quiescent() {
		select {
		case <-h.idle:
		case <-guard.C:
			h.t.Fatalf("lessor did not settle")
		}
	}
}

// advance settles, moves the fake clock by d and settles again, so that
// every expiry due by then has been handed to OnExpire.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.settle()
	h.clk.Advance(d)
	h.settle()
}

func TestFakeClock(t *testing.T) {
	c := newFakeClock()
	start := c.Now()
	a := c.After(2 * time.Second)
	b := c.After(time.Second)
	z := c.After(0)
	fired := func(ch <-chan time.Time) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if !fired(z) {
		t.Fatalf("After(0) did not fire at once")
	}
	c.Advance(999 * time.Millisecond)
	if fired(a) || fired(b) {
		t.Fatalf("fired early")
	}
	c.Advance(time.Millisecond)
	if got, want := fired(b), true; got != want {
		t.Fatalf("1s waiter fired = %v, want %v", got, want)
	}
	if fired(a) {
		t.Fatalf("2s waiter fired at 1s")
	}
	c.Advance(time.Second)
	if !fired(a) {
		t.Fatalf("2s waiter did not fire")
	}
	if got, want := c.Now().Sub(start), 2*time.Second; got != want {
		t.Fatalf("Now advanced by %v, want %v", got, want)
	}
	if got, want := c.AfterCalls(), 3; got != want {
		t.Fatalf("afterCalls = %d, want %d", got, want)
	}
}

func TestRealClock(t *testing.T) {
	c := RealClock()
	a := c.Now()
	<-c.After(0) // fires without waiting
	if b := c.Now(); b.Before(a) {
		t.Fatalf("RealClock went backwards: %v then %v", a, b)
	}
}
