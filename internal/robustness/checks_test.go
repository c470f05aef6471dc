package robustness

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	store "github.com/embedkv/store"
)

// watchFixture is a history with a two-event revision (a txn-like change
// at revision 3) and the responses a correct watcher from revision 1 gets.
func watchFixture() (*History, []WatchResponse) {
	put := func(rev int64, k, v string, create, ver int64) Event {
		return Event{Rev: rev, KV: KV{Key: k, Value: v, Create: create, Mod: rev, Version: ver}}
	}
	evs := []Event{
		put(2, "p/a", "1", 2, 1),
		put(3, "p/a", "2", 2, 2),
		put(3, "p/b", "1", 3, 1),
		{Rev: 4, Delete: true, KV: KV{Key: "p/a", Mod: 4}},
		put(5, "p/b", "2", 3, 2),
	}
	h := NewHistory("p/", 5, evs)
	resps := []WatchResponse{
		{Events: []Event{evs[0]}},
		{Events: []Event{evs[1], evs[2], evs[3]}},
		{Events: []Event{evs[4]}},
	}
	return h, resps
}

func TestCheckWatch(t *testing.T) {
	tests := []struct {
		name   string
		doctor func([]WatchResponse) []WatchResponse
		want   string // "" = no violation; else a substring of one
	}{
		{"correct", func(r []WatchResponse) []WatchResponse { return r }, ""},
		{"resumed after a stop", func(r []WatchResponse) []WatchResponse {
			stop := WatchResponse{Canceled: true, Err: "store: store is closed"}
			return []WatchResponse{r[0], stop, r[1], r[2]}
		}, ""},
		{"gap", func(r []WatchResponse) []WatchResponse { return []WatchResponse{r[0], r[2]} }, "gap: revision 3"},
		{"duplicate revision", func(r []WatchResponse) []WatchResponse {
			return []WatchResponse{r[0], r[1], r[1], r[2]}
		}, "out of order or duplicated"},
		{"revision split across responses", func(r []WatchResponse) []WatchResponse {
			a := WatchResponse{Events: r[1].Events[:1]}
			b := WatchResponse{Events: r[1].Events[1:]}
			return []WatchResponse{r[0], a, b, r[2]}
		}, "split across responses"},
		{"out of order", func(r []WatchResponse) []WatchResponse {
			return []WatchResponse{r[0], r[2], r[1]}
		}, "out of order"},
		{"wrong value", func(r []WatchResponse) []WatchResponse {
			e := r[2].Events[0]
			e.KV.Value = "stale"
			return []WatchResponse{r[0], r[1], {Events: []Event{e}}}
		}, "revision 5 delivered"},
		{"event missing from a revision", func(r []WatchResponse) []WatchResponse {
			return []WatchResponse{r[0], {Events: []Event{r[1].Events[0], r[1].Events[2]}}, r[2]}
		}, "revision 3 delivered"},
		{"cancelled as compacted", func(r []WatchResponse) []WatchResponse {
			return append(r, WatchResponse{Canceled: true, Err: "store: required revision has been compacted"})
		}, "cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, resps := watchFixture()
			n, bad := CheckWatch("w", tt.doctor(resps), h, 1, h.Rev)
			if n == 0 {
				t.Fatal("no events checked")
			}
			expectViolation(t, bad, tt.want)
		})
	}
}

func TestHistoryValidate(t *testing.T) {
	h, _ := watchFixture()
	if bad := h.Validate(true); len(bad) > 0 {
		t.Fatalf("valid history rejected: %v", bad)
	}
	evs := []Event{
		{Rev: 2, KV: KV{Key: "p/a", Value: "1", Create: 2, Mod: 2, Version: 1}},
		{Rev: 4, KV: KV{Key: "p/a", Value: "2", Create: 2, Mod: 4, Version: 3}},
	}
	bad := NewHistory("p/", 4, evs).Validate(true)
	want := []string{"does not follow", "revision 3 changed nothing"}
	for _, w := range want {
		found := false
		for _, b := range bad {
			found = found || strings.Contains(b, w)
		}
		if !found {
			t.Errorf("Validate = %q, want a violation containing %q", bad, w)
		}
	}
}

func TestCheckLeases(t *testing.T) {
	const sec = int64(time.Second)
	put := func(rev int64, k string) Event {
		return Event{Rev: rev, KV: KV{Key: k, Value: "x", Create: rev, Mod: rev, Version: 1}}
	}
	del := func(rev int64, k string) Event { return Event{Rev: rev, Delete: true, KV: KV{Key: k, Mod: rev}} }
	ea, eb := LeasePrefix+"e1/a", LeasePrefix+"e1/b"
	ka := LeasePrefix + "k2/a"
	// Revision r is observed at r seconds.
	upper := func(r int64) (int64, bool) { return r * sec, true }
	tests := []struct {
		name   string
		recs   []*LeaseRecord
		events []Event
		want   string // "" = no violation
	}{
		{"expired on time",
			[]*LeaseRecord{{ID: 1, TTL: 2, GrantCall: 1 * sec, Keys: []string{ea, eb}}},
			[]Event{put(2, ea), put(3, eb), del(5, ea), del(5, eb)}, ""},
		{"kept alive",
			[]*LeaseRecord{{ID: 2, TTL: 10, KeepAlive: true, Keys: []string{ka}, Renewals: []int64{3 * sec}}},
			[]Event{put(2, ka)}, ""},
		{"expired early",
			[]*LeaseRecord{{ID: 1, TTL: 2, GrantCall: 1 * sec, Keys: []string{ea, eb}}},
			[]Event{put(2, ea), put(2, eb), del(2, ea), del(2, eb)}, "early"},
		{"never expired",
			[]*LeaseRecord{{ID: 1, TTL: 2, GrantCall: 1 * sec, Keys: []string{ea}}},
			[]Event{put(2, ea)}, "never deleted"},
		{"deleted twice",
			[]*LeaseRecord{{ID: 1, TTL: 2, Keys: []string{ea}}},
			[]Event{put(2, ea), del(4, ea), del(5, ea)}, "deleted 2 times"},
		{"keys of one lease deleted apart",
			[]*LeaseRecord{{ID: 1, TTL: 2, Keys: []string{ea, eb}}},
			[]Event{put(2, ea), put(2, eb), del(4, ea), del(5, eb)}, "different revisions"},
		{"kept-alive lease expired while renewed",
			[]*LeaseRecord{{ID: 2, TTL: 10, KeepAlive: true, Keys: []string{ka}, Renewals: []int64{3 * sec, 6 * sec}}},
			[]Event{put(2, ka), del(9, ka)}, "early"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := int64(0)
			for _, e := range tt.events {
				last = max(last, e.Rev)
			}
			_, bad, _ := CheckLeases(tt.recs, NewHistory(Root, last, tt.events), upper)
			if tt.want == "" {
				if len(bad) > 0 {
					t.Fatalf("violations %q, want none", bad)
				}
				return
			}
			for _, b := range bad {
				if strings.Contains(b, tt.want) {
					return
				}
			}
			t.Fatalf("violations %q, want one containing %q", bad, tt.want)
		})
	}
}

// fakeBadEnv answers every bad request with a fixed result.
type fakeBadEnv struct {
	err  error
	gone bool
}

func (e fakeBadEnv) N() int          { return 1 }
func (e fakeBadEnv) ID(i int) string { return "n1" }
func (e fakeBadEnv) compact() bool   { return true }
func (e fakeBadEnv) issue(*badCase, int, string, string) (error, bool, bool) {
	return e.err, e.gone, true
}

// TestBadInputVerdicts checks how a bad request's result is judged: its
// sentinel passes, an availability error passes only where the case allows
// one, anything else (success included) is a violation.
func TestBadInputVerdicts(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("detail: %w", err) }
	tests := []struct {
		name      string
		cas       string
		err       error
		gone      bool
		violation bool
		unsure    bool // the marker may legitimately appear
	}{
		{"sentinel", "empty key put", wrap(store.ErrEmptyKey), false, false, false},
		{"accepted", "empty key put", nil, false, true, false},
		{"wrong sentinel", "duplicate key in txn", store.ErrTooManyOps, false, true, false},
		{"no leader where a quorum is needed", "unknown lease", wrap(store.ErrNoLeader), false, false, false},
		{"no leader where none is needed", "too many txn ops", wrap(store.ErrNoLeader), false, true, false},
		{"stopped on a node killed under the call", "too many txn ops", store.ErrStopped, true, false, false},
		{"stopped on a live node", "too many txn ops", store.ErrStopped, false, true, false},
		{"cancelled write", "put with cancelled context", context.Canceled, false, false, false},
		{"cancelled write of unknown outcome", "put with cancelled context",
			fmt.Errorf("%w: %w", store.ErrUnknownOutcome, context.Canceled), false, false, true},
		{"cancelled write that timed out", "put with cancelled context", context.DeadlineExceeded, false, true, false},
		{"after close", "put after close", store.ErrStopped, false, false, false},
		{"remote sentinel", "future rev",
			newRemoteError("x", sentinelNames(wrap(store.ErrFutureRev))), false, false, false},
		{"connection to a child lost", "empty key get", fmt.Errorf("%w: EOF", errConnLost), true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bc := badCaseByName(tt.cas)
			if tt.cas == "future rev" {
				bc = badCaseByName("read at future revision")
			}
			if bc == nil {
				t.Fatalf("no case %q", tt.cas)
			}
			b := &BadInput{env: fakeBadEnv{tt.err, tt.gone}, rep: BadReport{ByCase: map[string]int{}, Unsure: map[string]bool{}}}
			b.record(bc, 0, BadPrefix+"1", BadMarker+"1-", tt.err, tt.gone)
			if got := len(b.rep.Violations) > 0; got != tt.violation {
				t.Fatalf("violations %q, want violation=%v", b.rep.Violations, tt.violation)
			}
			if got := b.rep.Unsure[BadMarker+"1-"]; got != tt.unsure {
				t.Fatalf("unsure = %v, want %v", got, tt.unsure)
			}
		})
	}
}

// TestBadReportCheckAbsent plants a marker of an invalid request in each
// place it must never appear.
func TestBadReportCheckAbsent(t *testing.T) {
	marker := KV{Key: BadPrefix + "7", Value: BadMarker + "7-", Create: 3, Mod: 3, Version: 1}
	valueOnly := KV{Key: KVPrefix + "g0/k0", Value: BadMarker + "8-", Create: 3, Mod: 3, Version: 1}
	clean := KV{Key: KVPrefix + "g0/k0", Value: "c1-1", Create: 2, Mod: 2, Version: 1}
	hist := func(kv KV) *History { return NewHistory(Root, 3, []Event{{Rev: 2, KV: clean}, {Rev: 3, KV: kv}}) }
	cleanHist := NewHistory(Root, 2, []Event{{Rev: 2, KV: clean}})
	tests := []struct {
		name   string
		hists  []*History
		logs   []*WatchLog
		ops    []Op
		scans  map[string][]KV
		unsure string
		want   string // "" = none
	}{
		{name: "clean", hists: []*History{cleanHist}, scans: map[string][]KV{"n1": {clean}}},
		{name: "marker key in the history", hists: []*History{hist(marker)}, want: "history has"},
		{name: "marker value on a workload key", hists: []*History{hist(valueOnly)}, want: "history has"},
		{name: "unsure marker", hists: []*History{hist(valueOnly)}, unsure: valueOnly.Value},
		{name: "marker in a watch event", logs: []*WatchLog{{Responses: []WatchResponse{{Events: []Event{{Rev: 3, KV: marker}}}}}},
			want: "watcher on n1"},
		{name: "marker read by an operation", ops: []Op{{Kind: OpRange, Outcome: OK, KVs: []KV{clean, valueOnly}}}, want: "read"},
		{name: "marker in a node's keyspace", scans: map[string][]KV{"n2": {clean, {Key: "", Value: "x"}}}, want: "n2 holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &BadReport{Unsure: map[string]bool{}}
			if tt.unsure != "" {
				r.Unsure[tt.unsure] = true
			}
			bad := r.CheckAbsent(tt.hists, tt.logs, tt.ops, tt.scans)
			if tt.want == "" {
				if len(bad) > 0 {
					t.Fatalf("violations %q, want none", bad)
				}
				return
			}
			for _, b := range bad {
				if strings.Contains(b, tt.want) {
					return
				}
			}
			t.Fatalf("violations %q, want one containing %q", bad, tt.want)
		})
	}
}

// expectViolation checks a checker's findings: none when want is "", else
// at least one containing want.
func expectViolation(t *testing.T, bad []string, want string) {
	t.Helper()
	if want == "" {
		if len(bad) > 0 {
			t.Fatalf("violations %q, want none", bad)
		}
		return
	}
	for _, b := range bad {
		if strings.Contains(b, want) {
			return
		}
	}
	t.Fatalf("violations %q, want one containing %q", bad, want)
}
