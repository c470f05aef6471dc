package concurrency

import (
	"context"
	"errors"

	"github.com/embedkv/store"
)

// Mutex is a fair distributed lock on a key prefix, held by a Session.
//
// Lock puts the session's key pfx + "/" + lease ID under the prefix; the
// key with the smallest create revision holds the lock, and the others wait,
// in create-revision order, for the deletion of the key just ahead of them.
// Unlock deletes the key; so does the loss of the session, since the key is
// attached to its lease.
//
// A Mutex is not safe for concurrent use. Two Mutexes on one prefix that
// share a Session share one key and so do not exclude each other; give each
// contender its own Session.
type Mutex struct {
	s     *Session
	pfx   string // the prefix given to NewMutex, with "/" appended
	myKey string // the session's key under pfx; "" before the first Lock
	myRev int64  // its create revision; -1 when not holding or waiting
	hdr   *store.ResponseHeader
}

// NewMutex returns a mutex on prefix pfx held through session s. Nothing is
// written until Lock or TryLock.
func NewMutex(s *Session, pfx string) *Mutex {
	return &Mutex{s: s, pfx: keyPrefix(pfx), myRev: -1}
}

// TryLock acquires the lock if nobody holds it, without waiting. If another
// session holds it, TryLock removes the key it put and returns ErrLocked.
// Calling it again while holding the lock succeeds.
func (m *Mutex) TryLock(ctx context.Context) error {
	resp, err := m.tryAcquire(ctx)
	if err != nil {
		return err
	}
	if m.acquired(resp) {
		return nil
	}
	// Held by another session: withdraw from the queue. The clean-up
	// survives ctx ending, so no key is left behind to block others.
	cctx, cancel := m.s.cleanupContext()
	defer cancel()
	if _, err := m.s.Store().Delete(cctx, m.myKey); err != nil {
		return err
	}
	m.myKey, m.myRev = "\x00", -1
	return ErrLocked
}

// acquired reports, after tryAcquire, whether no key is older than ours
// (we hold the lock), and records the response header if so.
func (m *Mutex) acquired(resp *store.TxnResponse) bool {
	if owner := ownerOf(resp, 1); owner == nil || owner.CreateRevision == m.myRev {
		m.hdr = &resp.Header
		return true
	}
	return false
}

// Lock acquires the lock, waiting as long as ctx allows. Waiters acquire in
// the order they called Lock (the order of their keys' create revisions).
// Calling it again while holding the lock returns at once.
//
// Lock returns ErrSessionExpired if the session is lost before or while it
// waits, or if its key is gone when its turn comes. When waiting fails
// (ctx ended, lost session, store error) it withdraws its key, so it does
// not block later waiters.
func (m *Mutex) Lock(ctx context.Context) error {
	resp, err := m.tryAcquire(ctx)
	if err != nil {
		return err
	}
	if m.acquired(resp) {
		return nil
	}

	// Wait for every key created before ours to go, one predecessor at a
	// time.
	if _, err := waitDeletes(ctx, m.s, m.pfx, m.myRev-1); err != nil {
		m.abandon()
		return err
	}

	// Our turn; make sure our key survived the wait: a lost session takes
	// it away (and with it the lock) even if Done has not closed yet.
	gresp, err := get(ctx, m.s.Store(), m.myKey)
	if err != nil {
		m.abandon()
		return err
	}
	if len(gresp.Kvs) == 0 || gresp.Kvs[0].CreateRevision != m.myRev {
		m.myKey, m.myRev = "\x00", -1
		return ErrSessionExpired
	}
	m.hdr = &gresp.Header
	return nil
}

// tryAcquire puts the session's key in the queue (or finds it there, when
// the session already holds or waits for this lock) and, in the same
// transaction, reads the owner.
func (m *Mutex) tryAcquire(ctx context.Context) (*store.TxnResponse, error) {
	if m.s.lost() {
		return nil, ErrSessionExpired
	}
	st := m.s.Store()
	lease := m.s.Lease()
	m.myKey = contenderKey(m.pfx, lease)
	cmp := store.Compare(store.CreateRevision(m.myKey), "=", 0)
	// Put self in the queue; the oldest key holds the lock.
	put := store.OpPut(m.myKey, "", store.WithLease(lease))
	// Reuse the key if this session already holds or waits for the lock.
	get := store.OpGet(m.myKey)
	// Read the owner, so the uncontended path needs one round trip.
	getOwner := store.OpGet(m.pfx, withFirstCreate()...)
	before := localRev(st)
	resp, err := st.Txn(ctx).If(cmp).Then(put, getOwner).Else(get, getOwner).Commit()
	if err != nil {
		// If the outcome is unknown (ctx ended while the write was in
		// flight, say), the key may exist: remove it if this attempt made
		// it, so it does not hold or block the lock unseen.
		undoCreate(m.s, m.myKey, before, err)
		m.myRev = -1
		return nil, m.s.sessionErr(err)
	}
	m.myRev = resp.Header.Revision
	if !resp.Succeeded {
		kv := ownerOf(resp, 0)
		if kv == nil {
			// Cannot happen: the compare saw the key. Be safe anyway.
			m.myRev = -1
			return nil, errors.New("concurrency: mutex key vanished inside a transaction")
		}
		m.myRev = kv.CreateRevision
	}
	return resp, nil
}

// abandon withdraws the key after a failed wait (etcd unlocks with the
// client's context). The clean-up outlives ctx; its error is dropped, as the
// wait's error is the one that matters, and the key goes with the session's
// lease anyway.
func (m *Mutex) abandon() {
	cctx, cancel := m.s.cleanupContext()
	defer cancel()
	_ = m.Unlock(cctx)
}

// Unlock releases the lock (or gives up waiting for it) by deleting the
// session's key, which wakes the next waiter. Unlocking a mutex that does
// not hold the lock does nothing.
func (m *Mutex) Unlock(ctx context.Context) error {
	if m.myKey == "" || m.myKey == "\x00" {
		return nil
	}
	if _, err := m.s.Store().Delete(ctx, m.myKey); err != nil {
		return err
	}
	m.myKey, m.myRev = "\x00", -1
	return nil
}

// IsOwner returns a comparison that holds only while this mutex owns the
// lock: its key exists with the create revision it had when acquired. Put
// it in the If of a transaction to make writes conditional on ownership;
// once the lock is released or the session lost, the comparison fails.
//
// It is meaningful once Lock or TryLock has returned nil: while Lock still
// waits, the waiter's key exists too and the comparison holds (as in etcd).
func (m *Mutex) IsOwner() store.Cmp {
	key := m.myKey
	if key == "" {
		key = "\x00" // never locked: a comparison that never holds
	}
	return store.Compare(store.CreateRevision(key), "=", m.myRev)
}

// Key returns the session's key under the prefix while locked or waiting;
// "" before the first Lock and "\x00" after Unlock or a failed TryLock, as
// in etcd.
func (m *Mutex) Key() string { return m.myKey }

// Header returns the header of the response with which the lock was
// acquired, or nil. Its Revision is at least the key's create revision and
// can serve as a fencing token: it is greater for every later owner.
func (m *Mutex) Header() *store.ResponseHeader { return m.hdr }
