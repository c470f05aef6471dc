package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/embedkv/store/transport"
	"github.com/hashicorp/raft"
)

// Joining a running cluster (Config.Join).
//
//  1. discoverCluster, before raft starts: ask any Join address for the
//     cluster ID (methodHello, on a connection that announces no cluster)
//     and keep it, so that every later connection carries it.
//  2. raft starts with no configuration: it waits to be contacted.
//  3. joinCluster: ask a member to add this node (methodJoin); a follower
//     relays the request to the leader, which adds the node as a non-voter.
//     The leader's promoter (runPromoter) makes it a voter once it has
//     caught up.
//
// Nothing here wipes or re-bootstraps state: a node whose Dir holds another
// cluster's state is refused by every member (ErrWrongCluster).

// discoverCluster asks the Join addresses, in turn, for the cluster ID
// until one answers or Config.JoinTimeout passes.
func (s *Store) discoverCluster() (clusterID, error) {
	anon := s.anonClient()
	defer anon.Close()
	var id clusterID
	err := s.eachJoinAddr(func(ctx context.Context, addr string) (err error) {
		id, _, err = askHello(ctx, anon, addr)
		return err
	})
	return id, err
}

// checkJoinCluster makes a restarting joiner fail clearly when its Join
// addresses now belong to another cluster than its Dir. Unreachable
// addresses are no error: the cluster may be restarting too.
func (s *Store) checkJoinCluster() error {
	anon := s.anonClient()
	defer anon.Close()
	for _, addr := range s.cfg.Join {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		id, _, err := askHello(ctx, anon, addr)
		cancel()
		if err == nil && id != s.cluster() {
			return fmt.Errorf("%w: %s is in cluster %s, this node's data in %s", ErrWrongCluster, addr, id, s.cluster())
		}
	}
	return nil
}

// anonClient is a node RPC client that announces no cluster: what a node
// may use before it knows (or to check) which cluster an address serves.
func (s *Store) anonClient() *transport.Client {
	return transport.NewClient(s.clientConfig(func() transport.Hello {
		return transport.Hello{NodeID: s.cfg.NodeID}
	}))
}

// askHello asks the node at addr for its cluster ID and node ID
// (methodHello). Transport failures are retryable.
func askHello(ctx context.Context, c *transport.Client, addr string) (clusterID, string, error) {
	resp, err := c.Call(ctx, addr, methodHello, nil)
	if err != nil {
		return clusterID{}, "", &retryError{err}
	}
	if len(resp) < len(clusterID{}) {
		return clusterID{}, "", fmt.Errorf("%w: hello reply of %d bytes from %s", ErrCorrupt, len(resp), addr)
	}
	return clusterID(resp[:16]), string(resp[16:]), nil
}

// settleMembership finishes Open once raft runs: a joiner asks to be added
// (again, if it is no longer a member or its address changed); a node
// started from Peers whose state says it was removed refuses to start.
func (s *Store) settleMembership(existing bool) error {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("store: read configuration: %w", err)
	}
	conf := f.Configuration()
	s.members.set(s, conf, f.Index())
	if len(s.cfg.Join) > 0 {
		if existing {
			if err := s.checkJoinCluster(); err != nil {
				return err
			}
		}
		for _, srv := range conf.Servers {
			if srv.ID == raft.ServerID(s.cfg.NodeID) && string(srv.Address) == s.mux.Addr() {
				return nil // a member restarting at the same address
			}
		}
		return s.joinCluster()
	}
	if existing && len(conf.Servers) > 0 && !s.selfIn(conf) {
		return fmt.Errorf("%w: its raft log says so; to bring it back, empty its directory and join again", ErrRemoved)
	}
	return nil
}

// joinCluster asks the Join addresses, in turn, to add this node.
func (s *Store) joinCluster() error {
	id := s.cluster()
	body, err := encodeMsgpack(&memberReq{Op: memberJoin, ID: s.cfg.NodeID, Addr: s.mux.Addr(), Cluster: id[:]})
	if err != nil {
		return err
	}
	return s.eachJoinAddr(func(ctx context.Context, addr string) error {
		_, err := s.forward(ctx, addr, methodJoin, body)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrWrongCluster), errors.Is(err, ErrInvalidArgument), errors.Is(err, ErrMemberExists),
			errors.Is(err, ErrConfig):
			return err // the cluster refuses: retrying cannot help
		}
		// Joining again is a no-op, so even an unknown outcome is retried.
		return &retryError{err}
	})
}

// eachJoinAddr calls try with each Join address in turn, backing off
// between rounds, until try succeeds, fails with a non-retryable error, or
// Config.JoinTimeout passes.
func (s *Store) eachJoinAddr(try func(ctx context.Context, addr string) error) error {
	deadline := time.Now().Add(s.cfg.JoinTimeout)
	backoff := 50 * time.Millisecond
	var last error
	for {
		for _, addr := range s.cfg.Join {
			attempt := time.Now().Add(5 * time.Second)
			if attempt.After(deadline) {
				attempt = deadline
			}
			ctx, cancel := context.WithDeadline(context.Background(), attempt)
			err := try(ctx, addr)
			cancel()
			if err == nil {
				return nil
			}
			if !errors.Is(err, errRetry) {
				return fmt.Errorf("store: join through %s: %w", addr, err)
			}
			last = fmt.Errorf("%s: %w", addr, err)
			if s.stopped() {
				return ErrStopped
			}
		}
		if time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("%w: no member reachable through %v within %v (last: %v)", ErrNoLeader, s.cfg.Join, s.cfg.JoinTimeout, last)
		}
		time.Sleep(backoff) // Open is not cancellable; JoinTimeout bounds this loop
		backoff = min(2*backoff, time.Second)
	}
}
