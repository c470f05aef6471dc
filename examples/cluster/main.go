// Command cluster runs an embedkv cluster secured with mutual TLS inside
// this process and changes its membership while it serves:
//
//		go run ./examples/cluster
//
//	 1. It makes a certificate authority and one certificate per node, each
//	    naming its node ID (see package peertls), in a temporary directory.
//	 2. Three nodes start from a config list (Config.Peers), every peer
//	    connection being TLS with client certificates required.
//	 3. A fourth node starts with Config.Join: the leader adds it as a
//	    non-voter and promotes it once it has caught up.
//	 4. One of the original nodes leaves (RemoveMember, then Close); the
//	    remaining three keep serving.
//
// Members are printed after each step; a value written at the start is read
// back through the newest node at the end. The temporary directory is
// removed on exit.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/embedkv/store"
	"github.com/embedkv/store/examples/internal/demo"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "embedkv-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca, err := newCA()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Step 2: three nodes from a config list.
	var peers []store.Peer
	for _, id := range []string{"node1", "node2", "node3"} {
		addr, err := demo.FreeAddr()
		if err != nil {
			return err
		}
		peers = append(peers, store.Peer{ID: id, Addr: addr})
	}
	nodes := map[string]*store.Store{}
	defer func() {
		for _, s := range nodes {
			s.Close()
		}
	}()
	for _, p := range peers {
		cfg, err := nodeConfig(dir, ca, p.ID, p.Addr)
		if err != nil {
			return err
		}
		cfg.Peers = peers
		if nodes[p.ID], err = store.Open(cfg); err != nil {
			return err
		}
	}
	node1 := nodes["node1"]
	if _, err := node1.Put(ctx, "greeting", "hello over mutual TLS"); err != nil {
		return err
	}
	if err := printMembers(ctx, "three nodes from Peers", node1, 3); err != nil {
		return err
	}

	// Step 3: a fourth node joins through the first two.
	addr, err := demo.FreeAddr()
	if err != nil {
		return err
	}
	cfg, err := nodeConfig(dir, ca, "node4", addr)
	if err != nil {
		return err
	}
	cfg.Join = []string{peers[0].Addr, peers[1].Addr}
	if nodes["node4"], err = store.Open(cfg); err != nil {
		return err
	}
	if err := printMembers(ctx, "node4 joined", node1, 4); err != nil {
		return err
	}

	// Step 4: node3 leaves.
	if err := node1.RemoveMember(ctx, "node3"); err != nil {
		return err
	}
	if err := nodes["node3"].Close(); err != nil {
		return err
	}
	delete(nodes, "node3")
	if err := printMembers(ctx, "node3 left", node1, 3); err != nil {
		return err
	}

	r, err := nodes["node4"].Get(ctx, "greeting")
	if err != nil {
		return err
	}
	fmt.Printf("node4 reads greeting = %q\n", r.Kvs[0].Value)
	return nil
}

// nodeConfig makes a node's certificate and returns its Config.
func nodeConfig(dir string, ca *certAuthority, id, addr string) (store.Config, error) {
	certDir := filepath.Join(dir, "certs", id)
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return store.Config{}, err
	}
	files, err := ca.writeNode(certDir, id)
	if err != nil {
		return store.Config{}, err
	}
	return store.Config{
		NodeID:   id,
		Dir:      filepath.Join(dir, "data", id),
		BindAddr: addr,
		TLS:      files,
	}, nil
}

// printMembers waits until every member is a voter and there are want of
// them (a joiner is promoted once it has caught up), then prints them.
func printMembers(ctx context.Context, step string, s *store.Store, want int) error {
	for {
		ms, err := s.Members(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, m := range ms {
			if m.Voter {
				voters++
			}
		}
		if len(ms) == want && voters == want {
			fmt.Printf("%s:\n", step)
			for _, m := range ms {
				role := "follower"
				if m.IsLeader {
					role = "leader"
				}
				fmt.Printf("  %-6s voter  %s\n", m.ID, role)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: members %+v: %w", step, ms, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
