package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/embedkv/store/transport"
	"github.com/hashicorp/raft"
)

// Member is one node of the cluster as the latest raft configuration lists
// it.
type Member struct {
	ID       string
	Addr     string // the address peers dial (its advertise address)
	IsLeader bool   // the leader as the answering node knows it
	Voter    bool   // false while a new member catches up, before promotion
}

// Members lists the cluster's members. It is linearizable: a membership
// change that completed before the call, on any node, is included.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := s.linearizable(ctx); err != nil {
		return nil, err
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapRaftError(err)
	}
	_, leader := s.raft.LeaderWithID()
	servers := f.Configuration().Servers
	out := make([]Member, 0, len(servers))
	for _, srv := range servers {
		out = append(out, Member{
			ID:       string(srv.ID),
			Addr:     string(srv.Address),
			IsLeader: srv.ID == leader,
			Voter:    srv.Suffrage == raft.Voter,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AddMember adds the node id, reachable at addr, to the cluster as a
// non-voter; the leader promotes it to voter once it has caught up, so
// adding a node that is far behind never raises the quorum. Start the new
// node with Config.Join (or an empty Dir and the same call made for it).
// Adding the same ID and address again is a no-op; another member with
// the same ID or address fails with ErrMemberExists. A context that ends
// while the change is in flight yields ErrUnknownOutcome.
func (s *Store) AddMember(ctx context.Context, id, addr string) error {
	if err := validateMember(id, addr); err != nil {
		return err
	}
	return s.changeMembers(ctx, memberReq{Op: memberAdd, ID: id, Addr: addr})
}

// RemoveMember removes the node id from the cluster. The removed node
// learns of it and fails every later call with ErrRemoved; its data stays
// on disk. Removing the leader makes it step down after the change commits.
// The last voter cannot be removed (ErrInvalidArgument); an unknown id
// fails with ErrMemberNotFound.
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	if err := validateMemberID(id); err != nil {
		return err
	}
	return s.changeMembers(ctx, memberReq{Op: memberRemove, ID: id})
}

func validateMemberID(id string) error {
	if id == "" || len(id) > maxNodeIDLen {
		return fmt.Errorf("%w: member ID must be 1..%d bytes", ErrInvalidArgument, maxNodeIDLen)
	}
	return nil
}

func validateMember(id, addr string) error {
	if err := validateMemberID(id); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: member address %q: %v", ErrInvalidArgument, addr, err)
	}
	if host == "" || port == "" || port == "0" {
		return fmt.Errorf("%w: member address %q needs a host and a port", ErrInvalidArgument, addr)
	}
	return nil
}

// Membership operations, as carried by methodMember and methodJoin.
const (
	memberAdd    uint8 = 1 // AddMember: ErrMemberExists on a clash
	memberRemove uint8 = 2
	memberJoin   uint8 = 3 // Config.Join: a clashing stale entry is replaced
)

// memberReq is the body of methodMember and methodJoin.
type memberReq struct {
	Op        uint8  `msgpack:"o"`
	ID        string `msgpack:"i"`
	Addr      string `msgpack:"a,omitempty"`
	Cluster   []byte `msgpack:"c,omitempty"` // methodJoin: the cluster the joiner asks to join
	Forwarded bool   `msgpack:"f,omitempty"` // methodJoin: relayed by a member
}

// validate checks a request's ID, and its address unless it removes.
func (r *memberReq) validate() error {
	if r.Op == memberRemove {
		return validateMemberID(r.ID)
	}
	return validateMember(r.ID, r.Addr)
}

// changeMembers runs req on the leader: here, or forwarded to it.
func (s *Store) changeMembers(ctx context.Context, req memberReq) error {
	if err := s.usable(); err != nil {
		return err
	}
	body, err := encodeMsgpack(&req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	method := methodMember
	if req.Op == memberJoin {
		method = methodJoin
	}
	return s.retryUntilLeader(ctx, func() error {
		if s.raft.State() == raft.Leader {
			return s.leaderChangeMembers(ctx, req)
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		_, err = s.forward(ctx, addr, method, body)
		return err
	})
}

// leaderChangeMembers applies req to the raft configuration; this node
// believes it leads. Racing changes are retried against the newer
// configuration.
func (s *Store) leaderChangeMembers(ctx context.Context, req memberReq) error {
	for attempt := 0; ; attempt++ {
		err := s.leaderChangeOnce(ctx, req)
		if err == nil || attempt == 4 || !strings.Contains(err.Error(), "configuration changed since") {
			return err
		}
	}
}

func (s *Store) leaderChangeOnce(ctx context.Context, req memberReq) error {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return mapRaftError(err)
	}
	conf, prev := f.Configuration(), f.Index()
	id, addr := raft.ServerID(req.ID), raft.ServerAddress(req.Addr)
	switch req.Op {
	case memberRemove:
		var found *raft.Server
		voters := 0
		for i, srv := range conf.Servers {
			if srv.ID == id {
				found = &conf.Servers[i]
			}
			if srv.Suffrage == raft.Voter {
				voters++
			}
		}
		if found == nil {
			return fmt.Errorf("%w: %q", ErrMemberNotFound, req.ID)
		}
		if found.Suffrage == raft.Voter && voters == 1 {
			return fmt.Errorf("%w: %q is the only voter", ErrInvalidArgument, req.ID)
		}
		rf := s.raft.RemoveServer(id, prev, 0)
		if err := s.awaitFuture(ctx, rf); err != nil {
			return err
		}
		if id != raft.ServerID(s.cfg.NodeID) {
			target := s.peerDialAddr(req.ID, string(found.Address))
			s.goFunc(func() { s.tellRemoved(target, rf.Index()) })
		}
		return nil
	case memberAdd, memberJoin:
		if req.Op == memberJoin {
			// The joiner must answer, as itself, at the address it gives:
			// nobody can join under another node's address.
			if err := s.checkPeerAt(ctx, req.ID, req.Addr); err != nil {
				return err
			}
		}
		for _, srv := range conf.Servers {
			sameID, sameAddr := srv.ID == id, srv.Address == addr
			switch {
			case sameID && sameAddr:
				// Already a member: a no-op, once that entry has committed
				// (a no-op request commits after it; raft's Barrier would
				// not reach the FSM, leaving the applied index behind the
				// commit index).
				_, err := s.applyLocal(ctx, noopCommand)
				return err
			case req.Op == memberAdd && (sameID || sameAddr):
				return fmt.Errorf("%w: %q at %s clashes with member %q at %s", ErrMemberExists, req.ID, req.Addr, srv.ID, srv.Address)
			case sameAddr:
				// A stale member at the joiner's address: the joiner
				// answers there, so the node that had it is gone. Same ID
				// with a new address is updated in place by AddNonvoter
				// below (a voter stays a voter).
				if srv.ID == raft.ServerID(s.cfg.NodeID) {
					return fmt.Errorf("%w: %s is the leader's own address", ErrMemberExists, req.Addr)
				}
				rf := s.raft.RemoveServer(srv.ID, prev, 0)
				if err := s.awaitFuture(ctx, rf); err != nil {
					return err
				}
				prev = rf.Index()
			}
		}
		return s.awaitFuture(ctx, s.raft.AddNonvoter(id, addr, prev, 0))
	}
	return fmt.Errorf("%w: membership operation %d", ErrInvalidArgument, req.Op)
}

// awaitFuture waits for a raft future, giving up when ctx ends (the change
// may then still happen: ErrUnknownOutcome).
func (s *Store) awaitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	if !s.goFunc(func() { done <- f.Error() }) {
		done <- f.Error()
	}
	select {
	case err := <-done:
		if err != nil {
			return mapRaftError(err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	}
}

// serveMember serves methodMember and methodJoin from a peer.
func (s *Store) serveMember(ctx context.Context, method uint8, body []byte, from peerCtx) error {
	var req memberReq
	if err := decodeMsgpack(body, &req); err != nil {
		return err
	}
	switch {
	case method == methodMember && req.Op != memberAdd && req.Op != memberRemove,
		method == methodJoin && req.Op != memberJoin:
		return fmt.Errorf("%w: membership operation %d on method %d", ErrInvalidArgument, req.Op, method)
	}
	if err := req.validate(); err != nil {
		return err
	}
	if method == methodJoin {
		if clusterID(req.Cluster) != s.cluster() || len(req.Cluster) != len(clusterID{}) {
			return fmt.Errorf("%w: join asks for cluster %x, this is %s", ErrWrongCluster, req.Cluster, s.cluster())
		}
		// A joiner may only join as itself (with TLS its certificate
		// names it); a member may relay a join it has checked so.
		if req.Forwarded {
			if !from.member {
				return fmt.Errorf("%w: relayed join from non-member %q", ErrInvalidArgument, from.id)
			}
		} else if from.id != req.ID {
			return fmt.Errorf("%w: node %q asked to join as %q", ErrInvalidArgument, from.id, req.ID)
		}
		req.Forwarded = true
	}
	if s.raft.State() == raft.Leader {
		return s.leaderChangeMembers(ctx, req)
	}
	if method == methodJoin {
		return s.changeMembers(ctx, req) // relay to the leader
	}
	return errNotLeader
}

// serveHello tells a would-be joiner which cluster this node belongs to,
// and who it is: 16 bytes of cluster ID, then the node ID.
func (s *Store) serveHello() ([]byte, error) {
	id := s.cluster()
	if id.isZero() {
		return nil, fmt.Errorf("%w: this node has not joined a cluster yet", ErrNoLeader)
	}
	return append(append([]byte(nil), id[:]...), s.cfg.NodeID...), nil
}

// checkPeerAt checks that node id of this cluster answers at addr.
func (s *Store) checkPeerAt(ctx context.Context, id, addr string) error {
	cl, node, err := askHello(ctx, s.rpc, s.peerDialAddr(id, addr))
	if err != nil {
		return fmt.Errorf("%w: cannot reach %q at %s: %v", ErrInvalidArgument, id, addr, err)
	}
	if cl != s.cluster() || node != id {
		return fmt.Errorf("%w: %s is node %q of cluster %s, not %q of %s", ErrInvalidArgument, addr, node, cl, id, s.cluster())
	}
	return nil
}

// tellRemoved tells the node at addr (best effort) that the configuration
// at index removed it.
func (s *Store) tellRemoved(addr string, index uint64) {
	body := binary.BigEndian.AppendUint64(nil, index)
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.rpc.Call(ctx, addr, methodRemoved, body)
		cancel()
		if err == nil || s.stopped() {
			return
		}
		select {
		case <-s.stopCh:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// configChanged is called with every configuration this node applies, at
// its raft index (and with raft's latest one on cache refreshes). It
// refreshes the member cache and notices when this node is removed: an
// applied configuration without it that follows an applied one with it.
// Replaying the log after a restart or a join starts with configurations
// from before this node joined: those do not count, since no configuration
// with it came first.
func (s *Store) configChanged(c raft.Configuration, index uint64) {
	s.members.set(s, c, index)
	if len(c.Servers) == 0 {
		return
	}
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	if s.selfIn(c) {
		s.memberSince = max(s.memberSince, index)
		return
	}
	if s.memberSince > 0 && index > s.memberSince {
		s.setRemovedLocked(index)
	}
}

// dropDepartedConns empties raft's connection pool after a member's
// address left the configuration. raft's NetworkTransport pools
// connections per address and never drops an address: each departed
// member would keep a socket and its 256 KiB write buffer on this node
// forever. CloseStreams empties the pool (it also resets inbound streams,
// so peers reconnect). An RPC to the departed member that was in flight
// returns its connection to the pool afterwards, so the pool is emptied
// again once raft has stopped replicating to it (an election timeout
// later). memberCache.set starts it in its own goroutine, off the FSM's:
// it takes the pool's lock.
func (s *Store) dropDepartedConns() {
	s.trans.CloseStreams()
	t := time.NewTimer(s.cfg.ElectionTimeout)
	defer t.Stop()
	select {
	case <-t.C:
		s.trans.CloseStreams()
	case <-s.stopCh:
	}
}

// serveRemoved handles the leader's notice that this node was removed by
// the configuration at index. The leader stops replicating to a removed
// node at once, so the node may never see that entry; the notice stands
// unless this node knows a later configuration that lists it.
func (s *Store) serveRemoved(body []byte) error {
	if len(body) != 8 {
		return fmt.Errorf("%w: removal notice of %d bytes", ErrInvalidArgument, len(body))
	}
	index := binary.BigEndian.Uint64(body)
	f := s.raft.GetConfiguration()
	if f.Error() == nil && f.Index() > index && s.selfIn(f.Configuration()) {
		return nil
	}
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	s.setRemovedLocked(index)
	return nil
}

// removedKey marks, in the stable store, a node that was removed: it never
// serves again from this Dir (Open fails with ErrRemoved).
var removedKey = []byte("embedkv/removed")

// setRemovedLocked marks this node removed by the configuration at index,
// in memory and on disk. memberMu is held.
func (s *Store) setRemovedLocked(index uint64) {
	if s.removed.Swap(true) {
		return
	}
	s.logger.Warn("embedkv: this node has been removed from the cluster; calls now fail with ErrRemoved", "index", index)
	if err := s.bolt.Set(removedKey, binary.BigEndian.AppendUint64(nil, index)); err != nil {
		s.logger.Error("embedkv: recording the removal failed", "err", err)
	}
}

// markRemoved is setRemovedLocked for callers without memberMu.
func (s *Store) markRemoved(index uint64) {
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	s.setRemovedLocked(index)
}

// wasRemoved reports whether the stable store says this node was removed.
func wasRemoved(st stableKV) bool {
	b, err := st.Get(removedKey)
	return err == nil && len(b) > 0
}

// usable returns ErrStopped after Close and ErrRemoved after removal.
func (s *Store) usable() error {
	if s.stopped() {
		return ErrStopped
	}
	if s.removed.Load() {
		return ErrRemoved
	}
	return nil
}

// runPromoter runs on every node and acts on the leader: every interval it
// asks each non-voter for its applied index and promotes the ones that
// reached the commit index the leader had one round earlier (caught up to
// within one round, however busy the cluster is). It also corrects the
// leader's own address when the node restarted on a new port.
func (s *Store) runPromoter() {
	const interval = 200 * time.Millisecond
	marks := map[raft.ServerID]uint64{}
	lastLeader := time.Now()
	s.every(interval, func() {
		if s.raft.State() != raft.Leader || s.readyTerm.Load() == 0 {
			clear(marks)
			s.probeMembership(&lastLeader)
			return
		}
		s.promoteCaughtUp(marks, interval)
	})
}

// promoteCaughtUp is one round of runPromoter on the leader. marks holds,
// per non-voter, the commit index of the previous round.
func (s *Store) promoteCaughtUp(marks map[raft.ServerID]uint64, interval time.Duration) {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	commit := s.raft.CommitIndex()
	seen := map[raft.ServerID]bool{}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(s.cfg.NodeID) {
			if string(srv.Address) != s.mux.Addr() && srv.Suffrage == raft.Voter {
				s.raft.AddVoter(srv.ID, raft.ServerAddress(s.mux.Addr()), f.Index(), 0)
			}
			continue
		}
		if srv.Suffrage != raft.Nonvoter {
			continue
		}
		seen[srv.ID] = true
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		applied, err := s.peerApplied(ctx, string(srv.ID), string(srv.Address))
		cancel()
		if err != nil {
			continue
		}
		if mark, ok := marks[srv.ID]; ok && applied >= mark {
			// Against the configuration read above: a change since
			// (a removal, a new address) makes this fail, not undo it.
			err := s.raft.AddVoter(srv.ID, srv.Address, f.Index(), 0).Error()
			if err != nil {
				s.logger.Info("embedkv: promoting member failed", "member", srv.ID, "err", err)
			} else {
				s.logger.Info("embedkv: promoted member to voter", "member", srv.ID, "applied", applied)
			}
			delete(marks, srv.ID)
			continue
		}
		marks[srv.ID] = commit
	}
	for id := range marks {
		if !seen[id] {
			delete(marks, id)
		}
	}
}

// probeMembership runs on a node that has heard from no leader for a few
// election timeouts: it asks the other members whether it still is one. A
// node removed while it was down or cut off learns it this way (members
// refuse its raft traffic, so it would otherwise wait forever).
func (s *Store) probeMembership(lastLeader *time.Time) {
	if s.removed.Load() {
		return
	}
	if _, id := s.raft.LeaderWithID(); id != "" {
		*lastLeader = time.Now()
		return
	}
	if time.Since(*lastLeader) < 3*s.cfg.ElectionTimeout {
		return
	}
	*lastLeader = time.Now() // probe again after another quiet spell
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(s.cfg.NodeID) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.rpc.Call(ctx, s.peerDialAddr(string(srv.ID), string(srv.Address)), methodApplied, nil)
		cancel()
		var re *transport.RemoteError
		if errors.As(err, &re) && errors.Is(errorFromCode(re.Code, re.Msg), errNotMember) {
			s.logger.Warn("embedkv: a member says this node is not in the cluster", "member", srv.ID)
			s.markRemoved(0)
			return
		}
	}
}

// peerApplied asks member id at addr for its applied index; the reply
// must come from that member.
func (s *Store) peerApplied(ctx context.Context, id, addr string) (uint64, error) {
	resp, err := s.rpc.Call(ctx, s.peerDialAddr(id, addr), methodApplied, nil)
	if err != nil {
		return 0, err
	}
	if len(resp) < 8 || string(resp[8:]) != id {
		return 0, fmt.Errorf("%w: applied-index reply from %s is not from %q", ErrCorrupt, addr, id)
	}
	return binary.BigEndian.Uint64(resp), nil
}

// serveApplied answers peerApplied: the applied index, then the node ID.
func (s *Store) serveApplied() []byte {
	return append(binary.BigEndian.AppendUint64(nil, s.fsm.applied.Load()), s.cfg.NodeID...)
}

// peerDialAddr is the address to dial for member id advertised at addr.
func (s *Store) peerDialAddr(id, addr string) string {
	if s.cfg.DialAddress != nil {
		if a, ok := s.cfg.DialAddress(id); ok {
			return a
		}
	}
	return addr
}

// memberCache answers "is this node a member" and "who is at this
// address" without a trip through raft's main loop. It is refreshed on
// every applied configuration, and from raft's latest one on a miss.
type memberCache struct {
	p atomic.Pointer[memberSnapshot]
}

type memberSnapshot struct {
	index uint64 // of the configuration
	ids   map[string]bool
	addrs map[string]string // advertised and dial addresses -> ID
}

// set caches conf, the configuration at index, unless a newer one is
// cached (a replay applies old configurations after a refresh from
// raft's latest). When an address of the configuration it replaces is not
// in conf, it starts dropDepartedConns.
func (c *memberCache) set(s *Store, conf raft.Configuration, index uint64) {
	m := &memberSnapshot{index: index, ids: map[string]bool{}, addrs: map[string]string{}}
	for _, srv := range conf.Servers {
		id := string(srv.ID)
		m.ids[id] = true
		m.addrs[string(srv.Address)] = id
		m.addrs[s.peerDialAddr(id, string(srv.Address))] = id
	}
	for {
		old := c.p.Load()
		if old != nil && old.index > index {
			return
		}
		if c.p.CompareAndSwap(old, m) {
			if old != nil && m.lacksAddrOf(old) {
				s.goFunc(s.dropDepartedConns)
			}
			return
		}
	}
}

// lacksAddrOf reports whether an address of old is not in m.
func (m *memberSnapshot) lacksAddrOf(old *memberSnapshot) bool {
	for a := range old.addrs {
		if _, ok := m.addrs[a]; !ok {
			return true
		}
	}
	return false
}

// lookup returns the cached snapshot, refreshing it from raft when it is
// missing or when miss says the cached one lacks what is looked for.
func (c *memberCache) lookup(s *Store, miss func(*memberSnapshot) bool) *memberSnapshot {
	m := c.p.Load()
	if (m == nil || miss(m)) && s.raftUp.Load() {
		if f := s.raft.GetConfiguration(); f.Error() == nil {
			c.set(s, f.Configuration(), f.Index())
			m = c.p.Load()
		}
	}
	return m
}

// knows reports whether id is a member, or this node has no configuration
// yet (a joiner, which must accept the leader that catches it up).
func (c *memberCache) knows(s *Store, id string) bool {
	m := c.lookup(s, func(m *memberSnapshot) bool { return !m.ids[id] })
	return m == nil || len(m.ids) == 0 || m.ids[id]
}

// idAt returns the member at addr, or "" if none is known there.
func (c *memberCache) idAt(s *Store, addr string) string {
	m := c.lookup(s, func(m *memberSnapshot) bool { _, ok := m.addrs[addr]; return !ok })
	if m == nil {
		return ""
	}
	return m.addrs[addr]
}

// peerCtx is what handleRPC knows of the peer that sent a request.
type peerCtx struct {
	id      string    // announced node ID (certified with TLS)
	cluster clusterID // announced cluster
	member  bool      // of this cluster and in its configuration
}

var errUnidentified = errors.New("store: this connection did not identify its cluster; only Hello and Join are served")

// errNotMember is a member's answer to a node of its cluster that is not in
// its configuration: a removed node. It travels as a wire code; the node
// that receives it marks itself removed.
var errNotMember = errors.New("store: the calling node is not a member of the cluster")
