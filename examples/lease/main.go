// Command lease runs the lease example of etcd's clientv3 tutorial on a
// three-node embedkv cluster inside this process: grant a 10 s lease, keep
// it alive (printing each renewal with its time, lease ID and TTL), attach
// sample_key_lease to it and print the revision of that write. After
// -duration it stops the keepalive, revokes the lease and shows the key is
// gone.
//
//	go run ./examples/lease
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/embedkv/store"
	"github.com/embedkv/store/examples/internal/demo"
)

func main() {
	duration := flag.Duration("duration", 12*time.Second, "how long to keep the lease alive")
	flag.Parse()

	cluster, err := demo.Start(3)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	node := cluster.Nodes[1] // any node; a follower forwards to the leader

	// The seed's lease(): grant, keepalive, put with the lease.
	leaseResp, err := node.Grant(context.TODO(), 10)
	if err != nil {
		log.Fatal(err)
	}
	leaseID := leaseResp.ID
	fmt.Printf("ttl %d\n", leaseResp.TTL)

	ctx, cancel := context.WithCancel(context.Background())
	keepRespChan, err := node.KeepAlive(ctx, leaseID)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for keepResp := range keepRespChan {
			fmt.Printf("keepalive ok time:%d id:%d, ttl:%d\n", time.Now().Unix(), keepResp.ID, keepResp.TTL)
		}
		fmt.Println("keepalive stopped")
	}()

	putResp, err := node.Put(context.TODO(), "sample_key_lease", "", store.WithLease(leaseID))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("put ok, revision", putResp.Header.Revision)

	time.Sleep(*duration)
	cancel()
	<-done
	if _, err := node.Revoke(context.TODO(), leaseID); err != nil {
		log.Fatal(err)
	}
	get, err := node.Get(context.TODO(), "sample_key_lease")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("lease revoked; sample_key_lease has %d value(s)\n", len(get.Kvs))
}
