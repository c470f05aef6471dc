package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store"
)

// observer records what an Observe channel delivers.
type observer struct {
	mu   sync.Mutex
	seen []store.GetResponse
	done chan struct{}
}

// observe starts recording e.Observe(ctx); the recording ends, and done
// closes, when the channel closes.
func observe(ctx context.Context, e *Election) *observer {
	o := &observer{done: make(chan struct{})}
	ch := e.Observe(ctx)
	go func() {
		defer close(o.done)
		for r := range ch {
			o.mu.Lock()
			o.seen = append(o.seen, r)
			o.mu.Unlock()
		}
	}()
	return o
}

// last returns the value and create revision of the last observed leader.
func (o *observer) last() (string, int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seen) == 0 {
		return "", 0, false
	}
	kv := o.seen[len(o.seen)-1].Kvs[0]
	return string(kv.Value), kv.CreateRevision, true
}

// waitValue waits until the last observed leader value is want.
func (o *observer) waitValue(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("Observe to report %q", want), func() bool {
		got, _, ok := o.last()
		return ok && got == want
	})
}

// TestElection runs three candidates, one per node, and an observer on a
// fourth session: the first leader is seen, its Proclaim is seen, closing
// its node hands leadership to the next candidate once the lost session's
// lease expires, and Resign hands it to the last.
func TestElection(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxT(t)
	const pfx = "/election-test"

	type candidate struct {
		name string
		node int
		sess *Session
		e    *Election
		won  <-chan error
	}
	cands := make([]*candidate, 3)
	for i := range cands {
		sess := newSession(t, c.nodes[i], WithTTL(2))
		cd := &candidate{name: c.ids[i], node: i, sess: sess, e: NewElection(sess, pfx)}
		cd.won = result(func() error { return cd.e.Campaign(ctx, cd.name) })
		cands[i] = cd
	}
	waitKeys(t, c.nodes[0], pfx+"/", 3)

	// The queue order is the order of the keys' create revisions.
	resp, err := c.nodes[0].Get(ctx, pfx+"/", store.WithPrefix(), store.WithSort(store.SortByCreateRevision, store.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*candidate{}
	for _, cd := range cands {
		byName[cd.name] = cd
	}
	var queue []*candidate
	for _, kv := range resp.Kvs {
		queue = append(queue, byName[string(kv.Value)])
	}
	first, second, third := queue[0], queue[1], queue[2]
	if err := waitErr(t, first.won, 10*time.Second, "first leader's Campaign"); err != nil {
		t.Fatalf("Campaign(%s) = %v", first.name, err)
	}
	for _, cd := range queue[1:] {
		select {
		case err := <-cd.won:
			t.Fatalf("Campaign(%s) returned %v while %s leads", cd.name, err, first.name)
		default:
		}
	}

	// The observer lives on a node that stays up.
	obsNode := second.node
	obsSess := newSession(t, c.nodes[obsNode], WithTTL(2))
	obsElection := NewElection(obsSess, pfx)
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs := observe(octx, obsElection)

	t.Run("observe sees the leader", func(t *testing.T) {
		obs.waitValue(t, first.name, 5*time.Second)
		lr, err := obsElection.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(lr.Kvs[0].Key), first.e.Key(); got != want {
			t.Errorf("Leader key = %q, want %q", got, want)
		}
		if got, want := lr.Kvs[0].CreateRevision, first.e.Rev(); got != want {
			t.Errorf("Leader create revision = %d, want Rev() %d", got, want)
		}
	})

	t.Run("proclaim is observed", func(t *testing.T) {
		if err := first.e.Proclaim(ctx, first.name+"-v2"); err != nil {
			t.Fatal(err)
		}
		obs.waitValue(t, first.name+"-v2", 5*time.Second)
		if err := obsElection.Proclaim(ctx, "usurper"); !errors.Is(err, ErrElectionNotLeader) {
			t.Errorf("Proclaim by a non-candidate = %v, want ErrElectionNotLeader", err)
		}
	})

	t.Run("leader node closes, next candidate leads", func(t *testing.T) {
		start := time.Now()
		c.stop(first.node)
		waitClosed(t, first.sess.Done(), 5*time.Second, "Done of the closed node's session")
		if err := waitErr(t, second.won, 15*time.Second, "second candidate's Campaign"); err != nil {
			t.Fatalf("Campaign(%s) = %v", second.name, err)
		}
		obs.waitValue(t, second.name, 5*time.Second)
		t.Logf("takeover after %v", time.Since(start).Round(time.Millisecond))
		_, rev, _ := obs.last()
		if got, want := rev, second.e.Rev(); got != want {
			t.Errorf("observed leader create revision = %d, want %d", got, want)
		}
		if rev <= first.e.Rev() {
			t.Errorf("new leader's revision %d not above the old leader's %d (fencing)", rev, first.e.Rev())
		}
		select {
		case err := <-third.won:
			t.Fatalf("Campaign(%s) returned %v while %s leads", third.name, err, second.name)
		default:
		}
	})

	t.Run("resign hands over", func(t *testing.T) {
		if err := second.e.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		if err := waitErr(t, third.won, 10*time.Second, "third candidate's Campaign"); err != nil {
			t.Fatalf("Campaign(%s) = %v", third.name, err)
		}
		obs.waitValue(t, third.name, 5*time.Second)
		if err := second.e.Proclaim(ctx, "again"); !errors.Is(err, ErrElectionNotLeader) {
			t.Errorf("Proclaim after Resign = %v, want ErrElectionNotLeader", err)
		}
		if err := third.e.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "no leader", func() bool {
			_, err := obsElection.Leader(ctx)
			return errors.Is(err, ErrElectionNoLeader)
		})
	})

	ocancel()
	waitClosed(t, obs.done, 5*time.Second, "Observe channel")
}

// TestElectionObserveFromEmpty checks that Observe started before any
// candidate reports the first one, and that a Campaign whose context ends
// withdraws its candidacy.
func TestElectionObserveFromEmpty(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxT(t)
	const pfx = "/empty"
	obsE := NewElection(newSession(t, c.nodes[2], WithTTL(5)), pfx)
	if _, err := obsE.Leader(ctx); !errors.Is(err, ErrElectionNoLeader) {
		t.Fatalf("Leader with no candidate = %v, want ErrElectionNoLeader", err)
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs := observe(octx, obsE)

	leader := NewElection(newSession(t, c.nodes[0], WithTTL(5)), pfx)
	if err := leader.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	obs.waitValue(t, "a", 5*time.Second)

	// A second candidate gives up waiting.
	cctx, cancel := context.WithCancel(ctx)
	loser := NewElection(newSession(t, c.nodes[1], WithTTL(5)), pfx)
	lost := result(func() error { return loser.Campaign(cctx, "b") })
	waitKeys(t, c.nodes[2], pfx+"/", 2)
	cancel()
	if err := waitErr(t, lost, 10*time.Second, "cancelled Campaign"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Campaign = %v, want context.Canceled", err)
	}
	waitKeys(t, c.nodes[2], pfx+"/", 1)

	// Campaigning again with the same session keeps the place and
	// proclaims the new value.
	if err := leader.Campaign(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	obs.waitValue(t, "a2", 5*time.Second)

	ocancel()
	waitClosed(t, obs.done, 5*time.Second, "Observe channel")
}
