package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Views are published lazily (see fsm): these tests pin what readers and
// watchers must still see.

// TestWritesWithoutReadersPublishNoView checks the laziness itself: writes
// that nobody reads leave the published view behind the applied state, and
// the next read still sees all of them.
func TestWritesWithoutReadersPublishNoView(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader()
	f := c.follower()
	s, fs := c.nodes[leader], c.nodes[f]
	// Settle: let pending publishes from startup happen.
	mustGet(t, s, "settle")
	mustGet(t, fs, "settle")
	var last *PutResponse
	for i := 0; i < 20; i++ {
		last = mustPut(t, s, fmt.Sprintf("lazy-%02d", i), "v")
	}
	if got, applied := s.fsm.current().index, s.fsm.applied.Load(); got >= applied {
		t.Errorf("leader: published view at index %d, applied %d: want the view to lag when nobody reads", got, applied)
	}
	for name, node := range map[string]*Store{"leader": s, "follower": fs} {
		if !poll(t, 10*time.Second, func() bool { return node.fsm.applied.Load() >= s.fsm.applied.Load() }) {
			t.Fatalf("%s did not apply the writes", name)
		}
		r := mustGet(t, node, "lazy-", WithPrefix(), WithSerializable())
		if got, want := len(r.Kvs), 20; got != want {
			t.Errorf("%s: serializable read after lazy writes got %d keys, want %d", name, got, want)
		}
		if r.Header.Revision < last.Header.Revision {
			t.Errorf("%s: read at revision %d, want >= %d", name, r.Header.Revision, last.Header.Revision)
		}
	}
}

// TestReadYourWritesWhileApplyIsBusy has clients that each Put and then
// read back with a serializable Get on the same node while other writers
// keep the FSM busy: every read must see the client's own write (when the
// published view lags, the read waits for the running batch or takes a
// fresh view).
func TestReadYourWritesWhileApplyIsBusy(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader()
	nodes := map[string]*Store{"leader": c.nodes[leader], "follower": c.nodes[c.follower()]}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup
	for g := 0; g < 16; g++ {
		bg.Add(1)
		go func(g int) {
			defer bg.Done()
			s := c.nodes[g%3]
			for i := 0; ctx.Err() == nil; i++ {
				s.Put(ctx, fmt.Sprintf("noise-%d-%d", g, i%50), "x")
			}
		}(g)
	}
	defer bg.Wait()
	defer cancel()
	for name, s := range nodes {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 100; i++ {
						key, val := fmt.Sprintf("ryw-%s-%d", name, g), fmt.Sprintf("v%d", i)
						p, err := s.Put(ctxT(t), key, val)
						if err != nil {
							errs <- err
							return
						}
						r, err := s.Get(ctxT(t), key, WithSerializable())
						if err != nil {
							errs <- err
							return
						}
						if got := value(r); got != val || r.Header.Revision < p.Header.Revision {
							errs <- fmt.Errorf("after Put(%s=%s) at revision %d a serializable Get saw %q at revision %d",
								key, val, p.Header.Revision, got, r.Header.Revision)
							return
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestWatchAfterLazyWrites starts watchers after writes that published no
// view, with no write after them: a watcher from an old revision must get
// those events at once, and one without a revision must start after them.
func TestWatchAfterLazyWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader()
	for _, tc := range []struct {
		name string
		node int
	}{{"leader", leader}, {"follower", c.follower()}} {
		t.Run(tc.name, func(t *testing.T) {
			s := c.nodes[tc.node]
			w := c.nodes[leader]
			prefix := "lw-" + tc.name + "-"
			first := mustPut(t, w, prefix+"0", "a")
			for i := 1; i < 5; i++ {
				mustPut(t, w, fmt.Sprintf("%s%d", prefix, i), "a")
			}
			if !poll(t, 10*time.Second, func() bool { return s.fsm.applied.Load() >= w.fsm.applied.Load() }) {
				t.Fatal("node did not apply the writes")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			old := s.Watch(ctx, prefix, WithPrefix(), WithRev(first.Header.Revision))
			evs := recvEvents(t, old, 5)
			if got, want := string(evs[4].Kv.Key), prefix+"4"; got != want {
				t.Errorf("fifth event on %s, want %s", got, want)
			}
			now := s.Watch(ctx, prefix, WithPrefix())
			p := mustPut(t, w, prefix+"5", "b")
			evs = recvEvents(t, now, 1)
			if got, want := evs[0].Kv.ModRevision, p.Header.Revision; got != want {
				t.Errorf("a watch without revision got its first event at revision %d, want %d (the next write)", got, want)
			}
		})
	}
}
