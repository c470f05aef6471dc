package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedkv/store/lease"
)

// testLogger returns a logger that prints warnings and errors only when
// EMBEDKV_TEST_LOG is set, so failing runs can be diagnosed.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("EMBEDKV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(discard{}, nil))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// freeAddrs reserves n distinct loopback ports and releases them for the
// nodes to bind.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var ls []net.Listener
	var addrs []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}

// testCluster is n nodes over real loopback TCP with real bolt files.
type testCluster struct {
	t     testing.TB
	cfgs  []Config
	nodes []*Store // nil while a node is stopped
}

// fastTimers makes elections quick enough for tests while staying stable
// under -race on two cores.
func fastTimers(c *Config) {
	c.HeartbeatTimeout = 400 * time.Millisecond
	c.ElectionTimeout = 400 * time.Millisecond
	c.LeaderLeaseTimeout = 200 * time.Millisecond
}

// newCluster starts n nodes (n = 1 gives a single node without Peers) and
// closes them when the test ends. tweak, if not nil, adjusts each Config.
func newCluster(t testing.TB, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	addrs := freeAddrs(t, n)
	var peers []Peer
	if n > 1 {
		for i, a := range addrs {
			peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
		}
	}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		cfg := Config{
			NodeID:   fmt.Sprintf("n%d", i+1),
			Dir:      filepath.Join(base, fmt.Sprintf("n%d", i+1)),
			BindAddr: addrs[i],
			Peers:    peers,
			Logger:   testLogger(t),
		}
		fastTimers(&cfg)
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.nodes = make([]*Store, n)
	for i := range c.cfgs {
		c.start(i)
	}
	t.Cleanup(c.closeAll)
	c.waitLeader()
	return c
}

// start opens node i from its directory.
func (c *testCluster) start(i int) *Store {
	c.t.Helper()
	s, err := Open(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("Open(%s): %v", c.cfgs[i].NodeID, err)
	}
	c.nodes[i] = s
	return s
}

// stop closes node i.
func (c *testCluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("Close(%s): %v", c.cfgs[i].NodeID, err)
	}
	c.nodes[i] = nil
}

func (c *testCluster) closeAll() {
	for i, s := range c.nodes {
		if s != nil {
			if err := s.Close(); err != nil {
				c.t.Errorf("Close(%s): %v", c.cfgs[i].NodeID, err)
			}
			c.nodes[i] = nil
		}
	}
}

// waitLeader polls until the running nodes agree on a leader that is one of
// them, and returns its index.
func (c *testCluster) waitLeader() int {
	c.t.Helper()
	var last string
	ok := poll(c.t, 15*time.Second, func() bool {
		leader := ""
		for _, s := range c.nodes {
			if s == nil {
				continue
			}
			st := s.Status()
			if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
				last = fmt.Sprintf("%s sees leader %q", st.NodeID, st.LeaderID)
				return false
			}
			leader = st.LeaderID
		}
		for i, s := range c.nodes {
			if s != nil && c.cfgs[i].NodeID == leader {
				return true
			}
		}
		last = fmt.Sprintf("leader %q is not running", leader)
		return false
	})
	if !ok {
		c.t.Fatalf("no agreed leader: %s", last)
	}
	for i, s := range c.nodes {
		if s != nil && s.Status().RaftState == "Leader" {
			return i
		}
	}
	return c.waitLeader()
}

// follower returns the index of a running node that is not the leader.
func (c *testCluster) follower() int {
	l := c.waitLeader()
	for i, s := range c.nodes {
		if s != nil && i != l {
			return i
		}
	}
	c.t.Fatal("no running follower")
	return -1
}

// poll calls cond until it returns true or the timeout passes.
func poll(t testing.TB, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustPut writes k=v. On a multi-node cluster an election caused by a load
// spike can make a write's outcome unknown; the put is idempotent, so it is
// retried then (the revision returned is the retry's).
func mustPut(t testing.TB, s *Store, k, v string, opts ...OpOption) *PutResponse {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r, err := s.Put(ctxT(t), k, v, opts...)
		if err == nil {
			return r
		}
		if attempt < 3 && (errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrNoLeader)) {
			t.Logf("Put(%q) attempt %d: %v; retrying", k, attempt, err)
			continue
		}
		t.Fatalf("Put(%q): %v", k, err)
	}
}

// putExact writes k=v once and fails the test on any error: for tests that
// depend on exact revisions, where a retried unknown-outcome write could be
// applied twice.
func putExact(t testing.TB, s *Store, k, v string) *PutResponse {
	t.Helper()
	r, err := s.Put(ctxT(t), k, v)
	if err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
	return r
}

func mustGet(t testing.TB, s *Store, k string, opts ...OpOption) *GetResponse {
	t.Helper()
	r, err := s.Get(ctxT(t), k, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", k, err)
	}
	return r
}

// value returns the value of a single-key Get, or "<absent>".
func value(r *GetResponse) string {
	if len(r.Kvs) == 0 {
		return "<absent>"
	}
	return string(r.Kvs[0].Value)
}

var errCanceled = context.Canceled

func contextWithCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

// newTestFSM returns an FSM on its own, for tests that drive ApplyBatch.
func newTestFSM(t testing.TB, bootID uint64, w *waiters) *fsm {
	lessor := lease.New(lease.Config{Clock: lease.RealClock()})
	t.Cleanup(lessor.Close)
	return newFSM(testLogger(t), bootID, w, newLeaseTable(lessor))
}
