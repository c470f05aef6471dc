// Command quickstart starts a three-node embedkv cluster inside this one
// process (real TCP on loopback, real raft logs in temporary directories) and
// runs the key-value example of etcd's clientv3 tutorial against it: put
// sample_key, get it, delete it, get it again.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/embedkv/store"
)

func main() {
	dir, err := os.MkdirTemp("", "embedkv-quickstart-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	nodes, err := startCluster(dir, 3)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Write through one node and read through another: any node serves
	// any call; followers forward writes to the leader.
	writer, reader := nodes[1], nodes[2]
	if err := kv(ctx, writer, reader); err != nil {
		log.Fatal(err)
	}
}

// kv is the seed's kv() with embedkv in place of clientv3.
func kv(ctx context.Context, writer, reader *store.Store) error {
	put, err := writer.Put(ctx, "sample_key", "sample_value")
	if err != nil {
		return err
	}
	fmt.Printf("put sample_key on %s at revision %d\n", put.Header.MemberID, put.Header.Revision)

	resp, err := reader.Get(ctx, "sample_key")
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		fmt.Println("not found")
	} else {
		kv := resp.Kvs[0]
		fmt.Println(string(kv.Value))
		fmt.Printf("  read on %s: create_revision %d, mod_revision %d, version %d\n",
			resp.Header.MemberID, kv.CreateRevision, kv.ModRevision, kv.Version)
	}

	del, err := writer.Delete(ctx, "sample_key")
	if err != nil {
		return err
	}
	fmt.Printf("deleted %d key at revision %d\n", del.Deleted, del.Header.Revision)

	resp, err = reader.Get(ctx, "sample_key")
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		fmt.Println("not found")
		return nil
	}
	fmt.Println(string(resp.Kvs[0].Value))
	return nil
}

// startCluster opens n nodes on free loopback ports, each with its own data
// directory under dir, and waits until they agree on a leader.
func startCluster(dir string, n int) ([]*store.Store, error) {
	var peers []store.Peer
	for i := 1; i <= n; i++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		peers = append(peers, store.Peer{ID: fmt.Sprintf("node%d", i), Addr: addr})
	}
	var nodes []*store.Store
	for _, p := range peers {
		s, err := store.Open(store.Config{
			NodeID:   p.ID,
			Dir:      filepath.Join(dir, p.ID),
			BindAddr: p.Addr,
			Peers:    peers,
		})
		if err != nil {
			for _, s := range nodes {
				s.Close()
			}
			return nil, err
		}
		nodes = append(nodes, s)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st := nodes[0].Status(); st.LeaderID != "" {
			fmt.Printf("cluster of %d nodes up, leader %s (term %d)\n", n, st.LeaderID, st.Term)
			return nodes, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range nodes {
		s.Close()
	}
	return nil, fmt.Errorf("no leader elected within 15s")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
