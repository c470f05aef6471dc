package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
)

// Proposal coalescing.
//
// hashicorp/raft costs a roughly fixed amount of CPU per log entry (encode,
// store, replicate, dispatch to the FSM): about 17k entries/s on two cores.
// The leader therefore packs the client writes waiting at the same moment,
// its own and those forwarded by followers, into one entry of type
// cmdBatch. The FSM applies the packed requests in order, each with its own
// revision exactly as if it had its own entry, and hands each result to the
// node that proposed it (waiters are keyed by the proposer's boot ID and
// sequence number, not by raft index).
//
// There is no timer: one goroutine (runCoalescer) proposes whatever is
// queued as soon as raft takes the previous entry. raft.Apply blocks until
// the leader loop accepts an entry, so the busier raft is, the more each
// entry carries, and an idle node proposes a lone write at once, unwrapped.

// cmdBatch is a raft entry holding several cmdRequest commands: the type
// byte, then for each command its length as a uvarint and its bytes.
const cmdBatch byte = 2

// Bounds on one batch entry.
const (
	maxBatchCount = 1024
	maxBatchBytes = 4 << 20
)

// encodeBatch packs cmds (each a complete command) into one cmdBatch entry.
func encodeBatch(cmds [][]byte) []byte {
	n := 1
	for _, c := range cmds {
		n += binary.MaxVarintLen32 + len(c)
	}
	out := make([]byte, 1, n)
	out[0] = cmdBatch
	for _, c := range cmds {
		out = binary.AppendUvarint(out, uint64(len(c)))
		out = append(out, c...)
	}
	return out
}

// splitBatch returns the commands of a cmdBatch entry (sub-slices of b).
// Every error wraps ErrCorrupt.
func splitBatch(b []byte) ([][]byte, error) {
	if len(b) < 1 || b[0] != cmdBatch {
		return nil, fmt.Errorf("%w: not a batch entry", ErrCorrupt)
	}
	rest := b[1:]
	var cmds [][]byte
	for len(rest) > 0 {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, fmt.Errorf("%w: batch entry: bad length", ErrCorrupt)
		}
		if len(cmds) == maxBatchCount {
			return nil, fmt.Errorf("%w: batch entry holds more than %d commands", ErrCorrupt, maxBatchCount)
		}
		cmds = append(cmds, rest[w:w+int(n)])
		rest = rest[w+int(n):]
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%w: empty batch entry", ErrCorrupt)
	}
	return cmds, nil
}

// coalescer queues client writes on the leader for runCoalescer.
type coalescer struct {
	kick chan struct{} // capacity 1: "the queue is not empty"

	// mu guards queue. Lock order: leaf.
	mu    sync.Mutex
	queue []*queuedCmd
}

type queuedCmd struct {
	cmd  []byte
	done chan proposeResult // capacity 1
}

type proposeResult struct {
	index uint64
	err   error
}

func newCoalescer() *coalescer { return &coalescer{kick: make(chan struct{}, 1)} }

// proposeCoalesced gets cmd (a client write) committed through the
// coalescer and returns its raft index, with applyLocal's errors: a retry
// error when it was certainly not proposed (this node is not the leader),
// ErrUnknownOutcome when it may have been.
func (s *Store) proposeCoalesced(ctx context.Context, cmd []byte) (uint64, error) {
	q := &queuedCmd{cmd: cmd, done: make(chan proposeResult, 1)}
	c := s.coalescer
	c.mu.Lock()
	c.queue = append(c.queue, q)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	select {
	case r := <-q.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	case <-s.stopCh:
		return 0, fmt.Errorf("%w: %w", ErrStopped, ErrUnknownOutcome)
	}
}

// coalescable reports the client writes that go through the coalescer.
// Internal entries (no-ops, compactions, lease expiry and checkpoints) and
// renewals (checked against the lessor just before proposing) go alone.
func coalescable(k reqKind) bool {
	switch k {
	case reqPut, reqDelete, reqTxn, reqLeaseGrant, reqLeaseRevoke:
		return true
	}
	return false
}

// take removes and returns the longest prefix of the queue that fits one
// entry (at least one command).
func (c *coalescer) take() []*queuedCmd {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, size := 0, 0
	for n < len(c.queue) && n < maxBatchCount {
		l := len(c.queue[n].cmd) + binary.MaxVarintLen32
		if n > 0 && size+l > maxBatchBytes {
			break
		}
		size += l
		n++
	}
	out := make([]*queuedCmd, n)
	copy(out, c.queue)
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:]) // the proposed commands (up to 4 MiB) must not stay reachable
	c.queue = c.queue[:rest]
	if len(c.queue) > 0 {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return out
}

// runCoalescer proposes queued writes until Close. It waits only for raft
// to accept each entry; a goroutine per entry waits for its commit.
func (s *Store) runCoalescer() {
	c := s.coalescer
	for {
		select {
		case <-s.stopCh:
			s.failQueued()
			return
		case <-c.kick:
		}
		batch := c.take()
		if len(batch) == 0 {
			continue
		}
		entry := batch[0].cmd
		if len(batch) > 1 {
			cmds := make([][]byte, len(batch))
			for i, q := range batch {
				cmds[i] = q.cmd
			}
			entry = encodeBatch(cmds)
		}
		f := s.raft.Apply(entry, 0)
		if !s.goFunc(func() { finishBatch(batch, f.Error(), f.Index) }) {
			finishBatch(batch, f.Error(), f.Index) // closing: raft answers at once
		}
	}
}

// finishBatch tells every write of an entry how it ended.
func finishBatch(batch []*queuedCmd, err error, index func() uint64) {
	r := proposeResult{}
	if err != nil {
		r.err = mapRaftError(err)
	} else {
		r.index = index()
	}
	for _, q := range batch {
		q.done <- r
	}
}

// failQueued fails the writes still queued at Close: never proposed.
func (s *Store) failQueued() {
	c := s.coalescer
	c.mu.Lock()
	queue := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, q := range queue {
		q.done <- proposeResult{err: ErrStopped}
	}
}
