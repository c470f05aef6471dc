package store_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/embedkv/store"
)

// Example opens a single-node store and runs the seed's key-value example.
func Example() {
	dir, _ := os.MkdirTemp("", "embedkv-example-")
	defer os.RemoveAll(dir)
	s, err := store.Open(store.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	put, _ := s.Put(ctx, "sample_key", "sample_value")
	fmt.Println("put at revision", put.Header.Revision)
	resp, _ := s.Get(ctx, "sample_key")
	fmt.Println(string(resp.Kvs[0].Value))
	s.Delete(ctx, "sample_key")
	resp, _ = s.Get(ctx, "sample_key")
	if len(resp.Kvs) == 0 {
		fmt.Println("not found")
	}
	// Output:
	// put at revision 2
	// sample_value
	// not found
}

func openExample() (*store.Store, func()) {
	dir, _ := os.MkdirTemp("", "embedkv-example-")
	s, err := store.Open(store.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	return s, func() { s.Close(); os.RemoveAll(dir) }
}

func ExampleStore_Get() {
	s, done := openExample()
	defer done()
	ctx := context.Background()
	for _, k := range []string{"app/a", "app/b", "app/c", "other"} {
		s.Put(ctx, k, "v-"+k)
	}
	resp, err := s.Get(ctx, "app/", store.WithPrefix(), store.WithLimit(2))
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		fmt.Printf("%s=%s (mod_revision %d)\n", kv.Key, kv.Value, kv.ModRevision)
	}
	fmt.Println("count:", resp.Count, "more:", resp.More)
	// Output:
	// app/a=v-app/a (mod_revision 2)
	// app/b=v-app/b (mod_revision 3)
	// count: 3 more: true
}

func ExampleStore_Txn() {
	s, done := openExample()
	defer done()
	ctx := context.Background()
	s.Put(ctx, "config/version", "1")

	// Compare-and-swap: only one writer moves the version from 1 to 2.
	resp, err := s.Txn(ctx).
		If(store.Compare(store.Value("config/version"), "=", "1")).
		Then(store.OpPut("config/version", "2"), store.OpGet("config/version")).
		Else(store.OpGet("config/version")).
		Commit()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("succeeded:", resp.Succeeded)
	fmt.Println("now:", string(resp.Responses[1].Get().Kvs[0].Value))

	resp, _ = s.Txn(ctx).
		If(store.Compare(store.Value("config/version"), "=", "1")).
		Then(store.OpPut("config/version", "2")).
		Else(store.OpGet("config/version")).
		Commit()
	fmt.Println("second try succeeded:", resp.Succeeded, "value:", string(resp.Responses[0].Get().Kvs[0].Value))
	// Output:
	// succeeded: true
	// now: 2
	// second try succeeded: false value: 2
}

func ExampleStore_Compact() {
	s, done := openExample()
	defer done()
	ctx := context.Background()
	first, _ := s.Put(ctx, "k", "v1")
	second, _ := s.Put(ctx, "k", "v2")

	old, _ := s.Get(ctx, "k", store.WithRev(first.Header.Revision))
	fmt.Println("at", first.Header.Revision, "->", string(old.Kvs[0].Value))

	s.Compact(ctx, second.Header.Revision)
	_, err := s.Get(ctx, "k", store.WithRev(first.Header.Revision))
	fmt.Println(err)
	// Output:
	// at 2 -> v1
	// store: required revision has been compacted
}

// ExampleStore_Members lists the members of a single-node cluster.
func ExampleStore_Members() {
	dir, _ := os.MkdirTemp("", "embedkv-example-")
	defer os.RemoveAll(dir)
	s, err := store.Open(store.Config{NodeID: "node1", Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	members, err := s.Members(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range members {
		fmt.Printf("%s voter=%v leader=%v\n", m.ID, m.Voter, m.IsLeader)
	}
	// Output:
	// node1 voter=true leader=true
}

// ExampleStore_Snapshot backs a store up and restores the backup into a new
// data directory, which opens with the same keys and revision.
func ExampleStore_Snapshot() {
	s, done := openExample()
	ctx := context.Background()
	s.Put(ctx, "config/a", "1")
	s.Put(ctx, "config/b", "2")
	var backup bytes.Buffer
	if err := s.Snapshot(ctx, &backup); err != nil {
		log.Fatal(err)
	}
	done()

	dir, _ := os.MkdirTemp("", "embedkv-restore-")
	defer os.RemoveAll(dir)
	cfg := store.Config{Dir: filepath.Join(dir, "data")}
	if err := store.Restore(&backup, cfg); err != nil {
		log.Fatal(err)
	}
	restored, err := store.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer restored.Close()
	resp, _ := restored.Get(ctx, "config/", store.WithPrefix())
	for _, kv := range resp.Kvs {
		fmt.Printf("%s=%s\n", kv.Key, kv.Value)
	}
	fmt.Println("revision", resp.Header.Revision)
	// Output:
	// config/a=1
	// config/b=2
	// revision 3
}
