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
	"time"

	"github.com/embedkv/store"
	"github.com/embedkv/store/examples/internal/demo"
)

func main() {
	cluster, err := demo.Start(3)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	nodes := cluster.Nodes

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
