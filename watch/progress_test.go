package watch

import (
	"context"
	"testing"
	"time"

	"github.com/embedkv/store/mvcc"
)

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
