package robustness

import (
	"context"
	"fmt"
	"time"

	store "github.com/embedkv/store"
	"github.com/embedkv/store/internal/robustness/testcluster"
)

// Target is a cluster the clients and watchers run against: nodes in this
// process (testcluster) or in child processes (the process profile).
type Target interface {
	N() int
	ID(i int) string
	// Incarnation returns the number of node i's current incarnation
	// (it grows by one with each restart), or 0 while the node is down.
	Incarnation(i int) int
	// Conn returns a handle on node i's current incarnation and its
	// number, or nil while the node is down. Close it when done.
	Conn(i int) (Conn, int)
	// WaitLeader polls until the running nodes agree on a running leader.
	WaitLeader(timeout time.Duration) (int, error)
}

// Conn is a handle on one incarnation of a node.
type Conn interface {
	// Do runs op with the given timeout and returns its record (see Do),
	// Call and Return measured with clk.
	Do(clk *Clock, op Op, timeout time.Duration) Op
	// Watch watches prefix from revision from until ctx ends or the node
	// stops; each response is stamped with its receipt time.
	Watch(ctx context.Context, clk *Clock, prefix string, from int64) <-chan WatchResponse
	// Rev returns the node's revision after a linearizable read of Root.
	Rev(ctx context.Context) (int64, error)
	// History reads the committed history of prefix up to upTo from the
	// node's applied state (ReadHistory).
	History(ctx context.Context, prefix string, upTo int64) (*History, error)
	Close()
}

// inProc is a Target over a testcluster.
type inProc struct{ c *testcluster.Cluster }

func (p inProc) N() int                                        { return p.c.N() }
func (p inProc) ID(i int) string                               { return p.c.ID(i) }
func (p inProc) WaitLeader(timeout time.Duration) (int, error) { return p.c.WaitLeader(timeout) }

func (p inProc) Incarnation(i int) int {
	_, inc := p.c.NodeInc(i)
	return inc
}

func (p inProc) Conn(i int) (Conn, int) {
	s, inc := p.c.NodeInc(i)
	if s == nil {
		return nil, 0
	}
	return storeConn{s}, inc
}

// storeConn is a Conn on a store in this process.
type storeConn struct{ s *store.Store }

func (sc storeConn) Close() {}

func (sc storeConn) Do(clk *Clock, op Op, timeout time.Duration) Op {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Do(ctx, clk, sc.s, op)
}

func (sc storeConn) Watch(ctx context.Context, clk *Clock, prefix string, from int64) <-chan WatchResponse {
	out := make(chan WatchResponse)
	src := sc.s.Watch(ctx, prefix, store.WithPrefix(), store.WithRev(from))
	go func() {
		defer close(out)
		for resp := range src {
			r := WatchResponse{Time: clk.Now(), Events: watchEvents(resp), Canceled: resp.Canceled}
			if err := resp.Err(); err != nil {
				r.Err = err.Error()
			}
			select {
			case out <- r:
			case <-ctx.Done():
				for range src { // closes now that ctx ended
				}
				return
			}
		}
	}()
	return out
}

func (sc storeConn) Rev(ctx context.Context) (int64, error) {
	r, err := sc.s.Get(ctx, Root, store.WithPrefix(), store.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return r.Header.Revision, nil
}

func (sc storeConn) History(ctx context.Context, prefix string, upTo int64) (*History, error) {
	return ReadHistory(ctx, sc.s, prefix, upTo)
}

// settleTarget waits for an agreed leader and for every node to apply the
// same last revision, then reads the committed history of Root on every
// node and checks the replicas agree. It returns the first node's history.
func settleTarget(t Target) (*History, error) {
	if _, err := t.WaitLeader(30 * time.Second); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conns := make([]Conn, t.N())
	for i := range t.N() {
		c, _ := t.Conn(i)
		if c == nil {
			return nil, fmt.Errorf("%s is down", t.ID(i))
		}
		defer c.Close()
		conns[i] = c
	}
	var rev int64
	for {
		// A linearizable read on each node makes it apply everything
		// committed before; repeat until every node reports the same
		// revision (a write may still land while this runs).
		lo, hi := int64(1<<62), int64(0)
		for i, c := range conns {
			r, err := retryRev(ctx, c)
			if err != nil {
				return nil, fmt.Errorf("read on %s: %w", t.ID(i), err)
			}
			lo, hi = min(lo, r), max(hi, r)
		}
		if lo == hi {
			rev = hi
			break
		}
	}
	var first *History
	for i, c := range conns {
		h, err := c.History(ctx, Root, rev)
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", t.ID(i), err)
		}
		if first == nil {
			first = h
		} else if d := first.Diff(h); d != "" {
			return nil, fmt.Errorf("replicas disagree: %s vs %s: %s", t.ID(0), t.ID(i), d)
		}
	}
	return first, nil
}

// retryRev returns c's revision after a linearizable read, retrying while
// the cluster settles.
func retryRev(ctx context.Context, c Conn) (int64, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := c.Rev(rctx)
		cancel()
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return 0, err
		}
		time.Sleep(50 * time.Millisecond) // back off before retrying
	}
}
