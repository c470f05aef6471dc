package lease

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestManyLeases promotes 100,000 leases and expires them all on the fake
// clock, checking that every lease is reported once, in deadline order.
func TestManyLeases(t *testing.T) {
	const n = 100_000
	remaining := func(id int64) time.Duration {
		return time.Second + time.Duration((id*7919)%10_000)*time.Millisecond // 1..11 s, scrambled
	}
	tests := []struct {
		name    string
		rate    int
		step    time.Duration // clock step between settles
		horizon time.Duration // total clock advance
	}{
		{name: "no effective rate limit, one big step", rate: n, step: time.Minute, horizon: time.Minute},
		{name: "no effective rate limit, 1 s steps", rate: n, step: time.Second, horizon: 12 * time.Second},
		{name: "default rate limit, 1000 per second", rate: 0, step: time.Second, horizon: 110 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var last time.Duration
			seen := make(map[int64]bool, n)
			var errs []string
			onExpire := func(batch []Expired) {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range batch {
					d := remaining(e.ID)
					if seen[e.ID] {
						errs = append(errs, "duplicate")
					}
					if d < last {
						errs = append(errs, "out of deadline order")
					}
					seen[e.ID], last = true, d
				}
			}
			h := newHarness(t, Config{MaxExpirePerSec: tt.rate, RetryInterval: time.Hour, OnExpire: onExpire})
			start := time.Now()
			h.l.Promote(states(n, remaining))
			for elapsed := time.Duration(0); elapsed < tt.horizon; elapsed += tt.step {
				h.advance(tt.step)
			}
			h.settle()
			mu.Lock()
			defer mu.Unlock()
			if len(errs) > 0 {
				t.Fatalf("%d errors, first: %s", len(errs), errs[0])
			}
			if got, want := len(seen), n; got != want {
				t.Fatalf("expired %d leases, want %d", got, want)
			}
			t.Logf("%d leases promoted and expired in %v", n, time.Since(start))
		})
	}
}

// BenchmarkUpsert re-arms leases in a lessor that tracks 100,000 of them
// (a renewal on the leader).
func BenchmarkUpsert(b *testing.B) {
	const n = 100_000
	clk := newFakeClock()
	l := New(Config{Clock: clk})
	defer l.Close()
	l.Promote(states(n, func(id int64) time.Duration { return time.Duration(id) * time.Millisecond }))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := int64(i%n) + 1
		l.Upsert(State{ID: id, Remaining: time.Duration(n+i) * time.Millisecond, RenewIndex: uint64(i)})
	}
}

// BenchmarkUpsertNew grants new leases (insertion into the heap).
func BenchmarkUpsertNew(b *testing.B) {
	clk := newFakeClock()
	l := New(Config{Clock: clk})
	defer l.Close()
	l.Promote(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Upsert(State{ID: int64(i) + 1, Remaining: time.Duration(i%10_000+1) * time.Second})
	}
}

// BenchmarkExpire100k promotes 100,000 leases and expires them all (one
// iteration = one full promote/expire cycle); the callback removes each
// expired lease, as the store does once the expiry is applied.
func BenchmarkExpire100k(b *testing.B) {
	const n = 100_000
	leases := states(n, func(id int64) time.Duration {
		return time.Second + time.Duration((id*7919)%10_000)*time.Millisecond
	})
	b.ReportAllocs()
	for b.Loop() {
		var l *Lessor
		var expired atomic.Int64
		h := newHarness(b, Config{MaxExpirePerSec: n, OnExpire: func(batch []Expired) {
			for _, e := range batch {
				l.Remove(e.ID)
			}
			expired.Add(int64(len(batch)))
		}})
		l = h.l
		h.l.Promote(leases)
		h.advance(time.Minute)
		if got := expired.Load(); got != n {
			b.Fatalf("expired %d, want %d", got, n)
		}
		h.l.Close()
	}
}
