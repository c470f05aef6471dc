package store

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// watchLeadership follows this node's leadership. On winning an election it
// proposes a no-op request and, once it is applied, marks the term ready for
// read-index reads (see readIndexer). Runs until Close.
func (s *Store) watchLeadership() {
	noop := noopCommand
	for {
		select {
		case <-s.stopCh:
			return
		case isLeader := <-s.raft.LeaderCh():
			s.readyTerm.Store(0)
			s.demoteLessor()
			if !isLeader {
				continue
			}
			if s.becomeReady(noop) {
				s.promoteLessor()
			}
		}
	}
}

// noopCommand is a request that changes nothing: a new leader's first
// entry, and a way to wait until everything before it has committed.
var noopCommand = func() []byte {
	b, err := encodeCommand(cmdRequest, &request{Kind: reqNoop})
	if err != nil {
		panic(err) // a constant request always encodes
	}
	return b
}()

// becomeReady proposes the no-op of a new term until it is applied (then
// the term is ready for reads) or this node is no longer leader of that term.
func (s *Store) becomeReady(noop []byte) bool {
	term := s.raft.CurrentTerm()
	backoff := 10 * time.Millisecond
	for s.raft.State() == raft.Leader && s.raft.CurrentTerm() == term {
		err := s.raft.Apply(noop, 0).Error()
		if err == nil {
			if s.raft.State() == raft.Leader && s.raft.CurrentTerm() == term {
				s.readyTerm.Store(term)
				return true
			}
			return false
		}
		s.logger.Info("embedkv: no-op of new term failed", "term", term, "err", err)
		select {
		case <-s.stopCh:
			return false
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
	return false
}

// promoteLessor makes this node's lessor count lease deadlines, from the
// remaining TTLs recorded in the replicated state. Called once the term is
// ready, so the state includes every entry of earlier terms.
func (s *Store) promoteLessor() {
	s.expireMu.Lock()
	s.expireCtx, s.expireCancel = context.WithCancel(context.Background())
	s.expireMu.Unlock()
	s.leases.promote()
}

// demoteLessor stops lease expiry on this node: pending expiry proposals
// are abandoned first, then the lessor forgets its deadlines.
func (s *Store) demoteLessor() {
	s.expireMu.Lock()
	s.expireCancel()
	s.expireMu.Unlock()
	s.lessor.Demote()
}

// runCompactor keeps history bounded: on the leader, once the store is
// CompactionRetention + 1/8 of it revisions past the compaction point, it
// proposes a compaction to revision - CompactionRetention. The compaction
// itself is an ordinary raft entry, so every node compacts at the same
// revision; small steps keep each one short, since every node applies it
// at the same moment. It reads the revisions without taking a view (a view
// would make the next writes copy the btree paths they touch).
func (s *Store) runCompactor() {
	retention := s.cfg.CompactionRetention
	if retention <= 0 {
		return
	}
	s.every(s.cfg.CompactionCheckInterval, func() {
		if s.raft.State() != raft.Leader {
			return
		}
		rev, compacted := s.fsm.revisions()
		if rev-compacted < retention+max(retention/8, 1) {
			return
		}
		target := rev - retention
		// propose itself gives up when the store closes.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.propose(ctx, &request{Kind: reqCompact, Compact: target})
		cancel()
		if err != nil {
			s.logger.Info("embedkv: automatic compaction failed", "rev", target, "err", err)
		}
	})
}

// every calls fn every d until Close.
func (s *Store) every(d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stopCh:
			return
		case <-t.C:
		}
		fn()
	}
}

// runSnapshotter takes a raft snapshot once the entries applied since the
// last one exceed Config.SnapshotThresholdBytes (raft's own trigger counts
// entries only). Every node decides for itself, as with raft's threshold.
func (s *Store) runSnapshotter() {
	limit := s.cfg.SnapshotThresholdBytes
	if limit <= 0 {
		return
	}
	s.every(time.Second, func() {
		if s.fsm.sinceSnapshot.Load() < limit {
			return
		}
		if err := s.raft.Snapshot().Error(); err != nil {
			s.logger.Info("embedkv: snapshot by size failed; will retry", "err", err)
		}
	})
}
