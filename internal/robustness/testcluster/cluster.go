// Package testcluster runs an embedkv cluster of N nodes inside one test
// process, over real loopback TCP, with a fault-injecting proxy on every
// ordered pair of nodes.
//
// Node i reaches node j only through proxy (i→j): node i's
// store.Config.DialAddress(j) returns that proxy's address, for raft and node
// RPC alike, and the proxy forwards to node j's bind address. Each direction
// of traffic between two nodes (a Link) can be blocked (Refuse or
// Blackhole), delayed or made lossy, so the harness can build symmetric and
// one-way partitions, slow networks and flaky connections.
//
// Kill isolates a node (every link to and from it refuses) and then closes
// it; Restart reopens it from its directory with the same Config. In-process
// nodes cannot really crash: Close runs (raft shuts down, bolt is closed
// cleanly), so Kill does not lose un-synced data or leave torn files the way
// SIGKILL or a power cut would. Package proccluster runs nodes as separate
// processes for that (SIGKILL, SIGSTOP/SIGCONT).
//
// All randomness of the proxies (drop decisions, jitter) comes from
// generators derived from Options.Seed.
package testcluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	store "github.com/embedkv/store"
)

// Options configures New.
type Options struct {
	// Nodes is the cluster size (default 3).
	Nodes int
	// Seed seeds the proxies' randomness.
	Seed uint64
	// Config, if set, adjusts node i's Config after the harness filled in
	// NodeID, Dir, BindAddr, Peers, DialAddress, Logger and fast timers.
	Config func(i int, c *store.Config)
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
}

// Cluster is a running test cluster. Its methods are safe for concurrent
// use; fault operations (Kill, Restart, Partition, ...) are meant to be
// driven by one nemesis goroutine while clients use Node.
type Cluster struct {
	t    testing.TB
	n    int
	cfgs []store.Config
	nw   *network
	prox [][]*proxy // [from][to], nil on the diagonal
	wg   sync.WaitGroup

	mu      sync.Mutex // guards nodes, incs and retired
	nodes   []*store.Store
	incs    []int          // incarnation of each node: restarts so far
	retired []*store.Store // closed by Kill
}

// FastTimers sets the raft timers the harness uses: fast elections that
// still do not flap under -race on two cores.
func FastTimers(c *store.Config) {
	c.HeartbeatTimeout = 400 * time.Millisecond
	c.ElectionTimeout = 400 * time.Millisecond
	c.LeaderLeaseTimeout = 200 * time.Millisecond
}

// New starts a cluster, waits for a leader, and closes everything when the
// test ends.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	n := opts.Nodes
	if n == 0 {
		n = 3
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{t: t, n: n, nw: newNetwork(n, opts.Seed), nodes: make([]*store.Store, n), incs: make([]int, n)}
	t.Cleanup(c.Close)
	addrs, err := freeAddrs(n)
	if err != nil {
		t.Fatal(err)
	}
	c.prox = make([][]*proxy, n)
	for i := range n {
		c.prox[i] = make([]*proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			if c.prox[i][j], err = startProxy(c.nw, i, j, addrs[j], &c.wg); err != nil {
				t.Fatal(err)
			}
		}
	}
	peers := make([]store.Peer, n)
	for i := range n {
		peers[i] = store.Peer{ID: c.ID(i), Addr: addrs[i]}
	}
	base := t.TempDir()
	for i := range n {
		cfg := store.Config{
			NodeID:      c.ID(i),
			Dir:         filepath.Join(base, c.ID(i)),
			BindAddr:    addrs[i],
			Peers:       peers,
			Logger:      logger,
			DialAddress: c.dialer(i),
		}
		FastTimers(&cfg)
		if opts.Config != nil {
			opts.Config(i, &cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	for i := range n {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// dialer returns node i's DialAddress: every peer through its proxy.
func (c *Cluster) dialer(i int) func(string) (string, bool) {
	return func(peerID string) (string, bool) {
		switch j := c.index(peerID); {
		case j < 0:
			return "", false
		case j == i:
			// raft asks for its own ID too (EncodePeer on every RPC);
			// answering ok=false makes it log a warning each time.
			return c.cfgs[i].BindAddr, true
		default:
			return c.prox[i][j].addr(), true
		}
	}
}

// N returns the number of nodes.
func (c *Cluster) N() int { return c.n }

// ID returns node i's NodeID ("n1", "n2", ...).
func (c *Cluster) ID(i int) string { return fmt.Sprintf("n%d", i+1) }

func (c *Cluster) index(id string) int {
	var i int
	if _, err := fmt.Sscanf(id, "n%d", &i); err != nil || i < 1 || i > c.n {
		return -1
	}
	return i - 1
}

// Node returns node i, or nil while it is killed.
func (c *Cluster) Node(i int) *store.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// NodeInc returns node i and the number of its incarnation (1 for the
// first start, growing with each Restart), or nil and 0 while it is down.
func (c *Cluster) NodeInc(i int) (*store.Store, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] == nil {
		return nil, 0
	}
	return c.nodes[i], c.incs[i]
}

// Retired returns the handles Kill has closed, oldest first: calls on
// them must fail with store.ErrStopped.
func (c *Cluster) Retired() []*store.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*store.Store(nil), c.retired...)
}

// Config returns node i's Config.
func (c *Cluster) Config(i int) store.Config { return c.cfgs[i] }

// Kill isolates node i from every peer (existing connections are closed,
// new ones refused) and then closes it. Calls in flight on it fail. It is a
// no-op for a node that is down.
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	c.setIsolated(i, true)
	err := s.Close()
	c.mu.Lock()
	c.retired = append(c.retired, s)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close %s: %w", c.ID(i), err)
	}
	return nil
}

// Restart reopens node i from its directory with its Config and lets
// traffic to and from it flow again (partitions set with Partition or
// SetLink stay). It is a no-op for a running node.
func (c *Cluster) Restart(i int) error {
	if c.Node(i) != nil {
		return nil
	}
	var s *store.Store
	var err error
	// The node's port was free a moment ago, but an outgoing connection may
	// briefly hold it as its ephemeral port: retry for a while.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, err = store.Open(c.cfgs[i]); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restart %s: %w", c.ID(i), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.mu.Lock()
	c.nodes[i] = s
	c.incs[i]++
	c.mu.Unlock()
	c.setIsolated(i, false)
	return nil
}

func (c *Cluster) setIsolated(i int, on bool) {
	c.nw.mu.Lock()
	defer c.nw.mu.Unlock()
	c.nw.isolated[i] = on
	if on {
		for j := range c.n {
			if j != i {
				c.nw.closeBetweenLocked(i, j)
			}
		}
	}
}

// SetLink sets the fault state of the traffic from node from to node to. A
// link set to Refuse closes the connections between the two nodes at once.
func (c *Cluster) SetLink(from, to int, l Link) {
	c.nw.mu.Lock()
	defer c.nw.mu.Unlock()
	c.nw.links[from][to] = l
	if l.Mode == Refuse {
		c.nw.closeBetweenLocked(from, to)
	}
}

// SetAllLinks sets every link between distinct nodes to l.
func (c *Cluster) SetAllLinks(l Link) {
	for i := range c.n {
		for j := range c.n {
			if i != j {
				c.SetLink(i, j, l)
			}
		}
	}
}

// Partition blocks, both ways and with the given mode, all traffic between
// nodes of different groups. Nodes listed in no group form one more group.
func (c *Cluster) Partition(mode Mode, groups ...[]int) {
	group := make([]int, c.n)
	for i := range group {
		group[i] = -1
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for i := range c.n {
		for j := range c.n {
			if i != j && group[i] != group[j] {
				c.SetLink(i, j, Link{Mode: mode})
			}
		}
	}
}

// Heal lifts every partition, delay and drop (killed nodes stay isolated
// until restarted) and closes the connections that lost data to a
// blackhole.
func (c *Cluster) Heal() {
	c.nw.mu.Lock()
	defer c.nw.mu.Unlock()
	for i := range c.n {
		for j := range c.n {
			c.nw.links[i][j] = Link{}
		}
	}
	for pc := range c.nw.conns {
		if pc.isPoisoned() {
			pc.close()
		}
	}
}

// Leader returns the running node that believes it leads with the highest
// term, or -1.
func (c *Cluster) Leader() int {
	best, term := -1, uint64(0)
	for i := range c.n {
		if s := c.Node(i); s != nil {
			if st := s.Status(); st.RaftState == "Leader" && st.Term >= term {
				best, term = i, st.Term
			}
		}
	}
	return best
}

// WaitLeader polls until every running node names the same leader, which is
// running and leads, and returns its index.
func (c *Cluster) WaitLeader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	var why string
	for {
		l, reason := c.agreedLeader()
		if l >= 0 {
			return l, nil
		}
		why = reason
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no agreed leader after %v: %s", timeout, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Cluster) agreedLeader() (int, string) {
	leader := ""
	running := 0
	for i := range c.n {
		s := c.Node(i)
		if s == nil {
			continue
		}
		running++
		st := s.Status()
		if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
			return -1, fmt.Sprintf("%s sees leader %q", st.NodeID, st.LeaderID)
		}
		leader = st.LeaderID
	}
	if running == 0 {
		return -1, "no node is running"
	}
	l := c.index(leader)
	if l < 0 {
		return -1, fmt.Sprintf("unknown leader %q", leader)
	}
	s := c.Node(l)
	if s == nil {
		return -1, fmt.Sprintf("leader %q is not running", leader)
	}
	if st := s.Status(); st.RaftState != "Leader" {
		return -1, fmt.Sprintf("leader %q is %s", leader, st.RaftState)
	}
	return l, ""
}

// Close closes every node and proxy and waits for the proxies' goroutines.
// It is idempotent.
func (c *Cluster) Close() {
	var errs []error
	for i := range c.n {
		c.mu.Lock()
		s := c.nodes[i]
		c.nodes[i] = nil
		c.mu.Unlock()
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	c.nw.mu.Lock()
	c.nw.closed = true
	for pc := range c.nw.conns {
		pc.close()
	}
	c.nw.mu.Unlock()
	for _, row := range c.prox {
		for _, p := range row {
			if p != nil {
				_ = p.ln.Close()
			}
		}
	}
	c.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Errorf("closing the cluster: %v", err)
	}
}

// freeAddrs reserves n distinct loopback ports and releases them for the
// nodes to bind.
func freeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
