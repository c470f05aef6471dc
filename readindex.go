package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// readIndexer serves linearizable reads with the read-index protocol, which
// hashicorp/raft does not provide itself:
//
//  1. The leader must have applied an entry of its current term (the no-op
//     request watchLeadership proposes on election), so its commit index
//     covers every entry a previous leader may have acknowledged, and every
//     later entry in the term reaches the FSM (no raft-internal entries
//     follow), so waiting for the FSM to reach an index terminates.
//  2. It records its commit index C, then confirms it is still leader with
//     one heartbeat round to a quorum (VerifyLeader). Reads that arrive while
//     a round is in flight share the next round: one quorum round serves
//     every read waiting at that moment.
//  3. The reader waits until its node's FSM has applied C, then reads a
//     view that includes it (fsm.read). A follower gets C from the leader
//     over node RPC.
type readIndexer struct {
	s *Store

	// mu guards pending and running. Lock order: leaf.
	mu      sync.Mutex
	pending []chan readIndexResult
	running bool
}

type readIndexResult struct {
	index uint64
	err   error
}

// errLeaderNotReady: this node leads but has not applied an entry of its
// term yet. Retryable.
var errLeaderNotReady = errors.New("store: leader has not applied an entry of its term yet")

// readIndex returns, on the leader, an index that the FSM has applied and
// that covers every write acknowledged before the call.
func (ri *readIndexer) readIndex(ctx context.Context) (uint64, error) {
	ch := make(chan readIndexResult, 1)
	ri.mu.Lock()
	ri.pending = append(ri.pending, ch)
	if !ri.running {
		if !ri.s.goFunc(ri.loop) {
			ri.mu.Unlock()
			return 0, ErrStopped
		}
		ri.running = true
	}
	ri.mu.Unlock()
	var r readIndexResult
	select {
	case r = <-ch:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-ri.s.stopCh:
		return 0, ErrStopped
	}
	if r.err != nil {
		return 0, r.err
	}
	if err := ri.s.fsm.waitApplied(ctx, r.index, ri.s.stopCh); err != nil {
		return 0, err
	}
	return r.index, nil
}

// loop runs confirmation rounds until no read is waiting.
func (ri *readIndexer) loop() {
	for {
		ri.mu.Lock()
		batch := ri.pending
		ri.pending = nil
		if len(batch) == 0 {
			ri.running = false
			ri.mu.Unlock()
			return
		}
		ri.mu.Unlock()
		r := ri.round()
		for _, ch := range batch {
			ch <- r
		}
	}
}

func (ri *readIndexer) round() readIndexResult {
	s := ri.s
	if s.raft.State() != raft.Leader {
		return readIndexResult{err: &retryError{errNotLeader}}
	}
	term := s.readyTerm.Load()
	if term == 0 || term != s.raft.CurrentTerm() {
		return readIndexResult{err: &retryError{errLeaderNotReady}}
	}
	commit := s.raft.CommitIndex()
	if err := s.raft.VerifyLeader().Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return readIndexResult{err: ErrStopped}
		}
		return readIndexResult{err: &retryError{fmt.Errorf("%w: %v", errNotLeader, err)}}
	}
	return readIndexResult{index: commit}
}

// linearRead is linearizable followed by a read of the applied state: a
// view that includes every write acknowledged before the call.
func (s *Store) linearRead(ctx context.Context) (*appliedState, error) {
	if err := s.linearizable(ctx); err != nil {
		return nil, err
	}
	return s.fsm.read(ctx, s.stopCh)
}

// linearizable blocks until this node's published state includes every
// write acknowledged (by any node) before the call.
//
// With a ctx that has no deadline the whole wait is bounded by
// Config.LeaderWaitTimeout: a follower cut off from replication must not
// block a read forever. It fails with ErrNoLeader when no leader answered,
// and with context.DeadlineExceeded (saying which index it waited for)
// when the leader answered but this node was still catching up.
func (s *Store) linearizable(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.LeaderWaitTimeout)
		defer cancel()
	}
	var catchingUp bool
	err := s.retryUntilLeader(ctx, func() error {
		var idx uint64
		var err error
		if s.raft.State() == raft.Leader {
			idx, err = s.reads.readIndex(ctx)
		} else {
			var addr string
			if addr, err = s.leaderAddr(); err == nil {
				idx, err = s.forward(ctx, addr, methodReadIndex, nil)
			}
		}
		if err != nil {
			return err
		}
		if err := s.fsm.waitApplied(ctx, idx, s.stopCh); err != nil {
			if ctx.Err() != nil {
				catchingUp = true
				return fmt.Errorf("store: the leader answered, but this node had not applied index %d (it had %d) when the context ended: %w",
					idx, s.fsm.applied.Load(), err)
			}
			return err
		}
		return nil
	})
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrNoLeader) && !catchingUp {
		err = fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	return err
}
