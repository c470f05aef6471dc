package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testlog"
	"github.com/hashicorp/raft"
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

// putEntry is raft log entry index holding a Put of key by (origin, seq).
func putEntry(t *testing.T, index, origin, seq uint64, key string) *raft.Log {
	b, err := encodeCommand(cmdRequest, &request{Origin: origin, Seq: seq, Kind: reqPut, Put: &putReq{Key: []byte(key), Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b}
}

// TestReadInBatchTail: a reader that arrives after a batch published
// nothing but before it released captureMu must not sleep until the next
// batch (found by review: the FSM then stayed idle and the read hung).
func TestReadInBatchTail(t *testing.T) {
	w := newWaiters()
	f := newTestFSM(t, 7, w)
	// An unbuffered waiter channel holds the batch in its tail (after it
	// recorded the index, before it released the lock) until received.
	held := make(chan *result)
	w.mu.Lock()
	w.m[1] = held
	w.mu.Unlock()
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		f.ApplyBatch([]*raft.Log{putEntry(t, 5, 7, 1, "k")})
	}()
	if !poll(t, 10*time.Second, func() bool { return f.applied.Load() >= 5 }) {
		t.Fatal("the batch never recorded index 5")
	}
	type readResult struct {
		st  *appliedState
		err error
	}
	got := make(chan readResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := f.read(ctx, nil)
		got <- readResult{st, err}
	}()
	// The reader found the lock held and asked for a view (want), so it
	// is waiting now; let the batch end.
	if !poll(t, 10*time.Second, func() bool { return f.want.Load() }) {
		t.Fatal("the reader never asked for a view")
	}
	<-held
	<-applied
	select {
	case r := <-got:
		if r.err != nil || r.st.index < 5 {
			t.Fatalf("read after the batch: got index %v, err %v; want index >= 5", r.st, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("read still waiting 5 s after the last batch ended: applied %d, published %d",
			f.applied.Load(), f.state.Load().index)
	}
}

// TestReadDuringRestore: a snapshot install decodes before it takes the
// lock readers may need, so reads are served meanwhile, and a failed
// install leaves nobody waiting.
func TestReadDuringRestore(t *testing.T) {
	f := newTestFSM(t, 7, newWaiters())
	f.ApplyBatch([]*raft.Log{putEntry(t, 5, 9, 1, "k")})
	if f.state.Load().index >= 5 {
		t.Fatal("setup: the batch published a view though nobody asked")
	}
	pr, pw := io.Pipe()
	restored := make(chan error, 1)
	go func() { restored <- f.Restore(pr) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := f.read(ctx, nil) // Restore is blocked reading the pipe
	if err != nil || st.index < 5 {
		t.Fatalf("read while a restore decodes: got %v, %v; want index >= 5", st, err)
	}
	pw.Write([]byte("not a snapshot"))
	pw.Close()
	if err := <-restored; err == nil {
		t.Fatal("Restore of garbage succeeded")
	}
	f.ApplyBatch([]*raft.Log{putEntry(t, 6, 9, 2, "k")})
	if st, err := f.read(ctx, nil); err != nil || st.index < 6 {
		t.Fatalf("read after a failed restore: got %v, %v; want index >= 6", st, err)
	}
}

// TestNoWatchWarningWithoutWatchers: a follower that published no view
// while writes and a compaction went by must not warn about compacted
// revisions when a read finally publishes one, since no watcher missed
// anything (found by review).
func TestNoWatchWarningWithoutWatchers(t *testing.T) {
	var logs []*testlog.Buffer
	c := newCluster(t, 3, func(cfg *Config) {
		b := &testlog.Buffer{}
		logs = append(logs, b)
		cfg.Logger = b.Logger(slog.LevelWarn)
	})
	l, f := c.waitLeader(), c.follower()
	mustGet(t, c.nodes[f], "x", WithSerializable())
	var last *PutResponse
	for i := 0; i < 20; i++ {
		last = mustPut(t, c.nodes[l], fmt.Sprint("k", i), "v")
	}
	if err := c.nodes[l].Compact(ctxT(t), last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if !poll(t, 10*time.Second, func() bool { return c.nodes[f].fsm.applied.Load() >= c.nodes[l].fsm.applied.Load() }) {
		t.Fatal("the follower did not apply the compaction")
	}
	mustGet(t, c.nodes[f], "x", WithSerializable())
	c.closeAll()
	for i, b := range logs {
		if b.Contains("compacted before dispatch") {
			t.Errorf("node %d warned with no watcher open:\n%s", i+1, b.String())
		}
	}
}
