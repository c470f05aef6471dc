package robustness

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	store "github.com/embedkv/store"
)

// WatchResponse is one recorded watch response.
type WatchResponse struct {
	Time     int64 // when it was received (Clock)
	Events   []Event
	Canceled bool
	Err      string
}

// WatchLog is everything one watcher received. The watcher watches a
// prefix on one node from revision 1 and resumes from the revision after
// the last event it received whenever its channel closes (its node was
// killed and restarted, or it was cancelled).
type WatchLog struct {
	Node      int
	Responses []WatchResponse
	Resumes   int

	lastRev atomic.Int64
}

// LastRev returns the revision of the last event received.
func (l *WatchLog) LastRev() int64 { return l.lastRev.Load() }

func watchEvents(resp store.WatchResponse) []Event {
	out := make([]Event, len(resp.Events))
	for i, ev := range resp.Events {
		e := Event{Rev: ev.Kv.ModRevision, Delete: ev.Type == store.DELETE, KV: toKV(ev.Kv)}
		if e.Delete {
			e.KV = KV{Key: string(ev.Kv.Key), Mod: ev.Kv.ModRevision}
		}
		out[i] = e
	}
	return out
}

// Watchers runs one watcher per node until Stop.
type Watchers struct {
	Logs   []*WatchLog
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartWatchers starts one watcher of prefix on every node of c.
func StartWatchers(c Target, clk *Clock, prefix string) *Watchers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watchers{Logs: make([]*WatchLog, c.N()), cancel: cancel}
	for i := range c.N() {
		l := &WatchLog{Node: i}
		// Revision 1 is the empty store: watch from 2, so that a watcher
		// resumed before any event is not refused once revision 1 is
		// compacted (see BadInput).
		l.lastRev.Store(1)
		w.Logs[i] = l
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			runWatcher(ctx, c, clk, l, prefix)
		}()
	}
	return w
}

// runWatcher watches prefix on node l.Node from the revision after the
// last event received, until ctx ends, appending to l.
func runWatcher(ctx context.Context, c Target, clk *Clock, l *WatchLog, prefix string) {
	for ctx.Err() == nil {
		conn, _ := c.Conn(l.Node)
		if conn == nil {
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		for r := range conn.Watch(ctx, clk, prefix, l.LastRev()+1) {
			l.Responses = append(l.Responses, r)
			if n := len(r.Events); n > 0 {
				l.lastRev.Store(r.Events[n-1].Rev)
			}
		}
		conn.Close()
		l.Resumes++
		if ctx.Err() == nil {
			sleepCtx(ctx, 10*time.Millisecond)
		}
	}
}

// WaitFor polls until every watcher has received revision rev.
func (w *Watchers) WaitFor(rev int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		behind := ""
		for _, l := range w.Logs {
			if l.LastRev() < rev {
				behind += fmt.Sprintf(" n%d at %d;", l.Node+1, l.LastRev())
			}
		}
		if behind == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("watchers behind revision %d after %v:%s", rev, timeout, behind)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops the watchers and waits for them; Logs may be read afterwards.
func (w *Watchers) Stop() {
	w.cancel()
	w.wg.Wait()
}

// FirstSeen returns, per revision, the earliest time a watcher received it.
func FirstSeen(logs []*WatchLog) map[int64]int64 {
	seen := map[int64]int64{}
	for _, l := range logs {
		for _, r := range l.Responses {
			for _, e := range r.Events {
				if t, ok := seen[e.Rev]; !ok || r.Time < t {
					seen[e.Rev] = r.Time
				}
			}
		}
	}
	return seen
}

// CheckWatch checks one watcher's responses against h, from revision from
// (the watch's start) to upTo:
//
//   - ordered and unique: event revisions strictly increase from response
//     to response, and never decrease within one;
//   - atomic: all events of a revision come in one response;
//   - reliable: every revision in [from, upTo] that changed the prefix is
//     delivered (no gap), and nothing beyond upTo;
//   - exact: the events of each revision equal h's (type, key, value,
//     create and mod revision, version);
//   - the only cancellations are ErrStopped (the node closed).
//
// It returns the number of events checked and the violations.
func CheckWatch(name string, resps []WatchResponse, h *History, from, upTo int64) (int, []string) {
	var bad []string
	fail := func(format string, a ...any) { bad = append(bad, name+": "+fmt.Sprintf(format, a...)) }
	got := map[int64][]Event{}
	last, lastResp := from-1, -1 // the highest revision so far, and its response
	n := 0
	for ri, r := range resps {
		if r.Canceled && r.Err != store.ErrStopped.Error() {
			fail("cancelled: %s", r.Err)
		}
		for _, e := range r.Events {
			n++
			switch {
			case e.Rev < last:
				fail("event %s after revision %d: out of order or duplicated", e, last)
				continue
			case e.Rev == last && ri != lastResp:
				fail("revision %d split across responses or delivered twice (%s)", e.Rev, e)
				continue
			}
			got[e.Rev] = append(got[e.Rev], e)
			last, lastResp = e.Rev, ri
		}
	}
	for r := from; r <= max(upTo, last); r++ {
		var want []Event
		if r <= h.Rev && r >= 0 {
			want = h.Events[r]
		}
		g := got[r]
		sort.SliceStable(g, func(i, j int) bool { return g[i].KV.Key < g[j].KV.Key })
		switch {
		case len(g) == 0 && len(want) > 0:
			fail("gap: revision %d (%v) never delivered", r, want)
		case len(want) == 0 && len(g) > 0:
			fail("revision %d delivered %v, history has no change there", r, g)
		case fmt.Sprint(g) != fmt.Sprint(want):
			fail("revision %d delivered %v, history has %v", r, g, want)
		}
	}
	return n, bad
}
