package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/embedkv/store"
)

// cluster is n embedkv nodes inside this process, each with its own data
// directory on disk and its own loopback TCP port.
type cluster struct {
	dir   string
	cfgs  []store.Config
	nodes []*store.Store // nil while a node is stopped
	// pin, when >= 0, binds every client to that node (node ignores first
	// and g); -1 spreads them round-robin.
	pin int
}

// pinned returns a copy of c whose clients all use node i.
func (c *cluster) pinned(i int) *cluster {
	p := *c
	p.pin = i
	return &p
}

// freeAddrs reserves n distinct loopback ports and releases them for the
// nodes to bind.
func freeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var addrs []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// startCluster opens n nodes under dir (n = 1: a single node without Peers)
// and waits until they agree on a leader.
func startCluster(ctx context.Context, dir string, n int, nofsync bool, logger *slog.Logger) (*cluster, error) {
	addrs, err := freeAddrs(n)
	if err != nil {
		return nil, err
	}
	var peers []store.Peer
	if n > 1 {
		for i, a := range addrs {
			peers = append(peers, store.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
		}
	}
	c := &cluster{dir: dir, nodes: make([]*store.Store, n), pin: -1}
	for i := 0; i < n; i++ {
		c.cfgs = append(c.cfgs, store.Config{
			NodeID:        fmt.Sprintf("n%d", i+1),
			Dir:           filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			BindAddr:      addrs[i],
			Peers:         peers,
			Logger:        logger,
			UnsafeNoFsync: nofsync,
		})
	}
	for i := range c.cfgs {
		if err := c.start(i); err != nil {
			c.close()
			return nil, err
		}
	}
	if _, err := c.waitLeader(ctx, 30*time.Second); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// start opens node i from its directory.
func (c *cluster) start(i int) error {
	s, err := store.Open(c.cfgs[i])
	if err != nil {
		return fmt.Errorf("open %s: %w", c.cfgs[i].NodeID, err)
	}
	c.nodes[i] = s
	return nil
}

// stop closes node i.
func (c *cluster) stop(i int) error {
	s := c.nodes[i]
	c.nodes[i] = nil
	if s == nil {
		return nil
	}
	return s.Close()
}

// close closes every running node and removes the data directory.
func (c *cluster) close() {
	for i := range c.nodes {
		if err := c.stop(i); err != nil {
			fmt.Fprintf(os.Stderr, "close %s: %v\n", c.cfgs[i].NodeID, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		fmt.Fprintf(os.Stderr, "remove %s: %v\n", c.dir, err)
	}
}

// waitLeader polls Status until every running node names the same leader
// and that leader is running and says it leads; it returns its index.
func (c *cluster) waitLeader(ctx context.Context, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		leader, agree := "", true
		for _, s := range c.nodes {
			if s == nil {
				continue
			}
			id := s.Status().LeaderID
			if id == "" || (leader != "" && id != leader) {
				agree = false
				last = fmt.Sprintf("node %s sees leader %q", s.Status().NodeID, id)
				break
			}
			leader = id
		}
		if agree && leader != "" {
			for i, s := range c.nodes {
				if s != nil && c.cfgs[i].NodeID == leader && s.Status().RaftState == "Leader" {
					return i, nil
				}
			}
			last = fmt.Sprintf("leader %s is not running or not leading", leader)
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no leader after %v: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// follower returns the index of a running node other than the leader (the
// leader itself in a 1-node cluster).
func (c *cluster) follower(leader int) int {
	for k := 1; k < len(c.nodes); k++ {
		i := (leader + k) % len(c.nodes)
		if c.nodes[i] != nil {
			return i
		}
	}
	return leader
}

// waitApplied waits until every running node has applied at least rev, so
// serializable reads and watchers everywhere see the same data.
func (c *cluster) waitApplied(ctx context.Context, rev int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		behind := ""
		for _, s := range c.nodes {
			if s == nil {
				continue
			}
			if st := s.Status(); st.Revision < rev {
				behind = fmt.Sprintf("%s at revision %d < %d", st.NodeID, st.Revision, rev)
				break
			}
		}
		if behind == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not applied after %v: %s", timeout, behind)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// node is the node client g runs on: node (first+g) mod n.
func (c *cluster) node(first, g int) *store.Store {
	if c.pin >= 0 {
		return c.nodes[c.pin]
	}
	return c.nodes[(first+g)%len(c.nodes)]
}

// maxTerm is the highest raft term any running node has seen.
func (c *cluster) maxTerm() uint64 {
	var t uint64
	for _, s := range c.nodes {
		if s != nil {
			t = max(t, s.Status().Term)
		}
	}
	return t
}
