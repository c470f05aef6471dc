package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/embedkv/store/transport"
	"github.com/hashicorp/raft"
)

// Node RPC methods (the first byte of a node RPC request after framing).
// They are part of the node-to-node protocol: never renumber them.
const (
	methodForward   uint8 = 1 // a follower's write: body = encoded command; reply = raft index (8 bytes)
	methodReadIndex uint8 = 2 // a follower's read-index request: reply = raft index (8 bytes)
	methodLeaseTTL  uint8 = 3 // remaining TTL on the leader: body = lease ID; reply = milliseconds, or -1 (8 bytes)
	methodMember    uint8 = 4 // AddMember/RemoveMember on the leader: body = memberReq; reply = 8 zero bytes
	methodJoin      uint8 = 5 // Config.Join: body = memberReq; any member relays it to the leader
	methodHello     uint8 = 6 // a joiner asks for the cluster ID: reply = 16 bytes
	methodApplied   uint8 = 7 // the leader asks a non-voter for its applied index: reply = 8 bytes
	methodRemoved   uint8 = 8 // the leader tells a node it was removed: the node checks its configuration
)

// mutating reports node RPC methods whose effect must not be repeated
// blindly: after a failure past sending, their outcome is unknown.
func mutating(method uint8) bool {
	return method == methodForward || method == methodMember || method == methodJoin
}

// propose validates req, sends it through raft (locally on the leader,
// forwarded to it elsewhere) and returns the result this node's FSM produced
// when applying it. It returns only after this node applied the write.
//
// Errors: validation sentinels (nothing proposed); ErrNoLeader (nothing
// proposed); ErrStopped; ErrUnknownOutcome when the write may or may not
// have been applied. It never re-proposes a request that may have been
// applied.
func (s *Store) propose(ctx context.Context, req *request) (*result, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := validateRequest(req, s.lim); err != nil {
		return nil, err
	}
	req.Origin = s.bootID
	req.Seq = s.seq.Add(1)
	cmd, err := encodeCommand(cmdRequest, req)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %v", ErrInvalidArgument, err)
	}
	if len(cmd) > s.cfg.MaxRequestBytes && !internalRequest(req.Kind) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRequestTooLarge, len(cmd), s.cfg.MaxRequestBytes)
	}
	// Bad input is reported as such even when the context has also ended.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := s.waiters.register(req.Seq)
	defer s.waiters.cancel(req.Seq)

	if err := s.submit(ctx, req, cmd); err != nil {
		return nil, err
	}
	// Committed. The result arrives when this node's FSM applies the entry
	// (on the leader it already has, so look before anything else).
	select {
	case r := <-ch:
		return r.asReturn()
	default:
	}
	select {
	case r := <-ch:
		return r.asReturn()
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the write committed but this node had not applied it when the context ended: %w",
			ErrUnknownOutcome, ctx.Err())
	case <-s.stopCh:
		return nil, fmt.Errorf("%w: %w: the write committed but this node closed before applying it", ErrStopped, ErrUnknownOutcome)
	}
}

func (r *result) asReturn() (*result, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r, nil
}

// submit gets cmd committed: applied through raft on the leader, or
// forwarded to it. It retries only failures that prove nothing was proposed.
func (s *Store) submit(ctx context.Context, req *request, cmd []byte) error {
	return s.retryUntilLeader(ctx, func() error {
		if s.raft.State() == raft.Leader {
			if err := s.leaderAdmit(req); err != nil {
				return err
			}
			_, err := s.proposeLeader(ctx, req.Kind, cmd)
			return err
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		_, err = s.forward(ctx, addr, methodForward, cmd)
		return err
	})
}

// retryUntilLeader calls fn until it returns an error that does not match
// errRetry, backing off between attempts. It gives up with ErrNoLeader when
// ctx ends or, for a ctx without deadline, after Config.LeaderWaitTimeout.
func (s *Store) retryUntilLeader(ctx context.Context, fn func() error) error {
	var leaderDeadline <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(s.cfg.LeaderWaitTimeout)
		defer t.Stop()
		leaderDeadline = t.C
	}
	backoff := time.Millisecond
	for {
		err := fn()
		if err == nil || !errors.Is(err, errRetry) {
			return err
		}
		if s.removed.Load() {
			return ErrRemoved // no leader will ever answer
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			if errors.Is(err, ErrNoLeader) || errors.Is(err, errNotLeader) || errors.Is(err, errLeaderNotReady) {
				return fmt.Errorf("%w: %w (last: %v)", ErrNoLeader, ctx.Err(), err)
			}
			return fmt.Errorf("store: gave up retrying (last: %v): %w", err, ctx.Err())
		case <-leaderDeadline:
			return fmt.Errorf("%w: none within %v (last: %v)", ErrNoLeader, s.cfg.LeaderWaitTimeout, err)
		case <-s.stopCh:
			return ErrStopped
		}
		if backoff < 50*time.Millisecond {
			backoff *= 2
		}
	}
}

// errRetry marks errors after which the request was certainly not proposed.
var errRetry = errors.New("retry")

type retryError struct{ cause error }

func (e *retryError) Error() string   { return e.cause.Error() }
func (e *retryError) Unwrap() []error { return []error{errRetry, e.cause} }

func (s *Store) leaderAddr() (string, error) {
	addr, id := s.raft.LeaderWithID()
	if addr == "" || id == "" {
		return "", &retryError{ErrNoLeader}
	}
	return s.peerDialAddr(string(id), string(addr)), nil
}

// applyLocal proposes cmd on this node, which believes it leads, and waits
// for the entry to be committed and applied here. It returns the entry's
// index.
func (s *Store) applyLocal(ctx context.Context, cmd []byte) (uint64, error) {
	if s.stopped() {
		return 0, ErrStopped
	}
	// The timeout bounds only the enqueueing; ErrEnqueueTimeout is safe to
	// retry (nothing was proposed).
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return 0, ctx.Err()
		}
	}
	f := s.raft.Apply(cmd, timeout)
	done := make(chan error, 1)
	if !s.goFunc(func() { done <- f.Error() }) {
		done <- f.Error() // closing: raft is shutting down and answers at once
	}
	select {
	case err := <-done:
		if err != nil {
			return 0, mapRaftError(err)
		}
		return f.Index(), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	}
}

// mapRaftError turns an error of a raft future into the store's terms.
func mapRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return &retryError{fmt.Errorf("%w: %v", errNotLeader, err)}
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost after proposing", ErrUnknownOutcome)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w: raft shut down", ErrStopped, ErrUnknownOutcome)
	}
	return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
}

// forward sends a node RPC to the leader at addr and returns the raft index
// in its reply. For methodForward, errors after the request may have left
// this process are ErrUnknownOutcome.
func (s *Store) forward(ctx context.Context, addr string, method uint8, body []byte) (uint64, error) {
	resp, err := s.rpc.Call(ctx, addr, method, body)
	if err != nil {
		var re *transport.RemoteError
		switch {
		case errors.As(err, &re):
			rerr := errorFromCode(re.Code, re.Msg)
			if errors.Is(rerr, errNotMember) {
				s.markRemoved(0)
				return 0, fmt.Errorf("%w: %s says so", ErrRemoved, addr)
			}
			if !mutating(method) || errors.Is(rerr, errNotLeader) || errors.Is(rerr, ErrNoLeader) {
				return 0, &retryError{rerr}
			}
			return 0, rerr
		case errors.Is(err, transport.ErrUnknown) && mutating(method):
			return 0, fmt.Errorf("%w: forwarding to the leader at %s: %w", ErrUnknownOutcome, addr, err)
		case errors.Is(err, transport.ErrClosed):
			return 0, ErrStopped
		case errors.Is(err, transport.ErrNotSent):
			if ctx.Err() != nil {
				return 0, err // not sent, and the caller stopped waiting
			}
			return 0, &retryError{err}
		case !mutating(method):
			// A read changes nothing: any failure may be retried.
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, &retryError{err}
		}
		return 0, fmt.Errorf("%w: forwarding to the leader at %s: %w", ErrUnknownOutcome, addr, err)
	}
	if len(resp) != 8 {
		return 0, fmt.Errorf("%w: reply of %d bytes from %s", ErrCorrupt, len(resp), addr)
	}
	return binary.BigEndian.Uint64(resp), nil
}

// handleRPC serves node RPCs from peers. Requests are never trusted: a
// forwarded command is decoded and validated with this node's limits before
// it is proposed.
//
// Connections that did not announce this cluster (a joiner's) are served
// methodHello and methodJoin only; other methods require a member.
func (s *Store) handleRPC(ctx context.Context, method uint8, body []byte) ([]byte, error) {
	var idx uint64
	var err error
	from := s.peerOf(ctx)
	switch {
	case method == methodHello:
		var resp []byte
		if resp, err = s.serveHello(); err == nil {
			return resp, nil
		}
	case method == methodJoin:
		err = s.serveMember(ctx, method, body, from)
	case from.cluster != s.cluster():
		err = errUnidentified
	case !from.member:
		err = fmt.Errorf("%w: %q", errNotMember, from.id)
	case method == methodForward:
		idx, err = s.serveForward(ctx, body)
	case method == methodReadIndex:
		idx, err = s.reads.readIndex(ctx)
	case method == methodLeaseTTL:
		idx, err = s.serveLeaseTTL(body)
	case method == methodMember:
		err = s.serveMember(ctx, method, body, from)
	case method == methodApplied:
		return s.serveApplied(), nil
	case method == methodRemoved:
		err = s.serveRemoved(body)
	default:
		err = fmt.Errorf("%w: unknown node RPC method %d", ErrInvalidArgument, method)
	}
	if err != nil {
		return nil, &transport.RemoteError{Code: errorCode(err), Msg: err.Error()}
	}
	out := make([]byte, 8)
	binary.BigEndian.PutUint64(out, idx)
	return out, nil
}

// peerOf describes the sender of an RPC from its connection's preamble.
func (s *Store) peerOf(ctx context.Context) peerCtx {
	pi, ok := transport.PeerFromContext(ctx)
	if !ok {
		return peerCtx{}
	}
	p := peerCtx{id: pi.Hello.NodeID, cluster: clusterID(pi.Hello.ClusterID)}
	p.member = p.cluster == s.cluster() && !p.cluster.isZero() && s.members.knows(s, p.id)
	return p
}

func (s *Store) serveForward(ctx context.Context, cmd []byte) (uint64, error) {
	if s.stopped() {
		return 0, errNotLeader // not proposed: the follower may retry elsewhere
	}
	if len(cmd) > s.cfg.MaxRequestBytes+maxInternalExtra {
		return 0, ErrRequestTooLarge
	}
	req, err := decodeCommand(cmd)
	if err == nil && len(cmd) > s.cfg.MaxRequestBytes && !internalRequest(req.Kind) {
		return 0, ErrRequestTooLarge
	}
	if err != nil {
		return 0, err
	}
	if err := validateRequest(req, s.lim); err != nil {
		return 0, err
	}
	if s.raft.State() != raft.Leader {
		return 0, errNotLeader
	}
	if err := s.leaderAdmit(req); err != nil {
		return 0, err
	}
	return s.proposeLeader(ctx, req.Kind, cmd)
}

// proposeLeader proposes cmd, a request of kind k, on this node, which
// believes it leads: client writes through the coalescer, the rest alone.
func (s *Store) proposeLeader(ctx context.Context, k reqKind, cmd []byte) (uint64, error) {
	if coalescable(k) {
		return s.proposeCoalesced(ctx, cmd)
	}
	return s.applyLocal(ctx, cmd)
}

// internalRequest reports requests the store makes itself (lease expiry and
// checkpoints). They are bounded by their batch size (maxLeaseBatch), not by
// MaxRequestBytes, which limits what applications send.
func internalRequest(k reqKind) bool {
	return k == reqLeaseExpire || k == reqLeaseCheckpoint || k == reqNoop || k == reqCompact
}

// maxInternalExtra is the room internal requests may take beyond
// MaxRequestBytes: maxLeaseBatch entries of at most ~32 bytes. The node RPC
// frame limit includes it.
const maxInternalExtra = 32 * maxLeaseBatch

// leaderAdmit refuses, on the leader, a renewal of a lease its lessor has
// already found expired (its expiry is being proposed): as in etcd, an
// expired lease cannot be brought back.
func (s *Store) leaderAdmit(req *request) error {
	if req.Kind != reqLeaseRenew || !s.lessor.IsPrimary() {
		return nil
	}
	if d, ok := s.lessor.Remaining(req.LeaseID); ok && d <= 0 {
		return fmt.Errorf("%w: %d has expired", ErrLeaseNotFound, req.LeaseID)
	}
	return nil
}
