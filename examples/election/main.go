// Command election runs a leader election on a three-node embedkv cluster
// inside this process, with the concurrency package (etcd's
// clientv3/concurrency recipes).
//
//	go run ./examples/election
//
// Every node runs a campaigner: a session with a 2 s TTL on its own node
// and an Election on "/election-demo", campaigning with the node's name. An
// observer prints each leadership transition as it happens. Once the first
// leader is elected, its node is closed: its session can no longer be kept
// alive, the lease expires, the leader's key vanishes and the next candidate
// takes over, which the observer reports. Then everything shuts down
// cleanly. Each line carries the time since the program started.
//
// Raft's warnings about the closed peer are silenced (the default logger is
// raised to errors): closing it is the point of the demonstration.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/embedkv/store"
	"github.com/embedkv/store/concurrency"
	"github.com/embedkv/store/examples/internal/demo"
)

const (
	prefix     = "/election-demo"
	sessionTTL = 2 // seconds
)

var start = time.Now()

// say prints a line with the time since the program started.
func say(format string, a ...any) {
	fmt.Printf("[%6.3fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	cluster, err := demo.Start(3)
	if err != nil {
		return err
	}
	defer cluster.Close()
	names := make([]string, len(cluster.Nodes))
	for i, n := range cluster.Nodes {
		names[i] = n.Status().NodeID
	}

	// Deferred calls run in reverse: cancel the goroutines, wait for them
	// (they resign and close their sessions), then close the nodes.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The observer reports each new leader on leaders.
	leaders := make(chan string, 8)
	wg.Add(1)
	go func() {
		defer wg.Done()
		observe(ctx, cluster.Nodes, names, leaders)
	}()

	for i, node := range cluster.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			campaign(ctx, node, names[i])
		}()
	}

	timeout := time.After(15 * time.Second)
	var first string
	select {
	case first = <-leaders:
	case <-timeout:
		cancel()
		return errors.New("no leader elected")
	}
	for i, name := range names {
		if name == first {
			say("closing %s", name)
			if err := cluster.Nodes[i].Close(); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case next := <-leaders:
			if next == first {
				continue
			}
			say("%s took over from %s; shutting down", next, first)
			cancel()
			return nil
		case <-timeout:
			cancel()
			return errors.New("no takeover")
		}
	}
}

// campaign runs one node's candidate: it campaigns until it leads, then
// leads until ctx ends (it resigns) or its session is lost (its node
// closed, say).
func campaign(ctx context.Context, node *store.Store, name string) {
	sess, err := concurrency.NewSession(node, concurrency.WithTTL(sessionTTL))
	if err != nil {
		say("%s: session: %v", name, err)
		return
	}
	defer sess.Close() // revokes the lease; fails harmlessly if the node is closed
	e := concurrency.NewElection(sess, prefix)
	say("%s campaigning", name)
	if err := e.Campaign(ctx, name); err != nil {
		switch {
		case ctx.Err() != nil: // shutting down
		case errors.Is(err, store.ErrStopped):
			// The observer can report this candidate leading (its key is
			// the oldest) a moment before Campaign itself returns.
			say("%s: node closed before Campaign returned", name)
		default:
			say("%s: campaign: %v", name, err)
		}
		return
	}
	say("%s won the election (key %s, rev %d)", name, e.Key(), e.Rev())
	select {
	case <-ctx.Done():
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := e.Resign(rctx); err != nil {
			say("%s: resign: %v", name, err)
		}
	case <-sess.Done():
		say("%s lost its session: no longer leader", name)
	}
}

// observe prints each leadership transition and sends the new leader's
// name on leaders. It observes through a node that is up: when that node
// closes, it re-attaches through the next one, as a client fails over to
// another endpoint.
func observe(ctx context.Context, nodes []*store.Store, names []string, leaders chan<- string) {
	var lastKey string
	var lastRev int64
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(nodes) {
		sess, err := concurrency.NewSession(nodes[i], concurrency.WithTTL(sessionTTL), concurrency.WithContext(ctx))
		if err != nil {
			continue // that node is closed; try the next one
		}
		say("observer watching through %s", names[i])
		e := concurrency.NewElection(sess, prefix)
		for resp := range e.Observe(ctx) {
			kv := resp.Kvs[0]
			if string(kv.Key) == lastKey && kv.CreateRevision == lastRev {
				continue // the same leader proclaimed again
			}
			lastKey, lastRev = string(kv.Key), kv.CreateRevision
			say("leader: %s (rev %d)", kv.Value, kv.CreateRevision)
			select {
			case leaders <- string(kv.Value):
			case <-ctx.Done():
			}
		}
		if err := sess.Close(); err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrStopped) {
			fmt.Fprintln(os.Stderr, "observer session:", err)
		}
	}
}
