package concurrency

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedkv/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCluster is n embedkv nodes over real loopback TCP with real data
// directories, closed when the test ends.
type testCluster struct {
	t     testing.TB
	nodes []*store.Store // nil once stopped
	ids   []string
}

// newCluster starts n nodes with timers fast enough for tests (the minimum
// lease TTL is then one second) and waits for an agreed raft leader.
func newCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		l.Close()
	}
	var peers []store.Peer
	for i, a := range addrs {
		peers = append(peers, store.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
	}
	c := &testCluster{t: t, nodes: make([]*store.Store, n)}
	t.Cleanup(c.closeAll)
	base := t.TempDir()
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, id)
		s, err := store.Open(store.Config{
			NodeID:             id,
			Dir:                filepath.Join(base, id),
			BindAddr:           addrs[i],
			Peers:              peers,
			Logger:             testLogger(t),
			HeartbeatTimeout:   400 * time.Millisecond,
			ElectionTimeout:    400 * time.Millisecond,
			LeaderLeaseTimeout: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("Open(%s): %v", id, err)
		}
		c.nodes[i] = s
	}
	waitFor(t, 15*time.Second, "an agreed raft leader", func() bool {
		leader := ""
		for _, s := range c.nodes {
			st := s.Status()
			if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
				return false
			}
			leader = st.LeaderID
		}
		return true
	})
	return c
}

// stop closes node i.
func (c *testCluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("Close(%s): %v", c.ids[i], err)
	}
	c.nodes[i] = nil
}

func (c *testCluster) closeAll() {
	for i, s := range c.nodes {
		if s != nil {
			if err := s.Close(); err != nil {
				c.t.Errorf("Close(%s): %v", c.ids[i], err)
			}
			c.nodes[i] = nil
		}
	}
}

// testLogger discards the nodes' logs unless EMBEDKV_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("EMBEDKV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ctxT returns a context that ends with the test or after 30 s.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newSession opens a session on st and closes it when the test ends (a
// lease already gone, or a store already closed, is fine then).
func newSession(t testing.TB, st *store.Store, opts ...SessionOption) *Session {
	t.Helper()
	s, err := NewSession(st, opts...)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitClosed waits for ch to be closed.
func waitClosed(t testing.TB, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("%s not closed after %v", what, timeout)
	}
}

// result runs fn in a goroutine and returns a channel with its error.
func result(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

// waitErr waits for the error of a result.
func waitErr(t testing.TB, ch <-chan error, timeout time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v", what, timeout)
		return nil
	}
}

// keyCount returns how many keys exist under prefix.
func keyCount(t testing.TB, st *store.Store, prefix string) int64 {
	t.Helper()
	r, err := st.Get(ctxT(t), prefix, store.WithPrefix(), store.WithCountOnly())
	if err != nil {
		t.Fatalf("Get(%q): %v", prefix, err)
	}
	return r.Count
}

// waitKeys waits until exactly n keys exist under prefix.
func waitKeys(t testing.TB, st *store.Store, prefix string, n int64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d keys under %q", n, prefix), func() bool {
		return keyCount(t, st, prefix) == n
	})
}

// guardedPut writes key=val only if cmp holds, and reports whether it did.
func guardedPut(t testing.TB, st *store.Store, cmp store.Cmp, key, val string) bool {
	t.Helper()
	resp, err := st.Txn(ctxT(t)).If(cmp).Then(store.OpPut(key, val)).Commit()
	if err != nil {
		t.Fatalf("guarded put of %q: %v", key, err)
	}
	return resp.Succeeded
}
