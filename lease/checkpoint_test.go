package lease

import (
	"reflect"
	"testing"
	"time"
)

// cp builds an expected checkpoint of a lease whose RenewIndex is 10*ID.
func cp(id int64, remaining time.Duration) Checkpoint {
	return Checkpoint{ID: id, Remaining: remaining, RenewIndex: uint64(10 * id)}
}

func TestCheckpoints(t *testing.T) {
	const s = time.Second
	// Five leases armed with 10..50 s, then the clock moves 4 s: actual
	// remaining 6, 16, 26, 36, 46 s.
	initial := []State{st(1, 10*s), st(2, 20*s), st(3, 30*s), st(4, 40*s), st(5, 50*s)}
	full := map[int64]time.Duration{1: 10 * s, 2: 20 * s, 3: 30 * s, 4: 40 * s, 5: 50 * s}
	tests := []struct {
		name     string
		recorded map[int64]time.Duration
		minDrift time.Duration
		max      int
		want     []Checkpoint
	}{
		{
			name:     "all drifted, smallest remaining first",
			recorded: full,
			minDrift: 3 * s,
			max:      10,
			want:     []Checkpoint{cp(1, 6*s), cp(2, 16*s), cp(3, 26*s), cp(4, 36*s), cp(5, 46*s)},
		},
		{
			name:     "max keeps the smallest remaining",
			recorded: full,
			minDrift: 0,
			max:      2,
			want:     []Checkpoint{cp(1, 6*s), cp(2, 16*s)},
		},
		{
			name:     "drift must exceed minDrift",
			recorded: map[int64]time.Duration{1: 10 * s, 2: 17 * s, 3: 26*s + 2*s + time.Millisecond, 4: 36 * s, 5: 50 * s},
			minDrift: 2 * s,
			max:      10,
			want:     []Checkpoint{cp(1, 6*s), cp(3, 26*s), cp(5, 46*s)},
		},
		{
			name:     "drift equal to minDrift is not enough",
			recorded: map[int64]time.Duration{2: 20 * s},
			minDrift: 4 * s,
			max:      10,
			want:     nil,
		},
		{
			name:     "leases unknown to the recorded state are skipped",
			recorded: map[int64]time.Duration{4: 40 * s, 5: 50 * s},
			minDrift: 0,
			max:      10,
			want:     []Checkpoint{cp(4, 36*s), cp(5, 46*s)},
		},
		{
			name:     "recorded below actual (a fresh renewal) is skipped",
			recorded: map[int64]time.Duration{1: 5 * s, 2: 20 * s},
			minDrift: 0,
			max:      10,
			want:     []Checkpoint{cp(2, 16*s)},
		},
		{
			name:     "max <= 0 selects nothing",
			recorded: full,
			max:      0,
			want:     nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.l.Promote(initial)
			h.advance(4 * s)
			got := h.l.Checkpoints(func(id int64) (time.Duration, bool) {
				d, ok := tt.recorded[id]
				return d, ok
			}, tt.minDrift, tt.max)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Checkpoints = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckpointsEdgeCases(t *testing.T) {
	always := func(int64) (time.Duration, bool) { return time.Hour, true }
	tests := []struct {
		name string
		run  func(h *harness) []Checkpoint
		want []Checkpoint
	}{
		{
			name: "not primary",
			run:  func(h *harness) []Checkpoint { return h.l.Checkpoints(always, 0, 10) },
		},
		{
			name: "nil callback",
			run: func(h *harness) []Checkpoint {
				h.l.Promote([]State{st(1, time.Second)})
				return h.l.Checkpoints(nil, 0, 10)
			},
		},
		{
			name: "an expiring lease checkpoints 0 remaining, first",
			run: func(h *harness) []Checkpoint {
				h.l.Promote([]State{st(1, 2*time.Second), st(2, time.Second)})
				h.advance(time.Second)
				return h.l.Checkpoints(always, 0, 10)
			},
			want: []Checkpoint{cp(2, 0), cp(1, time.Second)},
		},
		{
			name: "ties in remaining are ordered by ID",
			run: func(h *harness) []Checkpoint {
				h.l.Promote([]State{st(9, time.Minute), st(3, time.Minute), st(5, time.Minute), st(4, time.Second)})
				return h.l.Checkpoints(always, 0, 3)
			},
			want: []Checkpoint{cp(4, time.Second), cp(3, time.Minute), cp(5, time.Minute)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			got := tt.run(h)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Checkpoints = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCheckpointsTopK compares the bounded selection with a full sort on
// many leases.
func TestCheckpointsTopK(t *testing.T) {
	const n = 5000
	h := newHarness(t, Config{})
	// Remaining TTLs in a scrambled order, with duplicates.
	h.l.Promote(states(n, func(id int64) time.Duration { return time.Duration((id*7919)%1000+1) * time.Second }))
	h.settle()
	recorded := func(id int64) (time.Duration, bool) { return time.Hour, id%3 != 0 }
	all := h.l.Checkpoints(recorded, 0, n)
	for _, max := range []int{1, 10, 333, n} {
		got := h.l.Checkpoints(recorded, 0, max)
		if want := all[:min(max, len(all))]; !reflect.DeepEqual(got, want) {
			t.Fatalf("max %d: got %d checkpoints, not the first of the full selection", max, len(got))
		}
	}
	for i := 1; i < len(all); i++ {
		if compareCheckpoints(all[i-1], all[i]) >= 0 {
			t.Fatalf("not sorted at %d: %v then %v", i, all[i-1], all[i])
		}
	}
	if got, want := len(all), n-n/3; got != want {
		t.Fatalf("selected %d, want %d", got, want)
	}
}
