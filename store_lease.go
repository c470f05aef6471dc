package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/embedkv/store/lease"
	"github.com/hashicorp/raft"
)

// LeaseGrantResponse is returned by Grant.
type LeaseGrantResponse struct {
	Header ResponseHeader
	ID     LeaseID
	TTL    int64 // seconds; at least the store's minimum lease TTL
}

// LeaseRevokeResponse is returned by Revoke.
type LeaseRevokeResponse struct {
	Header ResponseHeader
}

// LeaseKeepAliveResponse reports one renewal: the lease's TTL starts again.
type LeaseKeepAliveResponse struct {
	Header ResponseHeader
	ID     LeaseID
	TTL    int64
}

// LeaseTimeToLiveResponse is returned by TimeToLive. TTL is the remaining
// time in seconds, rounded up, or -1 when the lease does not exist (expired
// or revoked), as etcd.
type LeaseTimeToLiveResponse struct {
	Header     ResponseHeader
	ID         LeaseID
	TTL        int64
	GrantedTTL int64
	Keys       [][]byte // with WithAttachedKeys
}

// LeaseStatus is one entry of LeaseLeasesResponse.
type LeaseStatus struct{ ID LeaseID }

// LeaseLeasesResponse lists the leases that exist.
type LeaseLeasesResponse struct {
	Header ResponseHeader
	Leases []LeaseStatus
}

// LeaseOption configures TimeToLive.
type LeaseOption func(*leaseOptions)

type leaseOptions struct{ attachedKeys bool }

// WithAttachedKeys makes TimeToLive list the keys attached to the lease.
func WithAttachedKeys() LeaseOption { return func(o *leaseOptions) { o.attachedKeys = true } }

// minLeaseTTL is the shortest TTL granted, in seconds: one and a half
// election timeouts (at least one second), as etcd, so a lease can survive
// a leader election.
func (s *Store) minLeaseTTL() int64 {
	return int64(math.Max(1, math.Ceil((s.cfg.ElectionTimeout * 3 / 2).Seconds())))
}

// Grant creates a lease with the given TTL in seconds (raised to the
// minimum lease TTL). Lease IDs are chosen by the state machine: unique in
// the cluster and the same on every node.
func (s *Store) Grant(ctx context.Context, ttl int64) (*LeaseGrantResponse, error) {
	if ttl < 0 || ttl > maxLeaseTTL {
		return nil, fmt.Errorf("%w: lease TTL %d outside 0..%d", ErrInvalidArgument, ttl, int64(maxLeaseTTL))
	}
	if min := s.minLeaseTTL(); ttl < min {
		ttl = min
	}
	r, err := s.propose(ctx, &request{Kind: reqLeaseGrant, LeaseTTL: ttl})
	if err != nil {
		return nil, err
	}
	return &LeaseGrantResponse{Header: s.header(r.rev), ID: LeaseID(r.leaseID), TTL: r.leaseTTL}, nil
}

// Revoke deletes a lease and, in one revision, every key attached to it.
func (s *Store) Revoke(ctx context.Context, id LeaseID) (*LeaseRevokeResponse, error) {
	if id <= 0 {
		return nil, fmt.Errorf("%w: lease %d", ErrLeaseNotFound, id)
	}
	r, err := s.propose(ctx, &request{Kind: reqLeaseRevoke, LeaseID: int64(id)})
	if err != nil {
		return nil, err
	}
	return &LeaseRevokeResponse{Header: s.header(r.rev)}, nil
}

// KeepAliveOnce renews a lease once: its TTL starts again. The renewal goes
// through raft, so it survives a change of leader.
func (s *Store) KeepAliveOnce(ctx context.Context, id LeaseID) (*LeaseKeepAliveResponse, error) {
	if id <= 0 {
		return nil, fmt.Errorf("%w: lease %d", ErrLeaseNotFound, id)
	}
	r, err := s.propose(ctx, &request{Kind: reqLeaseRenew, LeaseID: int64(id)})
	if err != nil {
		return nil, err
	}
	return &LeaseKeepAliveResponse{Header: s.header(r.rev), ID: id, TTL: r.leaseTTL}, nil
}

// KeepAlive renews a lease now and then about every TTL/3 until ctx ends,
// sending each renewal on the returned channel. The channel closes when
// ctx ends, the lease expires or is revoked, or the store closes. A slow
// reader misses renewals (the channel holds 16) but never stops them. It
// fails at once if the lease does not exist.
func (s *Store) KeepAlive(ctx context.Context, id LeaseID) (<-chan *LeaseKeepAliveResponse, error) {
	first, err := s.KeepAliveOnce(ctx, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan *LeaseKeepAliveResponse, 16)
	ch <- first
	if !s.goFunc(func() { s.keepAliveLoop(ctx, id, first.TTL, ch) }) {
		close(ch)
	}
	return ch, nil
}

func (s *Store) keepAliveLoop(ctx context.Context, id LeaseID, ttl int64, ch chan<- *LeaseKeepAliveResponse) {
	defer close(ch)
	next := time.Duration(ttl) * time.Second / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stopCh:
			return
		case <-s.cfg.Clock.After(next):
		}
		// Each renewal is bounded so a stuck one is retried before the
		// lease would expire.
		rctx, cancel := context.WithTimeout(ctx, max(time.Duration(ttl)*time.Second/2, time.Second))
		resp, err := s.KeepAliveOnce(rctx, id)
		cancel()
		switch {
		case err == nil:
			select {
			case ch <- resp:
			default: // the reader is behind; renewals go on
			}
			next = time.Duration(resp.TTL) * time.Second / 3
		case errors.Is(err, ErrLeaseNotFound), errors.Is(err, ErrStopped):
			return
		default:
			// No leader, unknown outcome (a renewal is idempotent), a
			// timeout: try again soon.
			s.logger.Info("embedkv: lease keepalive failed; retrying", "lease", int64(id), "err", err)
			next = 500 * time.Millisecond
		}
	}
}

// TimeToLive reports a lease's remaining TTL (as counted by the leader, so
// it is the same on every node) and its granted TTL. A lease that does not
// exist reports TTL -1. During an election it waits for the new leader
// rather than guessing.
func (s *Store) TimeToLive(ctx context.Context, id LeaseID, opts ...LeaseOption) (*LeaseTimeToLiveResponse, error) {
	var o leaseOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := s.usable(); err != nil {
		return nil, err
	}
	st, err := s.linearRead(ctx)
	if err != nil {
		return nil, err
	}
	resp := &LeaseTimeToLiveResponse{Header: s.header(st.view.Rev()), ID: id, TTL: -1}
	if id <= 0 {
		return resp, nil
	}
	remaining, err := s.leaseRemaining(ctx, id)
	if err != nil {
		return nil, err
	}
	granted, keys, ok := s.leases.info(int64(id), o.attachedKeys)
	if remaining < 0 || !ok {
		return resp, nil
	}
	resp.TTL = int64(math.Ceil(remaining.Seconds()))
	resp.GrantedTTL, resp.Keys = granted, keys
	return resp, nil
}

// leaseRemaining asks the leader's lessor; -1 means "no such lease".
func (s *Store) leaseRemaining(ctx context.Context, id LeaseID) (time.Duration, error) {
	var out time.Duration
	err := s.retryUntilLeader(ctx, func() error {
		if s.raft.State() == raft.Leader {
			d, err := s.localRemaining(int64(id))
			out = d
			return err
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		body := binary.BigEndian.AppendUint64(nil, uint64(id))
		v, err := s.forward(ctx, addr, methodLeaseTTL, body)
		out = time.Duration(int64(v)) * time.Millisecond
		if int64(v) < 0 {
			out = -1
		}
		return err
	})
	return out, err
}

// localRemaining answers for the leader: it must have armed its lessor
// (promotion after the term's no-op) before it may answer.
func (s *Store) localRemaining(id int64) (time.Duration, error) {
	if !s.lessor.IsPrimary() {
		return 0, &retryError{errLeaderNotReady}
	}
	if d, ok := s.lessor.Remaining(id); ok {
		return d, nil
	}
	return -1, nil
}

func (s *Store) serveLeaseTTL(body []byte) (uint64, error) {
	if len(body) != 8 {
		return 0, fmt.Errorf("%w: lease TTL request of %d bytes", ErrInvalidArgument, len(body))
	}
	d, err := s.localRemaining(int64(binary.BigEndian.Uint64(body)))
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return uint64(1<<64 - 1), nil // -1 as int64
	}
	return uint64(d.Milliseconds()), nil
}

// Leases lists every lease, in ID order.
func (s *Store) Leases(ctx context.Context) (*LeaseLeasesResponse, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	st, err := s.linearRead(ctx)
	if err != nil {
		return nil, err
	}
	resp := &LeaseLeasesResponse{Header: s.header(st.view.Rev())}
	for _, id := range s.leases.ids() {
		resp.Leases = append(resp.Leases, LeaseStatus{ID: LeaseID(id)})
	}
	return resp, nil
}

// expireLeases is the lessor's OnExpire: it proposes the revocation of
// expired leases (one raft entry, each lease revoked at its own revision).
// It runs on the lessor's goroutine and returns when the proposal finished
// or this node stopped leading (expireCtx is cancelled before Demote).
func (s *Store) expireLeases(batch []lease.Expired) {
	s.expireMu.Lock()
	ctx := s.expireCtx
	s.expireMu.Unlock()
	req := &request{Kind: reqLeaseExpire}
	for _, e := range batch {
		req.LeaseExpire = append(req.LeaseExpire, leaseExpiry{ID: e.ID, RenewIndex: e.RenewIndex})
	}
	if _, err := s.propose(ctx, req); err != nil {
		s.logger.Info("embedkv: proposing lease expiry failed; the lessor retries", "leases", len(batch), "err", err)
	}
}

// runLeaseCheckpoints records, on the leader, the remaining TTLs of leases
// through raft every LeaseCheckpointInterval, so a new leader re-arms them
// from recent values: each leader change makes a lease expire at most
// about 1.5 x LeaseCheckpointInterval plus the election time late, never
// early (renewals record the full TTL through raft). At most maxLeaseBatch
// leases (those closest to expiry) are recorded per interval.
func (s *Store) runLeaseCheckpoints() {
	interval := s.cfg.LeaseCheckpointInterval
	for {
		select {
		case <-s.stopCh:
			return
		case <-s.cfg.Clock.After(interval):
		}
		if !s.lessor.IsPrimary() {
			continue
		}
		cps := s.lessor.Checkpoints(s.leases.recorded, interval/2, maxLeaseBatch)
		if len(cps) == 0 {
			continue
		}
		req := &request{Kind: reqLeaseCheckpoint}
		for _, cp := range cps {
			req.LeaseCheckpoints = append(req.LeaseCheckpoints, leaseCheckpoint{ID: cp.ID, RemainingMs: cp.Remaining.Milliseconds(), RenewIndex: cp.RenewIndex})
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		if _, err := s.propose(ctx, req); err != nil {
			s.logger.Info("embedkv: lease checkpoint failed", "err", err)
		}
		cancel()
	}
}
