package lease

import (
	"context"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// primaryView is what a Lessor answers about leases 1 and 2.
type primaryView struct {
	primary     bool
	rem1, rem2  time.Duration
	ok1, ok2    bool
	checkpoints int
}

// view collects primaryView from l.
func view(l *Lessor) primaryView {
	var v primaryView
	v.primary = l.IsPrimary()
	v.rem1, v.ok1 = l.Remaining(1)
	v.rem2, v.ok2 = l.Remaining(2)
	v.checkpoints = len(l.Checkpoints(func(int64) (time.Duration, bool) { return time.Hour, true }, 0, 10))
	return v
}

func TestLifecycle(t *testing.T) {
	idle := primaryView{}
	tests := []struct {
		name string
		run  func(h *harness)
		want primaryView
		// running says whether an expiry goroutine must be running.
		running bool
	}{
		{
			name: "new lessor is idle",
			run:  func(h *harness) {},
			want: idle,
		},
		{
			name: "not-primary calls are no-ops",
			run: func(h *harness) {
				h.l.Upsert(st(1, time.Second))
				h.l.Remove(2)
				h.l.Demote()
				h.clk.Advance(time.Hour)
			},
			want: idle,
		},
		{
			name: "promote arms",
			run: func(h *harness) {
				h.l.Promote([]State{st(1, 10*time.Second)})
				h.l.Upsert(st(2, 20*time.Second))
				h.advance(time.Second)
			},
			want:    primaryView{primary: true, rem1: 9 * time.Second, ok1: true, rem2: 19 * time.Second, ok2: true, checkpoints: 2},
			running: true,
		},
		{
			name: "demote forgets everything and stops the goroutine",
			run: func(h *harness) {
				h.l.Promote([]State{st(1, 10*time.Second), st(2, 20*time.Second)})
				h.settle()
				h.l.Demote()
				h.l.Upsert(st(2, time.Second))
				h.clk.Advance(time.Hour)
			},
			want: idle,
		},
		{
			name: "promote after demote starts from the given leases only",
			run: func(h *harness) {
				h.l.Promote([]State{st(1, 10*time.Second)})
				h.settle()
				h.l.Demote()
				h.l.Promote([]State{st(2, 5*time.Second)})
				h.advance(time.Second)
			},
			want:    primaryView{primary: true, rem2: 4 * time.Second, ok2: true, checkpoints: 1},
			running: true,
		},
		{
			name: "promote while primary replaces the tracked set",
			run: func(h *harness) {
				h.l.Promote([]State{st(1, 10*time.Second)})
				h.advance(time.Second)
				h.l.Promote([]State{st(2, 5*time.Second), st(2, 7*time.Second)})
				h.advance(time.Second)
			},
			want:    primaryView{primary: true, rem2: 6 * time.Second, ok2: true, checkpoints: 1},
			running: true,
		},
		{
			name: "close is idempotent and promote after close is a no-op",
			run: func(h *harness) {
				h.l.Promote([]State{st(1, 10*time.Second)})
				h.settle()
				h.l.Close()
				h.l.Close()
				h.l.Promote([]State{st(1, 10*time.Second)})
				h.l.Demote()
			},
			want: idle,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			tt.run(h)
			if got := view(h.l); got != tt.want {
				t.Fatalf("view = %+v, want %+v", got, tt.want)
			}
			if got := h.take(); got != nil {
				t.Fatalf("unexpected expiries %v", got)
			}
			h.l.mu.Lock()
			done := h.l.lastDone
			h.l.mu.Unlock()
			running := false
			if done != nil {
				select {
				case <-done:
				default:
					running = true
				}
			}
			if running != tt.running {
				t.Fatalf("goroutine running = %v, want %v", running, tt.running)
			}
		})
	}
}

// TestDemoteWaitsForOnExpire checks the documented shutdown sequence:
// OnExpire blocks until its context is cancelled; Demote does not return
// before OnExpire has, and returns once the context is cancelled.
func TestDemoteWaitsForOnExpire(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered := make(chan struct{})
	var once sync.Once
	var returned atomic.Bool
	h := newHarness(t, Config{OnExpire: func([]Expired) {
		once.Do(func() { close(entered) })
		<-ctx.Done() // a proposal that only ends with its context
		returned.Store(true)
	}})
	h.l.Promote([]State{st(1, time.Second), st(2, time.Hour)})
	h.advance(0)
	h.clk.Advance(time.Second)
	waitOrFail(t, entered, "OnExpire was not called")

	demoted := make(chan struct{})
	go func() {
		h.l.Demote()
		close(demoted)
	}()
	for h.l.IsPrimary() { // Demote gives up leadership before waiting
		runtime.Gosched()
	}
	if _, ok := h.l.Remaining(2); ok {
		t.Fatalf("Remaining answers after Demote")
	}
	select {
	case <-demoted:
		t.Fatalf("Demote returned while OnExpire was blocked")
	default:
	}
	cancel()
	waitOrFail(t, demoted, "Demote did not return after the context was cancelled")
	if got, want := returned.Load(), true; got != want {
		t.Fatalf("OnExpire returned before Demote = %v, want %v", got, want)
	}
}

// TestOnExpireMayCallLessor checks that OnExpire can call the non-blocking
// methods (the store removes leases and reads Remaining from it).
func TestOnExpireMayCallLessor(t *testing.T) {
	var l *Lessor
	var mu sync.Mutex
	var got []int64
	h := newHarness(t, Config{OnExpire: func(batch []Expired) {
		for _, e := range batch {
			if _, ok := l.Remaining(e.ID); ok && l.IsPrimary() {
				l.Remove(e.ID)
				mu.Lock()
				got = append(got, e.ID)
				mu.Unlock()
			}
		}
		l.Checkpoints(func(int64) (time.Duration, bool) { return 0, false }, 0, 1)
	}})
	l = h.l
	l.Promote(states(3, func(id int64) time.Duration { return time.Duration(id) * time.Second }))
	h.advance(time.Hour)
	mu.Lock()
	defer mu.Unlock()
	if want := []int64{1, 2, 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
}

// TestRealClockExpiry runs a Lessor on real time: a lease of 0 remaining
// expires without the test sleeping.
func TestRealClockExpiry(t *testing.T) {
	got := make(chan []Expired, 1)
	l := New(Config{OnExpire: func(b []Expired) {
		select {
		case got <- b:
		default:
		}
	}})
	defer l.Close()
	l.Promote(nil)
	l.Upsert(State{ID: 5, RenewIndex: 9})
	select {
	case b := <-got:
		if want := []Expired{{ID: 5, RenewIndex: 9}}; !reflect.DeepEqual(b, want) {
			t.Fatalf("batch = %v, want %v", b, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no expiry on the real clock")
	}
}

// TestConcurrentUse hammers every method from several goroutines while the
// clock moves, for the race detector.
func TestConcurrentUse(t *testing.T) {
	h := newHarness(t, Config{MaxExpirePerSec: 50, RetryInterval: 100 * time.Millisecond})
	h.l.Promote(states(100, func(id int64) time.Duration { return time.Duration(id) * time.Millisecond }))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				id := int64(g*1000 + i%50)
				switch i % 5 {
				case 0, 1:
					h.l.Upsert(st(id, time.Duration(i)*time.Millisecond))
				case 2:
					h.l.Remove(id)
				case 3:
					h.l.Remaining(id)
				case 4:
					h.l.Checkpoints(func(int64) (time.Duration, bool) { return time.Second, true }, 0, 5)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			h.clk.Advance(7 * time.Millisecond)
			runtime.Gosched()
		}
	}()
	wg.Wait()
	h.l.Demote()
	if h.expiredCount() == 0 {
		t.Fatalf("nothing expired")
	}
}

// waitOrFail waits for ch to be closed; the real-time guard only turns a
// hang into a failure.
func waitOrFail(t *testing.T, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
}
