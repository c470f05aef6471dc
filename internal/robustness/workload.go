package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	store "github.com/embedkv/store"
)

// Workload describes the clients' operations.
type Workload struct {
	// Prefix holds every key (range reads cover it).
	Prefix string
	// Groups partitions the key set (full keys, under Prefix) into small
	// groups of at most MaxGroupSize keys. A multi-key txn touches the
	// keys of one group only, so the porcupine model can be partitioned
	// by group (see GroupModel).
	Groups [][]string
	// ClientsPerNode clients are bound to each node.
	ClientsPerNode int
	// OpTimeout bounds each operation (its context's deadline).
	OpTimeout time.Duration
	// Weights of put, get, delete, cas, range, serializable get and
	// multi-key txn, in that order.
	Weights [7]int
}

// Keys returns every key of the workload, group by group.
func (w *Workload) Keys() []string {
	var keys []string
	for _, g := range w.Groups {
		keys = append(keys, g...)
	}
	return keys
}

// DefaultWorkload is 2 clients per node on 2 groups of 3 keys under
// prefix.
func DefaultWorkload(prefix string) Workload {
	w := Workload{Prefix: prefix, ClientsPerNode: 2, OpTimeout: 2 * time.Second, Weights: [7]int{20, 15, 10, 20, 10, 10, 15}}
	for g := range 2 {
		var keys []string
		for k := range 3 {
			keys = append(keys, fmt.Sprintf("%sg%d/k%d", prefix, g, k))
		}
		w.Groups = append(w.Groups, keys)
	}
	return w
}

// client is one workload client bound to a node.
type client struct {
	id, node int
	w        *Workload
	keys     []string
	rng      *rand.Rand
	seq      int
	seen     map[string]KV // last version this client saw per key
	ops      []Op
}

func (c *client) value() string {
	c.seq++
	return fmt.Sprintf("c%d-%d", c.id, c.seq)
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
			kind = []OpKind{OpPut, OpGet, OpDelete, OpCAS, OpRange, OpSerialGet, OpTxn}[i]
			break
		}
		n -= w
	}
	op := Op{Client: c.id, Node: c.node, Kind: kind, Key: c.keys[c.rng.IntN(len(c.keys))]}
	switch kind {
	case OpPut, OpCAS:
		op.Value = c.value()
		if kind == OpCAS {
			op.Expect = c.seen[op.Key].Value
			if op.Expect == "" {
				op.Expect = "never-written"
			}
		}
	case OpRange:
		op.Key = c.w.Prefix
	case OpTxn:
		op.Txn = c.nextTxn()
		op.Key = op.Txn.Cmp
	}
	return op
}

// nextTxn draws a txn on the keys of one group, in random roles:
//
//	If(ModRevision(a) == last seen) Then(Put a, Put b[, Delete c]) Else(Get a, Get b[, Get c])
func (c *client) nextTxn() *TxnSpec {
	g := c.w.Groups[c.rng.IntN(len(c.w.Groups))]
	keys := append([]string(nil), g...)
	c.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	t := &TxnSpec{Cmp: keys[0], Gets: []string{keys[0]}}
	if kv, ok := c.seen[keys[0]]; ok {
		t.CmpRev, t.CmpValue = kv.Mod, kv.Value
	}
	t.Puts = append(t.Puts, KV{Key: keys[0], Value: c.value()})
	if len(keys) > 1 {
		t.Puts = append(t.Puts, KV{Key: keys[1], Value: c.value()})
		t.Gets = append(t.Gets, keys[1])
	}
	if len(keys) > 2 {
		if c.rng.IntN(2) == 0 {
			t.Deletes = append(t.Deletes, keys[2])
		}
		if c.rng.IntN(2) == 0 {
			t.Gets = append(t.Gets, keys[2])
		}
	}
	return t
}

// learn remembers versions the client saw, so its cas operations and txns
// often expect the current value or mod revision.
func (c *client) learn(op *Op) {
	if op.Outcome != OK {
		return
	}
	switch {
	case op.Kind == OpPut, op.Kind == OpCAS && op.Succeeded:
		c.seen[op.Key] = KV{Key: op.Key, Value: op.Value, Mod: op.Rev}
	case op.Kind == OpDelete:
		delete(c.seen, op.Key)
	case op.Kind == OpTxn && op.Succeeded:
		for _, p := range op.Txn.Puts {
			c.seen[p.Key] = KV{Key: p.Key, Value: p.Value, Mod: op.Rev}
		}
		for _, d := range op.Txn.Deletes {
			delete(c.seen, d)
		}
	case op.Kind == OpTxn:
		for i, k := range op.Txn.Gets {
			if i < len(op.TxnGets) {
				c.learnRead(k, op.TxnGets[i])
			}
		}
	case op.Kind == OpGet || op.Kind == OpSerialGet:
		c.learnRead(op.Key, op.KVs)
	default:
		for _, kv := range op.KVs {
			c.seen[kv.Key] = kv
		}
	}
}

func (c *client) learnRead(key string, kvs []KV) {
	if len(kvs) == 1 {
		c.seen[key] = kvs[0]
	} else {
		delete(c.seen, key)
	}
}

// run issues operations until ctx ends. While its node is down the client
// waits for it to come back.
func (c *client) run(ctx context.Context, t Target, clk *Clock) {
	var conn Conn
	inc := 0
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for ctx.Err() == nil {
		if conn == nil || t.Incarnation(c.node) != inc {
			if conn != nil {
				conn.Close()
			}
			if conn, inc = t.Conn(c.node); conn == nil {
				sleepCtx(ctx, 20*time.Millisecond)
				continue
			}
		}
		op := c.next()
		op.Session = inc
		op = conn.Do(clk, op, c.w.OpTimeout)
		c.learn(&op)
		c.ops = append(c.ops, op)
		if op.Outcome != OK && (isStopped(op.Err) || op.ErrClass == "conn") {
			sleepCtx(ctx, 10*time.Millisecond) // the node is being killed
		}
	}
}

func isStopped(msg string) bool { return strings.Contains(msg, store.ErrStopped.Error()) }

// RunClients runs the workload's clients against c until ctx ends and
// returns every operation, in no particular order. seed derives each
// client's generator.
func RunClients(ctx context.Context, c Target, clk *Clock, w Workload, seed uint64) []Op {
	var clients []*client
	for node := range c.N() {
		for range w.ClientsPerNode {
			id := len(clients)
			clients = append(clients, &client{
				id: id, node: node, w: &w, keys: w.Keys(),
				rng:  rand.New(rand.NewPCG(seed, uint64(id))),
				seen: map[string]KV{},
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
// whose effects are not all in h at that revision.
func LostWrites(ops []Op, h *History) []*Op {
	var lost []*Op
	for i := range ops {
		op := &ops[i]
		if !op.mutating() {
			continue
		}
		for _, ef := range op.effects() {
			found := false
			if op.Rev <= h.Rev {
				for _, e := range h.Events[op.Rev] {
					if e.KV.Key == ef.Key && e.Delete == ef.Delete && (e.Delete || e.KV.Value == ef.Value) {
						found = true
					}
				}
			}
			if !found {
				lost = append(lost, op)
				break
			}
		}
	}
	return lost
}

// effect is one key change of a write.
type effect struct {
	Key, Value string
	Delete     bool
}

// effects returns the key changes an acknowledged mutating write made.
func (o *Op) effects() []effect {
	switch o.Kind {
	case OpPut, OpCAS:
		return []effect{{Key: o.Key, Value: o.Value}}
	case OpDelete:
		return []effect{{Key: o.Key, Delete: true}}
	case OpTxn:
		var out []effect
		for _, p := range o.Txn.Puts {
			out = append(out, effect{Key: p.Key, Value: p.Value})
		}
		for j, d := range o.Txn.Deletes {
			if j < len(o.TxnDeleted) && o.TxnDeleted[j] > 0 {
				out = append(out, effect{Key: d, Delete: true})
			}
		}
		return out
	}
	return nil
}
