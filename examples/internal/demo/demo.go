// Package demo starts small embedkv clusters inside one process for the
// example programs: free loopback ports, one temporary directory per node.
package demo

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/embedkv/store"
)

// Cluster is n nodes in this process.
type Cluster struct {
	Nodes []*store.Store
	dir   string
}

// Start opens n nodes named node1..noden on free loopback ports and waits
// until they agree on a leader.
func Start(n int) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "embedkv-demo-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	var peers []store.Peer
	for i := 1; i <= n; i++ {
		addr, err := FreeAddr()
		if err != nil {
			c.Close()
			return nil, err
		}
		peers = append(peers, store.Peer{ID: fmt.Sprintf("node%d", i), Addr: addr})
	}
	for _, p := range peers {
		s, err := store.Open(store.Config{
			NodeID:   p.ID,
			Dir:      filepath.Join(dir, p.ID),
			BindAddr: p.Addr,
			Peers:    peers,
		})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st := c.Nodes[0].Status(); st.LeaderID != "" {
			fmt.Printf("cluster of %d nodes up, leader %s (term %d)\n", n, st.LeaderID, st.Term)
			return c, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	return nil, fmt.Errorf("no leader elected within 15s")
}

// Close closes every node and removes the data directories.
func (c *Cluster) Close() {
	for _, s := range c.Nodes {
		s.Close()
	}
	os.RemoveAll(c.dir)
}

// FreeAddr returns a free loopback address (the port is released for the
// caller to bind).
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
