package concurrency_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/embedkv/store"
	"github.com/embedkv/store/concurrency"
)

// openStore opens a single-node store in a temporary directory; the
// returned function closes it and removes the directory.
func openStore() (*store.Store, func()) {
	dir, err := os.MkdirTemp("", "concurrency-example-")
	if err != nil {
		log.Fatal(err)
	}
	st, err := store.Open(store.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	return st, func() {
		st.Close()
		os.RemoveAll(dir)
	}
}

func ExampleMutex() {
	st, done := openStore()
	defer done()
	ctx := context.Background()

	// Two contenders, each with its own session.
	s1, err := concurrency.NewSession(st, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(st, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	defer s2.Close()
	m1 := concurrency.NewMutex(s1, "/my-lock")
	m2 := concurrency.NewMutex(s2, "/my-lock")

	if err := m1.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("acquired lock for s1")

	if err := m2.TryLock(ctx); errors.Is(err, concurrency.ErrLocked) {
		fmt.Println("s2 cannot take the lock:", err)
	}

	// Only the owner's guarded write goes through.
	for _, m := range []*concurrency.Mutex{m1, m2} {
		resp, err := st.Txn(ctx).If(m.IsOwner()).Then(store.OpPut("/guarded", "x")).Commit()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("guarded write succeeded:", resp.Succeeded)
	}

	// s2 waits; a Mutex is not for concurrent use, so m2 is left to the
	// waiting goroutine until Lock returns.
	locked := make(chan error)
	go func() { locked <- m2.Lock(ctx) }()

	if err := m1.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("released lock for s1")
	if err := <-locked; err != nil {
		log.Fatal(err)
	}
	fmt.Println("acquired lock for s2")
	if err := m2.Unlock(ctx); err != nil {
		log.Fatal(err)
	}

	// Output:
	// acquired lock for s1
	// s2 cannot take the lock: concurrency: mutex locked by another session
	// guarded write succeeded: true
	// guarded write succeeded: false
	// released lock for s1
	// acquired lock for s2
}

func ExampleElection() {
	st, done := openStore()
	defer done()
	ctx := context.Background()

	s1, err := concurrency.NewSession(st, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(st, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	defer s2.Close()
	e1 := concurrency.NewElection(s1, "/my-election")
	e2 := concurrency.NewElection(s2, "/my-election")

	if err := e1.Campaign(ctx, "e1"); err != nil {
		log.Fatal(err)
	}
	won := make(chan error)
	go func() { won <- e2.Campaign(ctx, "e2") }()

	leader, err := e2.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", string(leader.Kvs[0].Value))

	if err := e1.Proclaim(ctx, "e1, updated"); err != nil {
		log.Fatal(err)
	}
	leader, err = e2.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", string(leader.Kvs[0].Value))

	if err := e1.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	if err := <-won; err != nil {
		log.Fatal(err)
	}
	leader, err = e1.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", string(leader.Kvs[0].Value))
	fmt.Println("e1 proclaims:", e1.Proclaim(ctx, "e1 again"))

	// Output:
	// leader: e1
	// leader: e1, updated
	// leader: e2
	// e1 proclaims: concurrency: election not leader
}
