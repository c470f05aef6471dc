package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store/mvcc"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor is how long a test polls for something before failing.
const waitFor = 20 * time.Second

// convert is the tests' Config.Convert: it returns the Batch itself,
// without PrevKv unless the watcher asked for it (like a real converter
// must). It allocates fresh Events then, never modifying the store's.
func convert(b Batch) Batch {
	if b.PrevKV || b.Events == nil {
		return b
	}
	evs := make([]*mvcc.Event, len(b.Events))
	for i, ev := range b.Events {
		evs[i] = &mvcc.Event{Type: ev.Type, Kv: ev.Kv}
	}
	b.Events = evs
	return b
}

// env is a store feeding a hub.
type env struct {
	t testing.TB
	s *mvcc.Store
	h *Hub[Batch]
}

// newEnv starts a hub over a new store; cfg.Convert defaults to convert.
// The hub is closed at the end of the test.
func newEnv(t testing.TB, cfg Config[Batch]) *env {
	t.Helper()
	if cfg.Convert == nil {
		cfg.Convert = convert
	}
	s := mvcc.New()
	e := &env{t: t, s: s, h: New(cfg, s.View())}
	t.Cleanup(e.h.Close)
	return e
}

// put writes key=val in its own revision, publishes it and returns the
// revision.
func (e *env) put(key, val string) int64 {
	return e.txn(func(tx *mvcc.WriteTxn) { tx.Put([]byte(key), []byte(val), 0) })
}

// del deletes [key, end) (end "" for key alone), publishes and returns the
// store's revision.
func (e *env) del(key, end string) int64 {
	return e.txn(func(tx *mvcc.WriteTxn) { tx.DeleteRange([]byte(key), bs(end)) })
}

// txn runs fn in one write transaction, publishes and returns the
// store's revision.
func (e *env) txn(fn func(tx *mvcc.WriteTxn)) int64 {
	tx := e.s.Write()
	fn(tx)
	tx.End()
	e.h.Publish(e.s.View())
	return e.s.Rev()
}

// compact waits until the hub has dispatched the store's revision (so
// that synced watchers are not cancelled for the hub being behind), then
// compacts the store at rev and publishes.
func (e *env) compact(rev int64) {
	e.t.Helper()
	cur := e.s.Rev()
	poll(e.t, "dispatch before compaction", func() bool { return e.h.Stats().CurrentRev >= cur })
	if err := e.s.Compact(rev); err != nil {
		e.t.Fatalf("Compact(%d): %v", rev, err)
	}
	e.h.Publish(e.s.View())
}

// watch registers a watcher for the test's lifetime.
func (e *env) watch(o Options) <-chan Batch {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	return e.h.Watch(ctx, o)
}

// settle waits until the hub has dispatched rev and has no unsynced
// watcher: every send it will make for rev has then been made.
func (e *env) settle(rev int64) {
	e.t.Helper()
	poll(e.t, fmt.Sprintf("hub at rev %d with no unsynced watcher", rev), func() bool {
		st := e.h.Stats()
		return st.CurrentRev >= rev && st.Unsynced == 0
	})
}

// poll fails the test unless cond becomes true before the deadline.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// bs converts a string to bytes, "" to nil.
func bs(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// recv receives one Batch, failing on timeout; ok is false when the
// channel is closed.
func recv(t testing.TB, ch <-chan Batch) (Batch, bool) {
	t.Helper()
	select {
	case b, ok := <-ch:
		return b, ok
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for a batch")
		return Batch{}, false
	}
}

// collect receives batches until one holds an event of revision rev or
// later, or a Canceled one arrives, and returns them.
func collect(t testing.TB, ch <-chan Batch, rev int64) []Batch {
	t.Helper()
	var got []Batch
	for {
		b, ok := recv(t, ch)
		if !ok {
			t.Fatalf("channel closed after %d batches, waiting for rev %d", len(got), rev)
		}
		got = append(got, b)
		if b.Canceled {
			return got
		}
		if n := len(b.Events); n > 0 && b.Events[n-1].Kv.ModRevision >= rev {
			return got
		}
	}
}

// expectClosed waits for ch to be closed and returns what came before.
func expectClosed(t testing.TB, ch <-chan Batch) []Batch {
	t.Helper()
	var got []Batch
	for {
		b, ok := recv(t, ch)
		if !ok {
			return got
		}
		got = append(got, b)
	}
}

// expectEmpty fails if ch holds a batch or is closed. Call it after
// settle, when the hub has made every send it would make.
func expectEmpty(t testing.TB, ch <-chan Batch) {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatalf("channel closed, want open and empty")
		}
		t.Fatalf("unexpected batch %s", fmtBatch(b))
	default:
	}
}

// fmtKV renders a KeyValue as key=value@create/mod/vVersion.
func fmtKV(kv *mvcc.KeyValue) string {
	if kv == nil {
		return "-"
	}
	return fmt.Sprintf("%s=%s@%d/%d/v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}

// fmtEvent renders an event as "TYPE kv prev".
func fmtEvent(ev *mvcc.Event) string {
	return fmt.Sprintf("%s %s prev %s", ev.Type, fmtKV(ev.Kv), fmtKV(ev.PrevKv))
}

// fmtBatch renders a batch: its events, or its kind.
func fmtBatch(b Batch) string {
	switch {
	case b.Canceled:
		return fmt.Sprintf("canceled(rev %d, compact %d, err %v)", b.Rev, b.CompactRev, b.Err)
	case b.Progress:
		return fmt.Sprintf("progress(rev %d)", b.Rev)
	}
	parts := make([]string, len(b.Events))
	for i, ev := range b.Events {
		parts[i] = fmtEvent(ev)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// events flattens the events of batches, rendered with fmtEvent.
func events(batches []Batch) []string {
	var out []string
	for _, b := range batches {
		for _, ev := range b.Events {
			out = append(out, fmtEvent(ev))
		}
	}
	return out
}

// checkBatches fails unless every batch's events are in revision order,
// no revision is split between batches, revisions strictly increase from
// batch to batch, and each header revision covers its events.
func checkBatches(t testing.TB, batches []Batch) {
	t.Helper()
	var last int64
	for i, b := range batches {
		if n := len(b.Events); n > 0 && b.Rev < b.Events[n-1].Kv.ModRevision {
			t.Fatalf("batch %d: header revision %d below its events' %d", i, b.Rev, b.Events[n-1].Kv.ModRevision)
		}
		for _, ev := range b.Events {
			rev := ev.Kv.ModRevision
			if rev < last {
				t.Fatalf("batch %d: revision %d after %d", i, rev, last)
			}
			if rev == last && i > 0 && ev == b.Events[0] {
				t.Fatalf("batch %d: revision %d split across batches", i, rev)
			}
			last = rev
		}
	}
}

// isCompactedCancel reports whether b is the compacted cancellation.
func isCompactedCancel(b Batch, compactRev int64) bool {
	return b.Canceled && errors.Is(b.Err, mvcc.ErrCompacted) && b.CompactRev == compactRev && b.Events == nil
}

// want builds expected event strings.
func want(evs ...string) []string { return evs }

// wantEvents returns what a watcher with options o (StartRev resolved)
// must receive from view v, rendered like events does.
func wantEvents(t testing.TB, v *mvcc.View, o Options) []string {
	t.Helper()
	var out []string
	err := v.Events(o.StartRev, o.Key, o.End, func(_ int64, evs []*mvcc.Event) bool {
		for _, ev := range evs {
			if (ev.Type == mvcc.EventPut && o.FilterPut) || (ev.Type == mvcc.EventDelete && o.FilterDelete) {
				continue
			}
			if !o.PrevKV {
				ev = &mvcc.Event{Type: ev.Type, Kv: ev.Kv}
			}
			out = append(out, fmtEvent(ev))
		}
		return true
	})
	if err != nil {
		t.Fatalf("Events(%d): %v", o.StartRev, err)
	}
	return out
}

// collector reads a watcher's channel on its own goroutine until it is
// closed, optionally pausing before each receive (slow consumers).
type collector struct {
	mu      sync.Mutex
	batches []Batch
	nevents int
	done    chan struct{} // closed when the channel is closed and drained
}

// startCollector starts reading ch. pause, if non-nil, is called before
// each receive with the number of batches received so far, and may block.
func startCollector(ch <-chan Batch, pause func(n int)) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for n := 0; ; n++ {
			if pause != nil {
				pause(n)
			}
			b, ok := <-ch
			if !ok {
				return
			}
			c.mu.Lock()
			c.batches = append(c.batches, b)
			c.nevents += len(b.Events)
			c.mu.Unlock()
		}
	}()
	return c
}

// got returns the batches received so far.
func (c *collector) got() []Batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.batches)
}

// events returns the number of events received so far.
func (c *collector) events() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nevents
}

// wait waits for the collector's goroutine to end (the channel closed).
func (c *collector) wait(t testing.TB) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		t.Fatalf("collector still running")
	}
}
