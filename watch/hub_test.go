package watch

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/embedkv/store/mvcc"
)

// rangeScript writes revisions 2..8 and returns the final revision.
func rangeScript(e *env) int64 {
	e.put("a", "1")        // 2
	e.put("b/1", "x")      // 3
	e.put("b/2", "y")      // 4
	e.put("c", "z")        // 5
	e.put("ba", "q")       // 6
	e.del("b/1", "")       // 7
	return e.put("d", "w") // 8
}

func TestRanges(t *testing.T) {
	var (
		a   = "PUT a=1@2/2/v1 prev -"
		b1  = "PUT b/1=x@3/3/v1 prev -"
		b2  = "PUT b/2=y@4/4/v1 prev -"
		c   = "PUT c=z@5/5/v1 prev -"
		ba  = "PUT ba=q@6/6/v1 prev -"
		db1 = "DELETE b/1=@0/7/v0 prev -"
		d   = "PUT d=w@8/8/v1 prev -"
	)
	tests := []struct {
		name     string
		key, end []byte
		want     []string
	}{
		{"single key", []byte("b/1"), nil, want(b1, db1)},
		{"absent key", []byte("zz"), nil, nil},
		{"prefix", []byte("b/"), mvcc.PrefixEnd([]byte("b/")), want(b1, b2, db1)},
		{"range", []byte("b"), []byte("c"), want(b1, b2, ba, db1)},
		{"empty range", []byte("c"), []byte("b"), nil},
		{"from key", []byte("c"), []byte{0}, want(c, d)},
		{"all keys", []byte{0}, []byte{0}, want(a, b1, b2, c, ba, db1, d)},
	}
	for _, tt := range tests {
		for _, history := range []bool{false, true} {
			name := tt.name + "/live"
			if history {
				name = tt.name + "/history"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t, Config[Batch]{})
				o := Options{Key: tt.key, End: tt.end}
				var ch <-chan Batch
				if !history {
					ch = e.watch(o) // StartRev 0: from revision 2
				}
				last := rangeScript(e)
				if history {
					o.StartRev = 1
					ch = e.watch(o)
				}
				e.settle(last)
				var got []Batch
				for len(events(got)) < len(tt.want) {
					b, _ := recv(t, ch)
					got = append(got, b)
				}
				e.settle(last)
				expectEmpty(t, ch)
				checkBatches(t, got)
				if g := events(got); !slices.Equal(g, tt.want) {
					t.Errorf("events\n got %q\nwant %q", g, tt.want)
				}
			})
		}
	}
}

func TestPrevKV(t *testing.T) {
	tests := []struct {
		prevKV bool
		want   []string
	}{
		{false, want(
			"PUT k=1@2/2/v1 prev -",
			"PUT k=2@2/3/v2 prev -",
			"DELETE k=@0/4/v0 prev -",
		)},
		{true, want(
			"PUT k=1@2/2/v1 prev -",
			"PUT k=2@2/3/v2 prev k=1@2/2/v1",
			"DELETE k=@0/4/v0 prev k=2@2/3/v2",
		)},
	}
	for _, tt := range tests {
		for _, history := range []bool{false, true} {
			t.Run("", func(t *testing.T) {
				e := newEnv(t, Config[Batch]{})
				o := Options{Key: []byte("k"), PrevKV: tt.prevKV}
				var ch <-chan Batch
				if !history {
					ch = e.watch(o)
				}
				e.put("k", "1")
				e.put("k", "2")
				last := e.del("k", "")
				if history {
					o.StartRev = 2
					ch = e.watch(o)
				}
				got := collect(t, ch, last)
				for _, b := range got {
					if b.PrevKV != tt.prevKV {
						t.Errorf("Batch.PrevKV = %v, want %v", b.PrevKV, tt.prevKV)
					}
				}
				if g := events(got); !slices.Equal(g, tt.want) {
					t.Errorf("prevKV %v history %v: events\n got %q\nwant %q", tt.prevKV, history, g, tt.want)
				}
			})
		}
	}
}

func TestTxnInOneBatch(t *testing.T) {
	e := newEnv(t, Config[Batch]{})
	e.put("c", "0") // 2
	all := e.watch(Options{Key: []byte{0}, End: []byte{0}})
	one := e.watch(Options{Key: []byte("b")})
	twice := e.watch(Options{Key: []byte("a")})
	rev := e.txn(func(tx *mvcc.WriteTxn) { // 3
		tx.Put([]byte("a"), []byte("1"), 0)
		tx.Put([]byte("b"), []byte("2"), 0)
		tx.DeleteRange([]byte("c"), nil)
		tx.Put([]byte("a"), []byte("3"), 0)
	})
	tests := []struct {
		name string
		ch   <-chan Batch
		want []string
	}{
		{"all keys", all, want(
			"PUT a=1@3/3/v1 prev -", "PUT b=2@3/3/v1 prev -",
			"DELETE c=@0/3/v0 prev -", "PUT a=3@3/3/v2 prev -")},
		{"one key of the txn", one, want("PUT b=2@3/3/v1 prev -")},
		{"key written twice", twice, want("PUT a=1@3/3/v1 prev -", "PUT a=3@3/3/v2 prev -")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := recv(t, tt.ch)
			if b.Rev != rev {
				t.Errorf("Rev = %d, want %d", b.Rev, rev)
			}
			if got := events([]Batch{b}); !slices.Equal(got, tt.want) {
				t.Errorf("first batch\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	tests := []struct {
		name                    string
		filterPut, filterDelete bool
		want                    []string
	}{
		{"none", false, false, want(
			"PUT k=1@2/2/v1 prev -", "DELETE k=@0/3/v0 prev -", "PUT k=2@4/4/v1 prev -", "DELETE k=@0/5/v0 prev -")},
		{"no puts", true, false, want("DELETE k=@0/3/v0 prev -", "DELETE k=@0/5/v0 prev -")},
		{"no deletes", false, true, want("PUT k=1@2/2/v1 prev -", "PUT k=2@4/4/v1 prev -")},
		{"nothing", true, true, nil},
	}
	for _, tt := range tests {
		for _, history := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, Config[Batch]{})
				o := Options{Key: []byte("k"), FilterPut: tt.filterPut, FilterDelete: tt.filterDelete}
				var ch <-chan Batch
				if !history {
					ch = e.watch(o)
				}
				e.put("k", "1")
				e.del("k", "")
				e.put("k", "2")
				e.del("k", "")
				if history {
					o.StartRev = 1
					ch = e.watch(o)
				}
				e.put("other", "x") // 6: moves the hub on, not the watcher's range
				last := e.put("k", "3")
				tail := "PUT k=3@7/7/v1 prev -"
				if tt.filterPut {
					last = e.del("k", "")
					tail = "DELETE k=@0/8/v0 prev -"
				}
				e.settle(last)
				var got []Batch
				if !tt.filterPut || !tt.filterDelete {
					got = collect(t, ch, last)
				}
				e.settle(last)
				expectEmpty(t, ch)
				w := tt.want
				if !tt.filterPut || !tt.filterDelete {
					w = append(slices.Clone(w), tail)
				}
				for i, b := range got {
					if len(b.Events) == 0 {
						t.Errorf("batch %d is empty: %s", i, fmtBatch(b))
					}
				}
				if g := events(got); !slices.Equal(g, w) {
					t.Errorf("events\n got %q\nwant %q", g, w)
				}
			})
		}
	}
}

func TestFutureStartRev(t *testing.T) {
	e := newEnv(t, Config[Batch]{})
	ch := e.watch(Options{Key: []byte("k"), StartRev: 4})
	e.put("k", "1") // 2
	e.put("k", "2") // 3
	e.put("k", "3") // 4
	last := e.put("k", "4")
	got := collect(t, ch, last)
	w := want("PUT k=3@2/4/v3 prev -", "PUT k=4@2/5/v4 prev -")
	if g := events(got); !slices.Equal(g, w) {
		t.Errorf("events\n got %q\nwant %q", g, w)
	}
	e.settle(last)
	expectEmpty(t, ch)
}

func TestStartRevZeroIsAfterLatestPublished(t *testing.T) {
	e := newEnv(t, Config[Batch]{})
	e.put("k", "1") // 2
	before := e.put("k", "2")
	ch := e.watch(Options{Key: []byte("k")}) // must not see 2 or 3
	last := e.put("k", "3")
	got := collect(t, ch, last)
	if g, w := events(got), want("PUT k=3@2/4/v3 prev -"); !slices.Equal(g, w) {
		t.Errorf("after rev %d: events\n got %q\nwant %q", before, g, w)
	}
}

func TestContextCancel(t *testing.T) {
	tests := []struct {
		name          string
		cancelEarly   bool // cancel before Watch
		startInFuture bool
	}{
		{"live", false, false},
		{"cancelled before Watch", true, false},
		{"waiting for future rev", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config[Batch]{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelEarly {
				cancel()
			}
			o := Options{Key: []byte("k")}
			if tt.startInFuture {
				o.StartRev = 100
			}
			ch := e.h.Watch(ctx, o)
			if !tt.cancelEarly {
				rev := e.put("k", "1")
				if !tt.startInFuture {
					collect(t, ch, rev)
				}
				cancel()
			}
			if got := expectClosed(t, ch); len(got) != 0 {
				t.Errorf("after cancel got %d batches, want none: %s", len(got), fmtBatch(got[0]))
			}
			poll(t, "no watchers", func() bool { return e.h.Stats().Watchers == 0 })
		})
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, Config[Batch]{BufferSize: 2})
	synced := e.watch(Options{Key: []byte("k"), PrevKV: true})
	full := e.watch(Options{Key: []byte("k")})
	future := e.watch(Options{Key: []byte{0}, End: []byte{0}, StartRev: 1000})
	var last int64
	for i := range 3 {
		// One dispatch per revision: full gets 2 and then overflows,
		// synced is read each time.
		last = e.put("k", string(rune('a'+i)))
		poll(t, "dispatch", func() bool { return e.h.Stats().CurrentRev >= last })
		collect(t, synced, last)
	}
	poll(t, "full watcher unsynced", func() bool { return e.h.Stats().Unsynced == 1 })

	e.h.Close()
	e.h.Close() // idempotent
	for _, tt := range []struct {
		name string
		ch   <-chan Batch
		want int // batches before the close
	}{
		{"synced", synced, 0},
		{"full", full, 2},
		{"future", future, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := expectClosed(t, tt.ch)
			var closing []Batch
			for _, b := range got {
				if b.Canceled {
					closing = append(closing, b)
				}
			}
			if tt.name == "full" {
				// Its buffer was full: it keeps what it had, gets no
				// cancel Batch, and is closed anyway.
				if len(got) != tt.want || len(closing) != 0 {
					t.Errorf("got %d batches (%d canceled), want %d and none", len(got), len(closing), tt.want)
				}
				return
			}
			if len(got) != 1 || !got[0].Canceled || !errors.Is(got[0].Err, ErrClosed) || got[0].Rev != last {
				t.Errorf("got %v, want one Canceled ErrClosed batch at rev %d", got, last)
			}
		})
	}
	if st := e.h.Stats(); st.Watchers != 0 || st.Synced != 0 || st.Unsynced != 0 {
		t.Errorf("Stats after Close = %+v, want no watchers", st)
	}
	after := e.h.Watch(context.Background(), Options{Key: []byte("k")})
	if got := expectClosed(t, after); len(got) != 0 {
		t.Errorf("Watch after Close: got %d batches, want a closed empty channel", len(got))
	}
	e.h.Publish(e.s.View()) // harmless
}

func TestConfigDefaults(t *testing.T) {
	c := Config[Batch]{Convert: convert}.withDefaults()
	if c.BufferSize != DefaultBufferSize || c.ProgressInterval != DefaultProgressInterval ||
		c.CatchUpInterval != DefaultCatchUpInterval || c.MaxEventsPerResponse != DefaultMaxEventsPerResponse ||
		c.Logger == nil {
		t.Errorf("withDefaults = %+v", c)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("New without Convert did not panic")
		}
	}()
	New(Config[Batch]{}, mvcc.New().View())
}

func TestProgressNotify(t *testing.T) {
	e := newEnv(t, Config[Batch]{ProgressInterval: 20 * time.Millisecond})
	idle := e.watch(Options{Key: []byte("k"), ProgressNotify: true, PrevKV: true})
	quiet := e.watch(Options{Key: []byte("k")})
	rev := e.put("k", "v")
	for _, ch := range []<-chan Batch{idle, quiet} {
		collect(t, ch, rev)
	}
	for i := range 2 {
		b, _ := recv(t, idle)
		if !b.Progress || b.Rev != rev || b.Events != nil || b.Canceled || !b.PrevKV {
			t.Fatalf("batch %d = %+v, want progress at rev %d with PrevKV", i, b, rev)
		}
	}
	expectEmpty(t, quiet) // two intervals have passed for it too
}

// sync waits until the hub has finished every round begun before the call,
// by registering and removing a watcher that cannot receive anything. n is
// the number of other open watchers: Stats are published at the end of a
// round, so seeing n+1 means the round that registered the new watcher,
// which began no earlier than the call, is over.
func (e *env) sync(n int) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := e.h.Watch(ctx, Options{Key: []byte("\xff/sync"), StartRev: 1 << 62})
	poll(e.t, "sync watcher registered", func() bool { return e.h.Stats().Watchers == n+1 })
	cancel()
	expectClosed(e.t, ch)
	poll(e.t, "sync watcher removed", func() bool { return e.h.Stats().Watchers == n })
}

func TestProgressOnlyWhenIdleAndSynced(t *testing.T) {
	s := mvcc.New()
	tick := make(chan time.Time)
	h := newHub(Config[Batch]{Convert: convert, BufferSize: 1, CatchUpInterval: time.Hour}, s.View(), tick)
	e := &env{t: t, s: s, h: h}
	t.Cleanup(h.Close)
	k := []byte("k")
	busy := e.watch(Options{Key: k, ProgressNotify: true})
	lag := e.watch(Options{Key: k, ProgressNotify: true})
	quiet := e.watch(Options{Key: k})
	future := e.watch(Options{Key: k, ProgressNotify: true, StartRev: 100})
	e.sync(4)

	// Two revisions dispatched one at a time; lag is not read in between,
	// so it overflows and stays unsynced (no catch-up within the test).
	for range 2 {
		rev := e.put("k", "v")
		e.sync(4)
		collect(t, busy, rev)
		collect(t, quiet, rev)
	}
	if st := h.Stats(); st.Unsynced != 1 {
		t.Fatalf("Stats = %+v, want lag unsynced", st)
	}
	collect(t, lag, 2) // room for a progress, were it sent
	progressAt := func(name string, ch <-chan Batch, rev int64) {
		t.Helper()
		select {
		case b := <-ch:
			if !b.Progress || b.Rev != rev || b.Events != nil {
				t.Errorf("%s: got %s, want progress at %d", name, fmtBatch(b), rev)
			}
		default:
			t.Errorf("%s: no progress, want one at %d", name, rev)
		}
	}

	tick <- time.Time{}
	e.sync(4)
	expectEmpty(t, busy) // it was sent events during the interval
	expectEmpty(t, lag)  // unsynced: a progress would run ahead of its events
	expectEmpty(t, quiet)
	progressAt("future", future, 3)

	tick <- time.Time{}
	e.sync(4)
	progressAt("busy", busy, 3) // idle for a whole interval now
	expectEmpty(t, lag)
	expectEmpty(t, quiet)
	progressAt("future", future, 3)
}
