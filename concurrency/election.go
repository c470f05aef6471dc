package concurrency

import (
	"context"
	"errors"

	"github.com/embedkv/store"
)

// Election is a leader election on a key prefix, with candidates held by
// Sessions. Each candidate's key is pfx + "/" + its lease ID and its value
// is the candidate's proclaimed value; the candidate whose key has the
// smallest create revision leads. When the leader resigns or its session
// is lost, its key is deleted and the next candidate in create-revision
// order leads.
//
// An Election is not safe for concurrent use, except that Leader and
// Observe may be called from any goroutine.
type Election struct {
	session   *Session
	keyPrefix string // the prefix given to NewElection, with "/" appended

	leaderKey     string   // our candidacy key; "" when not campaigning
	leaderRev     int64    // its create revision
	leaderSession *Session // the session holding leaderKey; nil when not campaigning
	hdr           *store.ResponseHeader
}

// NewElection returns an election on prefix pfx for session s. Nothing is
// written until Campaign.
func NewElection(s *Session, pfx string) *Election {
	return &Election{session: s, keyPrefix: keyPrefix(pfx)}
}

// ResumeElection returns an election on prefix pfx that already campaigns
// with the key leaderKey, created at revision leaderRev by session s; for
// example one that won through another Election value or another process
// adopting the session's lease (WithLease). Proclaim and Resign act on that
// key, guarded by its create revision.
//
// Unlike etcd's, it appends "/" to pfx, as NewElection does, so that both
// see the same candidates.
func ResumeElection(s *Session, pfx string, leaderKey string, leaderRev int64) *Election {
	return &Election{
		session:       s,
		keyPrefix:     keyPrefix(pfx),
		leaderKey:     leaderKey,
		leaderRev:     leaderRev,
		leaderSession: s,
	}
}

// Campaign puts the session's candidacy, with value val, and blocks until
// it leads (every older candidate is gone), ctx ends or the session is
// lost. Candidates lead in the order they first campaigned. Campaigning
// again with the same session keeps the original place in line and, if val
// differs, proclaims val.
//
// If ctx ends while waiting, the candidacy is withdrawn and ctx's error
// returned. If the session is lost, Campaign returns ErrSessionExpired; if
// the candidacy key was deleted by other means, ErrElectionNotFound. On
// other errors (the store's, e.g. no raft leader before ctx's deadline) the
// candidacy stays, so that a retried Campaign keeps its place; Resign
// withdraws it.
func (e *Election) Campaign(ctx context.Context, val string) error {
	s := e.session
	if s.lost() {
		return ErrSessionExpired
	}
	st := s.Store()
	lease := s.Lease()
	k := contenderKey(e.keyPrefix, lease)
	before := localRev(st)
	resp, err := st.Txn(ctx).
		If(store.Compare(store.CreateRevision(k), "=", 0)).
		Then(store.OpPut(k, val, store.WithLease(lease))).
		Else(store.OpGet(k)).
		Commit()
	if err != nil {
		// A candidacy of unknown outcome could lead with nobody
		// campaigning: remove it if this attempt made it.
		undoCreate(s, k, before, err)
		return s.sessionErr(err)
	}
	e.leaderKey, e.leaderRev, e.leaderSession = k, resp.Header.Revision, s
	if !resp.Succeeded {
		kv := ownerOf(resp, 0)
		if kv == nil {
			e.leaderKey, e.leaderSession = "", nil
			return errors.New("concurrency: election key vanished inside a transaction")
		}
		e.leaderRev = kv.CreateRevision
		if string(kv.Value) != val {
			if err := e.Proclaim(ctx, val); err != nil {
				e.withdraw()
				return err
			}
		}
	}

	if _, err := waitDeletes(ctx, s, e.keyPrefix, e.leaderRev-1); err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrSessionExpired) {
			// Clean up an abandoned candidacy (an orphaned session's key
			// would otherwise lead until its TTL runs out).
			e.withdraw()
		}
		// Otherwise the candidacy stays: a retried Campaign finds its key
		// and keeps its place; Resign withdraws it. (etcd forgets the
		// key here, leaving it until the session ends.)
		return err
	}

	// Our turn: check the key survived the wait.
	gresp, err := get(ctx, st, k)
	if err != nil {
		if ctx.Err() != nil {
			e.withdraw()
		}
		return err
	}
	if len(gresp.Kvs) == 0 || gresp.Kvs[0].CreateRevision != e.leaderRev {
		e.leaderKey, e.leaderSession = "", nil
		if s.lost() {
			return ErrSessionExpired
		}
		// The session may be lost without Done closed yet: its lease is
		// gone if the key went with it.
		if ttl, err := st.TimeToLive(ctx, lease); err == nil && ttl.TTL < 0 {
			return ErrSessionExpired
		}
		return ErrElectionNotFound
	}
	e.hdr = &gresp.Header
	return nil
}

// withdraw resigns with the session's clean-up context, outliving the
// caller's ctx; its error is dropped in favour of the caller's.
func (e *Election) withdraw() {
	cctx, cancel := e.session.cleanupContext()
	defer cancel()
	_ = e.Resign(cctx)
}

// Proclaim sets the leader's value without another election. It returns
// ErrElectionNotLeader if this election does not campaign or its key is
// gone (resigned, session lost); the write is guarded by the key's create
// revision, so a deposed leader cannot overwrite its successor's value.
//
// Like etcd, Proclaim does not check that the candidacy leads: called while
// Campaign still waits, it changes the value the candidate will lead with.
func (e *Election) Proclaim(ctx context.Context, val string) error {
	if e.leaderSession == nil {
		return ErrElectionNotLeader
	}
	st := e.session.Store()
	cmp := store.Compare(store.CreateRevision(e.leaderKey), "=", e.leaderRev)
	put := store.OpPut(e.leaderKey, val, store.WithLease(e.leaderSession.Lease()))
	resp, err := st.Txn(ctx).If(cmp).Then(put).Commit()
	if err != nil {
		return e.leaderSession.sessionErr(err)
	}
	if !resp.Succeeded {
		e.leaderKey = ""
		return ErrElectionNotLeader
	}
	e.hdr = &resp.Header
	return nil
}

// Resign gives up leadership (or withdraws the candidacy) by deleting the
// election's key, if it is still the one this election created; the next
// candidate then leads. Resigning an election that does not campaign does
// nothing.
func (e *Election) Resign(ctx context.Context) error {
	if e.leaderSession == nil {
		return nil
	}
	st := e.session.Store()
	cmp := store.Compare(store.CreateRevision(e.leaderKey), "=", e.leaderRev)
	resp, err := st.Txn(ctx).If(cmp).Then(store.OpDelete(e.leaderKey)).Commit()
	if err == nil {
		e.hdr = &resp.Header
	}
	e.leaderKey = ""
	e.leaderSession = nil
	return err
}

// Leader returns the current leader's key-value (Kvs[0]: its key, its
// proclaimed value, and its create revision) in a GetResponse, or
// ErrElectionNoLeader when nobody campaigns.
func (e *Election) Leader(ctx context.Context) (*store.GetResponse, error) {
	resp, kv, err := oldest(ctx, e.session.Store(), e.keyPrefix)
	if err != nil {
		return nil, err
	}
	if kv == nil {
		return nil, ErrElectionNoLeader
	}
	return resp, nil
}

// Observe returns a channel that receives the leader's key-value (as
// Kvs[0] of a GetResponse) now, if there is a leader, and again each time
// the leader changes or proclaims a value. Nothing is sent while nobody
// campaigns. The channel is unbuffered: a slow reader delays, but does not
// lose, later changes of the value; a leader that comes and goes while the
// reader is busy may be skipped, as in etcd.
//
// The channel is closed when ctx ends, when the store closes or on an
// unexpected store error; its goroutine then exits.
func (e *Election) Observe(ctx context.Context) <-chan store.GetResponse {
	ch := make(chan store.GetResponse)
	go e.observe(ctx, ch)
	return ch
}

// observe feeds Observe's channel: find the leader (or wait for the first
// candidate), report it, follow its key's changes until it is deleted,
// repeat.
func (e *Election) observe(ctx context.Context, ch chan<- store.GetResponse) {
	defer close(ch)
	st := e.session.Store()
	for {
		resp, kv, err := oldest(ctx, st, e.keyPrefix)
		if err != nil {
			return
		}
		hdr := resp.Header
		if kv == nil {
			// Nobody campaigns: wait for the first key put under the
			// prefix, which is then the oldest.
			var ok bool
			kv, hdr, ok = e.waitFirstPut(ctx, resp.Header.Revision)
			if !ok {
				return
			}
			if kv == nil {
				continue // history compacted: look again
			}
		}

		select {
		case ch <- store.GetResponse{Header: hdr, Kvs: []*store.KeyValue{kv}, Count: 1}:
		case <-ctx.Done():
			return
		}

		switch e.followLeader(ctx, ch, kv, hdr.Revision) {
		case followStop:
			return
		case followDeleted, followRecheck:
		}
	}
}

// waitFirstPut waits, from revision rev on, for a key to be put under the
// prefix. It returns the key-value with a header at its revision; a nil kv
// with ok set when history was compacted and the caller should look again;
// ok false when the observation must stop.
func (e *Election) waitFirstPut(ctx context.Context, rev int64) (*store.KeyValue, store.ResponseHeader, bool) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := e.session.Store().Watch(wctx, e.keyPrefix, store.WithPrefix(), store.WithRev(rev+1), store.WithFilterDelete())
	for {
		wr, ok := <-wch
		if !ok {
			return nil, store.ResponseHeader{}, false
		}
		if wr.CompactRevision != 0 {
			return nil, store.ResponseHeader{}, true
		}
		if wr.Err() != nil {
			return nil, store.ResponseHeader{}, false
		}
		for _, ev := range wr.Events {
			if ev.Type == store.PUT {
				// A response may span several revisions; report the
				// revision of the put itself.
				hdr := wr.Header
				hdr.Revision = ev.Kv.ModRevision
				return cloneKV(ev.Kv), hdr, true
			}
		}
	}
}

type followResult int

const (
	followStop    followResult = iota // ctx ended, store closed, or error
	followDeleted                     // the leader's key was deleted
	followRecheck                     // history was compacted
)

// followLeader sends every new value of the leader's key kv, watched from
// after revision rev, until the key is deleted.
func (e *Election) followLeader(ctx context.Context, ch chan<- store.GetResponse, kv *store.KeyValue, rev int64) followResult {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := e.session.Store().Watch(wctx, string(kv.Key), store.WithRev(rev+1))
	for {
		wr, ok := <-wch
		if !ok {
			return followStop
		}
		if wr.CompactRevision != 0 {
			return followRecheck
		}
		if wr.Err() != nil {
			return followStop
		}
		for _, ev := range wr.Events {
			if ev.Type == store.DELETE {
				return followDeleted
			}
			hdr := wr.Header
			hdr.Revision = ev.Kv.ModRevision
			select {
			case ch <- store.GetResponse{Header: hdr, Kvs: []*store.KeyValue{cloneKV(ev.Kv)}, Count: 1}:
			case <-ctx.Done():
				return followStop
			}
		}
	}
}

// Key returns the election's candidacy key, or "" when it does not
// campaign.
func (e *Election) Key() string { return e.leaderKey }

// Rev returns the create revision of the election's candidacy key. Once
// Campaign has returned it is a fencing token: every later leader's key has
// a greater create revision.
func (e *Election) Rev() int64 { return e.leaderRev }

// Header returns the header of the last response Campaign, Proclaim or
// Resign received, or nil.
func (e *Election) Header() *store.ResponseHeader { return e.hdr }

// cloneKV copies a watch event's key-value, which the store shares among
// watchers, so the receiver owns what Observe hands out.
func cloneKV(kv *store.KeyValue) *store.KeyValue {
	c := *kv
	c.Key = append([]byte(nil), kv.Key...)
	c.Value = append([]byte(nil), kv.Value...)
	return &c
}
