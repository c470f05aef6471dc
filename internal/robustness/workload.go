package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	store "github.com/embedkv/store"
	"github.com/embedkv/store/internal/robustness/testcluster"
)

// Workload describes the clients' operations.
type Workload struct {
	// Prefix holds every key (range reads cover it).
	Prefix string
	// Keys is the key set (full keys, under Prefix).
	Keys []string
	// ClientsPerNode clients are bound to each node.
	ClientsPerNode int
	// OpTimeout bounds each operation (its context's deadline).
	OpTimeout time.Duration
	// Weights of put, get, delete, cas, range and serializable get, in
	// that order.
	Weights [6]int
}

// DefaultWorkload is 2 clients per node on 4 keys under prefix.
func DefaultWorkload(prefix string) Workload {
	w := Workload{Prefix: prefix, ClientsPerNode: 2, OpTimeout: 2 * time.Second, Weights: [6]int{25, 15, 10, 25, 15, 10}}
	for i := range 4 {
		w.Keys = append(w.Keys, fmt.Sprintf("%sk%d", prefix, i))
	}
	return w
}

// client is one workload client bound to a node.
type client struct {
	id, node int
	session  int
	last     *store.Store // the incarnation of the node last used
	w        *Workload
	rng      *rand.Rand
	seq      int
	seen     map[string]string // last value this client saw per key
	ops      []Op
}

func (c *client) next() Op {
	total := 0
	for _, w := range c.w.Weights {
		total += w
	}
	n := c.rng.IntN(total)
	kind := OpPut
	for i, w := range c.w.Weights {
		if n < w {
			kind = []OpKind{OpPut, OpGet, OpDelete, OpCAS, OpRange, OpSerialGet}[i]
			break
		}
		n -= w
	}
	op := Op{Client: c.id, Node: c.node, Session: c.session, Kind: kind, Key: c.w.Keys[c.rng.IntN(len(c.w.Keys))]}
	switch kind {
	case OpPut, OpCAS:
		c.seq++
		op.Value = fmt.Sprintf("c%d-%d", c.id, c.seq)
		if kind == OpCAS {
			op.Expect = c.seen[op.Key]
			if op.Expect == "" {
				op.Expect = "never-written"
			}
		}
	case OpRange:
		op.Key = c.w.Prefix
	}
	return op
}

// learn remembers values the client saw, so its cas operations often
// expect the current value.
func (c *client) learn(op *Op) {
	if op.Outcome != OK {
		return
	}
	switch {
	case op.Kind == OpPut, op.Kind == OpCAS && op.Succeeded:
		c.seen[op.Key] = op.Value
	case op.Kind == OpDelete:
		delete(c.seen, op.Key)
	default:
		for _, kv := range op.KVs {
			c.seen[kv.Key] = kv.Value
		}
	}
}

// run issues operations until ctx ends. While its node is down the client
// waits for it to come back.
func (c *client) run(ctx context.Context, cl *testcluster.Cluster, clk *Clock) {
	for ctx.Err() == nil {
		s := cl.Node(c.node)
		if s == nil {
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		if s != c.last {
			c.session++
			c.last = s
		}
		opCtx, cancel := context.WithTimeout(context.Background(), c.w.OpTimeout)
		op := Do(opCtx, clk, s, c.next())
		cancel()
		c.learn(&op)
		c.ops = append(c.ops, op)
		if op.Outcome != OK && isStopped(op.Err) {
			sleepCtx(ctx, 10*time.Millisecond) // the node is being killed
		}
	}
}

func isStopped(msg string) bool { return strings.Contains(msg, store.ErrStopped.Error()) }

// RunClients runs the workload's clients against c until ctx ends and
// returns every operation, in no particular order. seed derives each
// client's generator.
func RunClients(ctx context.Context, c *testcluster.Cluster, clk *Clock, w Workload, seed uint64) []Op {
	var clients []*client
	for node := range c.N() {
		for range w.ClientsPerNode {
			id := len(clients)
			clients = append(clients, &client{
				id: id, node: node, w: &w,
				rng:  rand.New(rand.NewPCG(seed, uint64(id))),
				seen: map[string]string{},
			})
		}
	}
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.run(ctx, c, clk)
		}()
	}
	wg.Wait()
	var ops []Op
	for _, cl := range clients {
		ops = append(ops, cl.ops...)
	}
	return ops
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// OpCounts tallies operations by outcome.
type OpCounts struct {
	Total, OK, Failed, Unknown int
	// Errors counts errors by "<kind class>/<outcome>/<ErrClass>".
	Errors map[string]int
}

// CountOps counts ops by outcome.
func CountOps(ops []Op) OpCounts {
	c := OpCounts{Errors: map[string]int{}}
	for i := range ops {
		c.Total++
		if op := &ops[i]; op.Outcome != OK {
			kind := "read"
			if op.Kind.IsWrite() {
				kind = "write"
			}
			c.Errors[kind+"/"+op.Outcome.String()+"/"+op.ErrClass]++
		}
		switch ops[i].Outcome {
		case OK:
			c.OK++
		case Failed:
			c.Failed++
		case Unknown:
			c.Unknown++
		}
	}
	return c
}

// LostWrites returns the acknowledged writes that created a revision but
// whose effect is not in h at that revision.
func LostWrites(ops []Op, h *History) []*Op {
	var lost []*Op
	for i := range ops {
		op := &ops[i]
		if !op.mutating() {
			continue
		}
		found := false
		if op.Rev <= h.Rev {
			for _, e := range h.Events[op.Rev] {
				if e.KV.Key == op.Key && e.Delete == (op.Kind == OpDelete) && (e.Delete || e.KV.Value == op.Value) {
					found = true
				}
			}
		}
		if !found {
			lost = append(lost, op)
		}
	}
	return lost
}
