package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recvEvents reads from ch until it has n events, checking on the way that
// revisions strictly increase across responses and that no response splits
// a revision from the previous one.
func recvEvents(t *testing.T, ch WatchChan, n int) []*Event {
	t.Helper()
	var evs []*Event
	timeout := time.After(20 * time.Second)
	for len(evs) < n {
		select {
		case wr, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(evs), n)
			}
			if wr.Canceled {
				t.Fatalf("watch cancelled after %d of %d events: %v", len(evs), n, wr.Err())
			}
			for _, ev := range wr.Events {
				if len(evs) > 0 {
					last := evs[len(evs)-1].Kv.ModRevision
					if ev.Kv.ModRevision < last {
						t.Fatalf("event revision went back: %d after %d", ev.Kv.ModRevision, last)
					}
				}
				evs = append(evs, ev)
			}
		case <-timeout:
			t.Fatalf("timed out with %d of %d events", len(evs), n)
		}
	}
	return evs
}

func TestWatchPutDeleteOnLeaderAndFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	roles := map[string]int{"leader": c.waitLeader(), "follower": c.follower()}
	for role, i := range roles {
		t.Run(role, func(t *testing.T) {
			s := c.nodes[i]
			key := "sample_key_" + role
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := s.Watch(ctx, key, WithPrevKV())
			writer := c.nodes[(i+1)%3] // write through another node
			p := mustPut(t, writer, key, "sample_value1")
			d, err := writer.Delete(ctxT(t), key)
			if err != nil {
				t.Fatal(err)
			}
			evs := recvEvents(t, ch, 2)
			if evs[0].Type != PUT || evs[0].Kv.ModRevision != p.Header.Revision || evs[0].Kv.Version != 1 ||
				string(evs[0].Kv.Value) != "sample_value1" || !evs[0].IsCreate() {
				t.Errorf("put event: got %v %v, want PUT at %d", evs[0].Type, evs[0].Kv, p.Header.Revision)
			}
			if evs[1].Type != DELETE || evs[1].Kv.ModRevision != d.Header.Revision || evs[1].PrevKv == nil ||
				string(evs[1].PrevKv.Value) != "sample_value1" {
				t.Errorf("delete event: got %v %v prev %v, want DELETE at %d", evs[1].Type, evs[1].Kv, evs[1].PrevKv, d.Header.Revision)
			}
			if got := fmt.Sprint(evs[0].Type, " ", evs[1].Type); got != "PUT DELETE" {
				t.Errorf("event type strings: got %q", got)
			}
		})
	}
}

func TestWatchOptions(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	tests := []struct {
		name string
		key  string
		opts []OpOption
		want []string // "TYPE key"
	}{
		{"prefix", "p/", []OpOption{WithPrefix()}, []string{"PUT p/a", "PUT p/b", "DELETE p/a"}},
		{"range", "p/a", []OpOption{WithRange("p/b")}, []string{"PUT p/a", "DELETE p/a"}},
		{"from key", "p/b", []OpOption{WithFromKey()}, []string{"PUT p/b", "PUT q"}},
		{"filter put", "p/", []OpOption{WithPrefix(), WithFilterPut()}, []string{"DELETE p/a"}},
		{"filter delete", "p/", []OpOption{WithPrefix(), WithFilterDelete()}, []string{"PUT p/a", "PUT p/b"}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chans := make([]WatchChan, len(tests))
	for i, tt := range tests {
		chans[i] = s.Watch(ctx, tt.key, tt.opts...)
	}
	mustPut(t, s, "p/a", "1")
	mustPut(t, s, "p/b", "2")
	if _, err := s.Delete(ctxT(t), "p/a"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "q", "3")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := recvEvents(t, chans[i], len(tt.want))
			for j, ev := range evs {
				if got := fmt.Sprintf("%v %s", ev.Type, ev.Kv.Key); got != tt.want[j] {
					t.Errorf("event %d: got %q, want %q", j, got, tt.want[j])
				}
			}
		})
	}
}

func TestWatchTxnAtomicResponse(t *testing.T) {
	c := newCluster(t, 3, nil)
	f := c.nodes[c.follower()]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := f.Watch(ctx, "t/", WithPrefix())
	r, err := c.nodes[c.waitLeader()].Txn(ctxT(t)).Then(OpPut("t/1", "a"), OpPut("t/2", "b"), OpPut("t/3", "c")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-ch:
		if len(wr.Events) != 3 {
			t.Fatalf("got %d events in the first response, want all 3 of the txn", len(wr.Events))
		}
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision != r.Header.Revision {
				t.Errorf("event revision %d, want %d", ev.Kv.ModRevision, r.Header.Revision)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no response")
	}
}

func TestWatchResumeFromAnyRevision(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	var revs []int64
	var vals []string
	for i := 0; i < 30; i++ {
		revs = append(revs, putExact(t, c.nodes[i%3], "r", fmt.Sprint(i)).Header.Revision)
		vals = append(vals, fmt.Sprint(i))
	}
	for _, node := range []int{l, c.follower()} {
		for _, start := range []int{0, 7, 29} {
			t.Run(fmt.Sprintf("node%d/from%d", node, start), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				ch := c.nodes[node].Watch(ctx, "r", WithRev(revs[start]))
				// Live writes continue while the watcher replays history.
				live := fmt.Sprintf("live-%d", len(revs))
				extra := putExact(t, c.nodes[l], "r", live).Header.Revision
				evs := recvEvents(t, ch, len(revs)-start+1)
				for j, ev := range evs[:len(evs)-1] {
					if ev.Kv.ModRevision != revs[start+j] || string(ev.Kv.Value) != vals[start+j] {
						t.Errorf("event %d: got rev %d value %s, want rev %d", j, ev.Kv.ModRevision, ev.Kv.Value, revs[start+j])
					}
				}
				if last := evs[len(evs)-1]; last.Kv.ModRevision != extra {
					t.Errorf("live event: got rev %d, want %d", last.Kv.ModRevision, extra)
				}
				revs = append(revs, extra)
				vals = append(vals, live)
			})
		}
	}
}

func TestWatchCompacted(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	var revs []int64
	for i := 0; i < 5; i++ {
		revs = append(revs, mustPut(t, s, "k", fmt.Sprint(i)).Header.Revision)
	}
	// A delete at exactly the compaction revision must still be delivered.
	d, err := s.Delete(ctxT(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctxT(t), d.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Run("below compaction", func(t *testing.T) {
		ch := s.Watch(ctx, "k", WithRev(revs[2]))
		wr := <-ch
		if !wr.Canceled || wr.CompactRevision != d.Header.Revision || !errors.Is(wr.Err(), ErrCompacted) {
			t.Errorf("got %+v err %v, want cancelled with compact revision %d", wr, wr.Err(), d.Header.Revision)
		}
		if _, ok := <-ch; ok {
			t.Error("channel still open after the compacted response")
		}
	})
	t.Run("at compaction", func(t *testing.T) {
		ch := s.Watch(ctx, "k", WithRev(d.Header.Revision))
		evs := recvEvents(t, ch, 1)
		if evs[0].Type != DELETE || evs[0].Kv.ModRevision != d.Header.Revision {
			t.Errorf("got %v at %d, want the DELETE at %d", evs[0].Type, evs[0].Kv.ModRevision, d.Header.Revision)
		}
	})
}

func TestWatchAfterWriteOnAnotherNode(t *testing.T) {
	c := newCluster(t, 3, nil)
	for w := range c.nodes {
		r := (w + 1) % 3
		key := fmt.Sprintf("aw-%d", w)
		p := mustPut(t, c.nodes[w], key, "v")
		ctx, cancel := context.WithCancel(context.Background())
		ch := c.nodes[r].Watch(ctx, key, WithRev(p.Header.Revision))
		evs := recvEvents(t, ch, 1)
		if evs[0].Kv.ModRevision != p.Header.Revision {
			t.Errorf("node %d watching node %d's write: got rev %d, want %d", r, w, evs[0].Kv.ModRevision, p.Header.Revision)
		}
		cancel()
	}
}

// A consumer that does not read must not slow writes or other watchers, and
// must later receive every event in order.
func TestWatchStalledConsumer(t *testing.T) {
	c := newCluster(t, 3, nil)
	f := c.nodes[c.follower()]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled := f.Watch(ctx, "s", WithPrefix())
	fast := f.Watch(ctx, "s", WithPrefix())
	const n = 600
	var wg sync.WaitGroup
	wg.Add(1)
	var fastEvs []*Event
	go func() {
		defer wg.Done()
		fastEvs = recvEvents(t, fast, n)
	}()
	l := c.nodes[c.waitLeader()]
	for i := 0; i < n; i++ {
		if _, err := l.Put(ctxT(t), fmt.Sprintf("s/%d", i%10), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	slow := recvEvents(t, stalled, n)
	for i := range slow {
		if string(slow[i].Kv.Value) != fmt.Sprint(i) || slow[i].Kv.ModRevision != fastEvs[i].Kv.ModRevision {
			t.Fatalf("stalled watcher event %d: got %s at %d, want %d at %d",
				i, slow[i].Kv.Value, slow[i].Kv.ModRevision, i, fastEvs[i].Kv.ModRevision)
		}
	}
}

func TestWatchStalledPastCompaction(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled := s.Watch(ctx, "k")
	var last int64
	for i := 0; i < 200; i++ {
		last = mustPut(t, s, "k", fmt.Sprint(i)).Header.Revision
	}
	if err := s.Compact(ctxT(t), last); err != nil {
		t.Fatal(err)
	}
	// Every response is in order; the stream ends either with all 200 events
	// or with a compacted cancel, never silently short.
	got := 0
	for wr := range stalled {
		if wr.Canceled {
			if !errors.Is(wr.Err(), ErrCompacted) || wr.CompactRevision != last {
				t.Fatalf("cancel: got %v compact %d, want ErrCompacted at %d", wr.Err(), wr.CompactRevision, last)
			}
			return
		}
		for _, ev := range wr.Events {
			if string(ev.Kv.Value) != fmt.Sprint(got) {
				t.Fatalf("event %d: got value %s", got, ev.Kv.Value)
			}
			got++
		}
		if got == 200 {
			return
		}
	}
	t.Fatalf("channel closed after %d events without a cancel", got)
}

func TestWatchClosesOnCtxAndStoreClose(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	ctx, cancel := context.WithCancel(context.Background())
	ch := s.Watch(ctx, "k")
	cancel()
	for range ch { // drains and ends when closed
	}
	keep := s.Watch(context.Background(), "k")
	c.stop(0)
	var lastErr error
	for wr := range keep {
		lastErr = wr.Err()
	}
	if lastErr != nil && !errors.Is(lastErr, ErrStopped) {
		t.Errorf("last response after close: got %v, want ErrStopped or none", lastErr)
	}
	wr, ok := <-s.Watch(context.Background(), "k")
	if !ok || !errors.Is(wr.Err(), ErrStopped) {
		t.Errorf("watch after close: got %v, %v; want a cancelled ErrStopped response", wr.Err(), ok)
	}
}

func TestWatchBadInput(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	tests := []struct {
		name string
		key  string
		opts []OpOption
		want error
	}{
		{"empty key", "", nil, ErrEmptyKey},
		{"negative rev", "k", []OpOption{WithRev(-1)}, ErrInvalidArgument},
		{"limit", "k", []OpOption{WithLimit(1)}, ErrInvalidArgument},
		{"prefix and range", "k", []OpOption{WithPrefix(), WithRange("z")}, ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wr, ok := <-s.Watch(context.Background(), tt.key, tt.opts...)
			if !ok || !wr.Canceled || !errors.Is(wr.Err(), tt.want) {
				t.Errorf("got %+v (open %v) err %v, want cancelled with %v", wr, ok, wr.Err(), tt.want)
			}
		})
	}
}

func TestWatchProgressNotify(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.WatchProgressNotifyInterval = 50 * time.Millisecond })
	s := c.nodes[0]
	rev := mustPut(t, s, "other", "v").Header.Revision
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, "k", WithProgressNotify())
	select {
	case wr := <-ch:
		if !wr.IsProgressNotify() || wr.Header.Revision < rev {
			t.Errorf("got %+v, want a progress notification at revision >= %d", wr, rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no progress notification")
	}
}
