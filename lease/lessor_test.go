package lease

import (
	"reflect"
	"testing"
	"time"
)

// step is one action of a scripted test: the calls, then a clock advance
// (0: just let the goroutine settle), then the checks.
type step struct {
	upsert  []State
	remove  []int64
	advance time.Duration
	// want is the batches handed to OnExpire during the step (nil: none).
	want [][]Expired
	// remaining checks Remaining after the step; a negative value means
	// "unknown lease" (ok false).
	remaining map[int64]time.Duration
}

// runSteps promotes a harness Lessor with initial and plays the steps. A
// zero cfg.RetryInterval becomes an hour, so that only the scripts about
// re-reports see any.
func runSteps(t *testing.T, cfg Config, initial []State, steps []step) {
	t.Helper()
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = time.Hour
	}
	h := newHarness(t, cfg)
	h.l.Promote(initial)
	h.settle()
	for i, s := range steps {
		for _, st := range s.upsert {
			h.l.Upsert(st)
		}
		for _, id := range s.remove {
			h.l.Remove(id)
		}
		h.advance(s.advance)
		if got := h.take(); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("step %d: batches = %v, want %v", i, got, s.want)
		}
		for id, want := range s.remaining {
			got, ok := h.l.Remaining(id)
			if !ok {
				got = -1
			}
			if got != want {
				t.Fatalf("step %d: Remaining(%d) = %v (ok %v), want %v", i, id, got, ok, want)
			}
		}
	}
}

// ex builds an expected batch of leases whose RenewIndex is 10*ID.
func ex(ids ...int64) []Expired {
	out := make([]Expired, len(ids))
	for i, id := range ids {
		out[i] = Expired{ID: id, RenewIndex: uint64(10 * id)}
	}
	return out
}

// st builds a State whose RenewIndex is 10*ID.
func st(id int64, remaining time.Duration) State {
	return State{ID: id, Remaining: remaining, RenewIndex: uint64(10 * id)}
}

func TestLessorScripts(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name    string
		cfg     Config
		initial []State
		steps   []step
	}{
		{
			name:    "expiry in deadline order, ties by ID",
			initial: []State{st(1, 30*s), st(2, 10*s), st(3, 20*s), st(4, 10*s)},
			steps: []step{
				{advance: 9 * s},
				{advance: s, want: [][]Expired{ex(2, 4)}},
				{advance: 10 * s, want: [][]Expired{ex(3)}},
				{advance: 5 * s},
				{advance: 5 * s, want: [][]Expired{ex(1)}},
			},
		},
		{
			name:    "one advance past several deadlines gives one ordered batch",
			initial: []State{st(1, 3*s), st(2, 1*s), st(3, 2*s)},
			steps:   []step{{advance: time.Minute, want: [][]Expired{ex(2, 3, 1)}}},
		},
		{
			name:    "promote arms from State.Remaining, zero and negative expire at once",
			initial: []State{st(1, 0), st(2, -s), st(3, 5*s)},
			steps: []step{
				{want: [][]Expired{ex(1, 2)}, remaining: map[int64]time.Duration{1: 0, 3: 5 * s, 9: -1}},
				{advance: 5 * s, want: [][]Expired{ex(3)}},
			},
		},
		{
			name:    "upsert pushes the deadline later: a renewed lease does not expire",
			initial: []State{st(1, 10*s), st(2, 15*s)},
			steps: []step{
				{advance: 8 * s},
				{upsert: []State{{ID: 1, Remaining: 10 * s, RenewIndex: 99}}, remaining: map[int64]time.Duration{1: 10 * s}},
				{advance: 7 * s, want: [][]Expired{ex(2)}},
				{remove: []int64{2}, advance: 3 * s, want: [][]Expired{{{ID: 1, RenewIndex: 99}}}},
			},
		},
		{
			name:    "upsert of an earlier deadline wakes the goroutine",
			initial: []State{st(1, time.Hour)},
			steps: []step{
				{upsert: []State{st(2, 2*s)}},
				{advance: 2 * s, want: [][]Expired{ex(2)}},
				{upsert: []State{st(3, 0)}, want: [][]Expired{ex(3)}},
			},
		},
		{
			name:    "upsert on an empty primary",
			initial: nil,
			steps: []step{
				{upsert: []State{st(7, s)}},
				{advance: s, want: [][]Expired{ex(7)}},
			},
		},
		{
			name:    "remove cancels",
			initial: []State{st(1, 5*s), st(2, 5*s), st(3, 6*s)},
			steps: []step{
				{remove: []int64{2, 3, 42}, remaining: map[int64]time.Duration{2: -1, 1: 5 * s}},
				{advance: 10 * s, want: [][]Expired{ex(1)}},
			},
		},
		{
			name:    "remove of the first lease, later ones still expire",
			initial: []State{st(1, 1*s), st(2, 2*s)},
			steps: []step{
				{remove: []int64{1}, advance: s},
				{advance: s, want: [][]Expired{ex(2)}},
			},
		},
		{
			name:    "remaining counts down and stays 0 once expiring",
			initial: []State{st(1, 10*s)},
			steps: []step{
				{advance: 3 * s, remaining: map[int64]time.Duration{1: 7 * s}},
				{advance: 6500 * time.Millisecond, remaining: map[int64]time.Duration{1: 500 * time.Millisecond}},
				{advance: 500 * time.Millisecond, want: [][]Expired{ex(1)}, remaining: map[int64]time.Duration{1: 0}},
				{advance: s, remaining: map[int64]time.Duration{1: 0}},
			},
		},
		{
			name:    "rate limit: 25 simultaneous expiries at 10 per second take 3 seconds",
			cfg:     Config{MaxExpirePerSec: 10, RetryInterval: time.Minute},
			initial: states(25, func(int64) time.Duration { return 5 * s }),
			steps: []step{
				{advance: 5 * s, want: [][]Expired{ex(seq(1, 10)...)},
					remaining: map[int64]time.Duration{11: 0, 25: 0}},
				{advance: 999 * time.Millisecond},
				{advance: time.Millisecond, want: [][]Expired{ex(seq(11, 20)...)}},
				{advance: s, want: [][]Expired{ex(seq(21, 25)...)}},
				{advance: s},
			},
		},
		{
			name:    "rate limit window counts from the first expiry",
			cfg:     Config{MaxExpirePerSec: 2},
			initial: []State{st(1, s), st(2, 1500*time.Millisecond), st(3, 1600*time.Millisecond), st(4, 2100*time.Millisecond)},
			steps: []step{
				{advance: s, want: [][]Expired{ex(1)}},
				{advance: 500 * time.Millisecond, want: [][]Expired{ex(2)}},
				{advance: 100 * time.Millisecond},                           // 3 is due, window full until 2 s
				{advance: 400 * time.Millisecond, want: [][]Expired{ex(3)}}, // new window at 2 s
				{advance: 100 * time.Millisecond, want: [][]Expired{ex(4)}},
			},
		},
		{
			name:    "re-report after RetryInterval while still tracked",
			cfg:     Config{RetryInterval: 3 * s},
			initial: []State{st(1, s), st(2, 2*s)},
			steps: []step{
				{advance: s, want: [][]Expired{ex(1)}},
				{advance: s, want: [][]Expired{ex(2)}},
				{advance: 1999 * time.Millisecond},
				{advance: time.Millisecond, want: [][]Expired{ex(1)}},
				{remove: []int64{2}, advance: s},
				{advance: 2 * s, want: [][]Expired{ex(1)}},
				{remove: []int64{1}, advance: time.Minute},
			},
		},
		{
			name:    "renewal of an expiring lease cancels its re-report",
			cfg:     Config{RetryInterval: 3 * s},
			initial: []State{st(1, s)},
			steps: []step{
				{advance: s, want: [][]Expired{ex(1)}},
				{upsert: []State{{ID: 1, Remaining: 10 * s, RenewIndex: 77}}, remaining: map[int64]time.Duration{1: 10 * s}},
				{advance: 9 * s},
				{advance: s, want: [][]Expired{{{ID: 1, RenewIndex: 77}}}},
			},
		},
		{
			name:    "re-reports count against the rate limit",
			cfg:     Config{MaxExpirePerSec: 1, RetryInterval: s},
			initial: []State{st(1, s), st(2, s)},
			steps: []step{
				{advance: s, want: [][]Expired{ex(1)}},
				{advance: s, want: [][]Expired{ex(2)}}, // 1 is due again at 2 s too; 2 was due first
				{advance: s, want: [][]Expired{ex(1)}},
				{advance: s, want: [][]Expired{ex(2)}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, tt.cfg, tt.initial, tt.steps)
		})
	}
}

// states returns leases 1..n with the given remaining TTLs and RenewIndex
// 10*ID.
func states(n int, remaining func(id int64) time.Duration) []State {
	out := make([]State, n)
	for i := range out {
		id := int64(i + 1)
		out[i] = st(id, remaining(id))
	}
	return out
}

// seq returns from, from+1, ..., to.
func seq(from, to int64) []int64 {
	var out []int64
	for id := from; id <= to; id++ {
		out = append(out, id)
	}
	return out
}
