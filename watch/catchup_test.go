package watch

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/embedkv/store/mvcc"
)

func TestReplayThenLive(t *testing.T) {
	e := newEnv(t, Config[Batch]{BufferSize: 4, MaxEventsPerResponse: 10, CatchUpInterval: time.Millisecond})
	keys := []string{"k/0", "k/1", "k/2", "x"}
	const history, live = 1000, 2000
	for i := range history { // revisions 2..1001
		e.put(keys[i%len(keys)], strconv.Itoa(i))
	}
	opts := []Options{
		{Key: []byte("k/1"), StartRev: 2},
		{Key: []byte("k/"), End: mvcc.PrefixEnd([]byte("k/")), StartRev: 2, PrevKV: true},
		{Key: []byte{0}, End: []byte{0}, StartRev: 500},
		{Key: []byte("x"), StartRev: 1001, FilterDelete: true},
		{Key: []byte("k/2"), End: []byte{0}, StartRev: 1500}, // future at first
	}
	cols := make([]*collector, len(opts))
	for i, o := range opts {
		cols[i] = startCollector(e.watch(o), nil)
	}
	// Write while the watchers catch up: the switch from history to live
	// happens under concurrent publishing.
	writer := make(chan int64)
	go func() {
		var rev int64
		for i := range live {
			rev = e.put(keys[i%len(keys)], "live"+strconv.Itoa(i))
		}
		writer <- rev
	}()
	last := <-writer
	v := e.s.View()
	for i, o := range opts {
		t.Run(fmt.Sprintf("watcher %d", i), func(t *testing.T) {
			w := wantEvents(t, v, o)
			poll(t, "all events", func() bool { return cols[i].events() >= len(w) })
			got := cols[i].got()
			checkBatches(t, got)
			if g := events(got); !slices.Equal(g, w) {
				t.Fatalf("got %d events, want %d; first difference at %d", len(g), len(w), firstDiff(g, w))
			}
		})
	}
	e.settle(last)
	e.h.Close()
	for i, c := range cols {
		c.wait(t)
		if got := c.got(); !got[len(got)-1].Canceled {
			t.Errorf("watcher %d: last batch %s, want the ErrClosed cancel", i, fmtBatch(got[len(got)-1]))
		}
	}
}

// firstDiff returns the first index where a and b differ.
func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestCompactedStart(t *testing.T) {
	tests := []struct {
		name     string
		startRev int64
		wantRevs []int64 // nil: compacted cancel
	}{
		{"below compaction", 3, nil},
		{"far below", 1, nil},
		{"at compaction", 5, []int64{5, 6, 7, 8}},
		{"above compaction", 7, []int64{7, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config[Batch]{})
			for i := range 7 { // 2..8
				e.put("k", strconv.Itoa(i))
			}
			e.compact(5)
			ch := e.watch(Options{Key: []byte("k"), StartRev: tt.startRev})
			if tt.wantRevs == nil {
				got := expectClosed(t, ch)
				if len(got) != 1 || !isCompactedCancel(got[0], 5) {
					t.Fatalf("got %v, want one compacted cancel with CompactRev 5", got)
				}
				return
			}
			got := collect(t, ch, 8)
			var revs []int64
			for _, b := range got {
				for _, ev := range b.Events {
					revs = append(revs, ev.Kv.ModRevision)
				}
			}
			if !slices.Equal(revs, tt.wantRevs) {
				t.Errorf("revisions %v, want %v", revs, tt.wantRevs)
			}
		})
	}
}

func TestDeletesAroundCompaction(t *testing.T) {
	e := newEnv(t, Config[Batch]{})
	live := e.watch(Options{Key: []byte("foo"), PrevKV: true})
	e.put("foo", "a") // 2
	e.put("foo", "b") // 3
	e.put("bar", "x") // 4
	e.del("foo", "")  // 5
	e.put("foo", "c") // 6
	e.compact(5)
	at5 := e.watch(Options{Key: []byte("foo"), PrevKV: true, StartRev: 5})
	t.Run("from the compacted delete", func(t *testing.T) {
		w := want("DELETE foo=@0/5/v0 prev foo=b@2/3/v2", "PUT foo=c@6/6/v1 prev -")
		if got := events(collect(t, at5, 6)); !slices.Equal(got, w) {
			t.Errorf("events\n got %q\nwant %q", got, w)
		}
	})
	e.put("foo", "d") // 7
	e.compact(7)
	last := e.del("foo", "") // 8

	tests := []struct {
		name     string
		startRev int64
		upTo     int64 // revision of the last event
		want     []string
	}{
		{"from the last compaction", 7, last, want(
			"PUT foo=d@6/7/v2 prev foo=c@6/6/v1",
			"DELETE foo=@0/8/v0 prev foo=d@6/7/v2")},
		{"compacted", 4, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := e.watch(Options{Key: []byte("foo"), PrevKV: true, StartRev: tt.startRev})
			if tt.want == nil {
				got := expectClosed(t, ch)
				if len(got) != 1 || !isCompactedCancel(got[0], 7) {
					t.Fatalf("got %v, want one compacted cancel at 7", got)
				}
				return
			}
			if got := events(collect(t, ch, tt.upTo)); !slices.Equal(got, tt.want) {
				t.Errorf("events\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	t.Run("live", func(t *testing.T) {
		w := want(
			"PUT foo=a@2/2/v1 prev -",
			"PUT foo=b@2/3/v2 prev foo=a@2/2/v1",
			"DELETE foo=@0/5/v0 prev foo=b@2/3/v2",
			"PUT foo=c@6/6/v1 prev -",
			"PUT foo=d@6/7/v2 prev foo=c@6/6/v1",
			"DELETE foo=@0/8/v0 prev foo=d@6/7/v2",
		)
		if got := events(collect(t, live, last)); !slices.Equal(got, w) {
			t.Errorf("events\n got %q\nwant %q", got, w)
		}
	})
}

func TestStalledConsumer(t *testing.T) {
	tests := []struct {
		name        string
		compactPast bool
	}{
		{"catches up", false},
		{"compacted past it", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config[Batch]{BufferSize: 4})
			stalled := e.watch(Options{Key: []byte("k")})
			fast := startCollector(e.watch(Options{Key: []byte("k")}), nil)
			const n = 5000
			// The writer runs on its own goroutine so that a blocked
			// Publish fails the test instead of hanging it.
			writer := make(chan int64)
			go func() {
				var rev int64
				for i := range n {
					rev = e.put("k", strconv.Itoa(i))
				}
				writer <- rev
			}()
			var last int64
			select {
			case last = <-writer:
			case <-time.After(waitFor):
				t.Fatal("writer blocked")
			}
			poll(t, "fast watcher received everything", func() bool { return fast.events() >= n })
			if st := e.h.Stats(); st.Unsynced != 1 || st.Synced != 1 {
				t.Errorf("Stats = %+v, want the stalled watcher unsynced and the fast one synced", st)
			}
			checkRevs(t, "fast", events(fast.got()), 2, last)
			if tt.compactPast {
				e.compact(last - 10)
				got := expectClosed(t, stalled)
				if len(got) != 5 || !isCompactedCancel(got[4], last-10) {
					t.Fatalf("got %d batches ending with %s, want 4 buffered batches and a compacted cancel at %d",
						len(got), fmtBatch(got[len(got)-1]), last-10)
				}
				evs := events(got)
				checkRevs(t, "stalled", evs, 2, 1+int64(len(evs)))
				return
			}
			var got []Batch
			for n := 0; n < 5000; n += len(got[len(got)-1].Events) {
				b, _ := recv(t, stalled)
				got = append(got, b)
			}
			checkBatches(t, got)
			checkRevs(t, "stalled", events(got), 2, last)
			e.settle(last)
			expectEmpty(t, stalled)
		})
	}
}

// checkRevs checks that evs are the puts of revisions from..to, one each,
// in order (the writes of TestStalledConsumer).
func checkRevs(t *testing.T, who string, evs []string, from, to int64) {
	t.Helper()
	if int64(len(evs)) != to-from+1 {
		t.Fatalf("%s: %d events, want %d", who, len(evs), to-from+1)
	}
	for i, ev := range evs {
		rev := from + int64(i)
		w := fmt.Sprintf("PUT k=%d@2/%d/v%d prev -", rev-2, rev, rev-1)
		if ev != w {
			t.Fatalf("%s: event %d = %q, want %q", who, i, ev, w)
		}
	}
}

func TestHubBehindCompaction(t *testing.T) {
	e := newEnv(t, Config[Batch]{})
	e.put("k", "0") // 2
	e.settle(2)
	needs := e.watch(Options{Key: []byte("k")})                                // from 3
	other := e.watch(Options{Key: []byte("other")})                            // from 3, nothing there
	future := e.watch(Options{Key: []byte("k"), StartRev: 9})                  // from 9
	atCompact := e.watch(Options{Key: []byte{0}, End: []byte{0}, StartRev: 8}) // from 8
	poll(t, "registrations", func() bool { return e.h.Stats().Synced == 4 })
	// Revisions 3..10 reach the hub only after a compaction at 8.
	for i := range 8 {
		tx := e.s.Write()
		tx.Put([]byte("k"), []byte(strconv.Itoa(i+1)), 0)
		tx.End()
	}
	if err := e.s.Compact(8); err != nil {
		t.Fatal(err)
	}
	e.h.Publish(e.s.View())
	tests := []struct {
		name string
		ch   <-chan Batch
		want []string // nil: compacted cancel
	}{
		{"needs compacted revisions", needs, nil},
		{"needs them too, though its key has no events", other, nil},
		{"future start after the gap", future, want("PUT k=7@2/9/v8 prev -", "PUT k=8@2/10/v9 prev -")},
		{"start at the compaction", atCompact, want("PUT k=6@2/8/v7 prev -", "PUT k=7@2/9/v8 prev -", "PUT k=8@2/10/v9 prev -")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil {
				got := expectClosed(t, tt.ch)
				if len(got) != 1 || !isCompactedCancel(got[0], 8) {
					t.Fatalf("got %v, want one compacted cancel at 8", got)
				}
				return
			}
			if got := events(collect(t, tt.ch, 10)); !slices.Equal(got, tt.want) {
				t.Errorf("events\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestOlderViewPublished(t *testing.T) {
	e := newEnv(t, Config[Batch]{})
	for i := range 5 { // 2..6
		e.put("k", strconv.Itoa(i))
	}
	e.settle(6)
	ch := e.watch(Options{Key: []byte("k")}) // from 7
	poll(t, "registration", func() bool { return e.h.Stats().Synced == 1 })
	// A restore replaces the state with an older one (revision 3).
	s2 := mvcc.New()
	put2 := func(v string) {
		tx := s2.Write()
		tx.Put([]byte("k"), []byte(v), 0)
		tx.End()
		e.h.Publish(s2.View())
	}
	put2("a")
	put2("b")
	poll(t, "hub at 3", func() bool { return e.h.Stats().CurrentRev == 3 })
	for _, v := range []string{"c", "d", "e", "f", "g"} { // 4..8
		put2(v)
	}
	got := events(collect(t, ch, 8))
	if w := want("PUT k=f@2/7/v6 prev -", "PUT k=g@2/8/v7 prev -"); !slices.Equal(got, w) {
		t.Errorf("events\n got %q\nwant %q", got, w)
	}
}

func TestMaxEventsPerResponse(t *testing.T) {
	txn3 := func(tx *mvcc.WriteTxn) {
		for _, k := range []string{"a/1", "a/2", "a/3"} {
			tx.Put([]byte(k), []byte("v"), 0)
		}
	}
	for _, history := range []bool{false, true} {
		t.Run(fmt.Sprintf("history=%v", history), func(t *testing.T) {
			e := newEnv(t, Config[Batch]{MaxEventsPerResponse: 5})
			o := Options{Key: []byte("a/"), End: []byte("a0")}
			var ch <-chan Batch
			if !history {
				ch = e.watch(o)
				poll(t, "registration", func() bool { return e.h.Stats().Synced == 1 })
			}
			// Ten revisions of three events, published at once.
			for range 10 {
				tx := e.s.Write()
				txn3(tx)
				tx.End()
			}
			e.h.Publish(e.s.View())
			if history {
				o.StartRev = 2
				ch = e.watch(o)
			}
			got := collect(t, ch, 11)
			checkBatches(t, got)
			var sizes []int
			for _, b := range got {
				sizes = append(sizes, len(b.Events))
			}
			// Whole revisions are added until a batch reaches 5 events.
			if w := []int{6, 6, 6, 6, 6}; !slices.Equal(sizes, w) {
				t.Errorf("batch sizes %v, want %v", sizes, w)
			}
		})
	}
}
