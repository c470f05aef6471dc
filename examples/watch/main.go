// Command watch runs the watch example of etcd's clientv3 tutorial on a
// three-node embedkv cluster inside this process: a watcher on one node sees
// the PUT and the DELETE written through another node, with their revisions.
//
//	go run ./examples/watch
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/embedkv/store/examples/internal/demo"
)

func main() {
	cluster, err := demo.Start(3)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	watcher, writer := cluster.Nodes[2], cluster.Nodes[0]

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The seed's watch(): watch sample_key, put, delete, print the events.
	ch := watcher.Watch(ctx, "sample_key")
	if _, err := writer.Put(ctx, "sample_key", "sample_value1"); err != nil {
		log.Fatal(err)
	}
	if _, err := writer.Delete(ctx, "sample_key"); err != nil {
		log.Fatal(err)
	}
	seen := 0
	for wresp := range ch {
		if err := wresp.Err(); err != nil {
			log.Fatal(err)
		}
		for _, ev := range wresp.Events {
			fmt.Println(ev)
			fmt.Printf("  %s sample_key at revision %d (version %d), seen on %s\n",
				ev.Type, ev.Kv.ModRevision, ev.Kv.Version, wresp.Header.MemberID)
			seen++
		}
		if seen == 2 {
			return
		}
	}
	log.Fatal("watch ended early")
}
