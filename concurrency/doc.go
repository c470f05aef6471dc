// Package concurrency implements distributed coordination recipes — sessions,
// mutexes and leader elections — on top of an embedkv store. It mirrors
// etcd's go.etcd.io/etcd/client/v3/concurrency package (v3.5): the same
// types, method names, key layout and semantics, with a *store.Store in
// place of a *clientv3.Client. Code written against etcd's package ports by
// changing the import and passing the store instead of the client.
//
// # Sessions
//
// A Session is a lease that is kept alive in the background for as long as
// the session lives:
//
//	sess, err := concurrency.NewSession(st, concurrency.WithTTL(10))
//	if err != nil { ... }
//	defer sess.Close()
//
// Every key a recipe writes is attached to the session's lease, so when the
// owning process dies, or its node is cut off from the cluster, the lease
// expires after its TTL and the keys disappear: a lock held by a crashed
// process is released, a crashed leader steps down. Session.Done is closed
// once the lease can no longer be kept alive (it expired, was revoked, the
// session's context ended, the session was closed or orphaned, or the
// session's store closed).
//
// # Usage
//
// A lock, with a write that only the owner can make:
//
//	m := concurrency.NewMutex(sess, "/locks/orders")
//	if err := m.Lock(ctx); err != nil { ... }
//	resp, err := st.Txn(ctx).If(m.IsOwner()).Then(store.OpPut("/orders/next", "42")).Commit()
//	if err == nil && !resp.Succeeded {
//		// The session was lost: the lock is no longer ours.
//	}
//	if err := m.Unlock(ctx); err != nil { ... }
//
// An election, with a follower that tracks the leader:
//
//	e := concurrency.NewElection(sess, "/election/orders")
//	if err := e.Campaign(ctx, "node-a"); err != nil { ... } // blocks until leading
//	defer e.Resign(context.Background())
//
//	for resp := range concurrency.NewElection(otherSess, "/election/orders").Observe(ctx) {
//		fmt.Printf("leader is %s\n", resp.Kvs[0].Value)
//	}
//
// # Mutex
//
// A Mutex is a fair distributed lock. Each contender creates the key
// prefix + "/" + lease ID in hexadecimal, attached to its session's lease;
// the contender whose key has the smallest create revision holds the lock.
// A waiter watches only the key created just before its own (its
// predecessor) and, when that key is deleted, re-checks whether an older one
// remains, so waiters acquire the lock in the order they asked for it and a
// release wakes exactly one waiter. Waiting uses the store's Watch from the
// revision the waiter last read; it never polls.
//
// # Election
//
// An Election is the same queue used for leader election: the oldest
// candidate is the leader, and its key's value is the leader's proclaimed
// value. Campaign blocks until the caller leads; Proclaim changes the value
// without giving up leadership; Resign steps down; Leader reads the current
// leader; Observe streams every change of leader or of its value.
//
// # Guarantees and caveats
//
// Ownership is held by a key, not by a process. What this package
// guarantees is about the key: at any revision, at most one session's key is
// the oldest under a prefix, and a key exists only while its lease is alive.
// What it cannot guarantee is that a process still believes it owns the lock
// after losing it: a session can be lost (a partition longer than the TTL, a
// long GC pause, the session's node closing) while the holder is inside its
// critical section, and the holder learns of it only later, through
// Session.Done. Protect the data the lock guards accordingly:
//
//   - Guard writes with Mutex.IsOwner (or compare the election key's create
//     revision, Election.Rev) in the same transaction:
//
//     st.Txn(ctx).If(m.IsOwner()).Then(store.OpPut("counter", v)).Commit()
//
//     Once the session's lease is gone the key is gone, the comparison fails
//     and the write is not applied, however late the holder notices.
//
//   - Or use the key's create revision (Mutex.Header().Revision after Lock,
//     Election.Rev after Campaign) as a fencing token for systems outside
//     the store: it increases with each new owner.
//
//   - For an election, a lost session makes the leader's key vanish; the
//     next candidate becomes leader and Observe reports it. A deposed leader
//     whose Proclaim fails gets ErrElectionNotLeader.
//
// A lease's TTL is at least the store's minimum lease TTL (one and a half
// election timeouts, at least one second), and expiry may be late — never
// early — by up to about one and a half lease checkpoint intervals after a
// change of raft leader; see store.Config.LeaseCheckpointInterval. A waiter
// whose session is lost while it waits gets ErrSessionExpired.
//
// Timing, for a session with TTL t whose process or node stops: its keys,
// and so its lock or leadership, are gone about t later; the next waiter or
// candidate learns it through its watch within milliseconds. A session that
// keeps running but whose lease is revoked sees Done close at its next
// renewal, at most about t/3 later. Choose t as the longest time the
// system may go without an owner after a crash.
//
// Mutex and Election values are not safe for concurrent use by several
// goroutines; a Session is. Use one Mutex (or Election) per goroutine,
// each with its own Session if the goroutines must exclude one another: two
// Mutexes on the same prefix sharing one Session share one key, and so one
// lock, exactly as in etcd.
//
// # Differences from etcd
//
//   - NewSession takes a *store.Store; Session.Store replaces Session.Client.
//   - Header returns a *store.ResponseHeader; responses are store types.
//   - ResumeElection appends "/" to the prefix, as NewElection does (etcd's
//     ResumeElection uses the prefix as given, so its Leader and Observe
//     would also see keys of other prefixes starting with the same bytes).
//   - A waiting Lock or Campaign returns ErrSessionExpired as soon as the
//     session is lost, instead of waiting for its predecessors first.
//   - Campaign checks, after waiting, that its key still exists: it
//     returns ErrSessionExpired if the session was lost and
//     ErrElectionNotFound if the key was deleted by someone else.
//   - When its wait fails with a store error, Campaign keeps the
//     candidacy so that Resign can withdraw it (etcd forgets the key,
//     which then stays until the session ends).
//   - Lock, TryLock and Campaign whose first write fails with an unknown
//     outcome (store.ErrUnknownOutcome, e.g. ctx ended while it was in
//     flight) delete the key if that write created it, so a cancelled
//     call leaves no key behind to hold the lock or lead unseen.
//   - Session.Close revokes the lease even if the session's context has
//     ended (the revocation is still bounded by the TTL).
//   - Error messages start with "concurrency: ".
package concurrency

import "errors"

// Sentinel errors, with etcd's names. Match them with errors.Is: an error
// may also wrap the store error that caused it.
var (
	// ErrLocked is returned by Mutex.TryLock when another session holds
	// the lock.
	ErrLocked = errors.New("concurrency: mutex locked by another session")
	// ErrSessionExpired is returned by Mutex.Lock, Mutex.TryLock and
	// Election.Campaign when the session's lease was lost (expired,
	// revoked, or the session closed) before or while acquiring.
	ErrSessionExpired = errors.New("concurrency: session is expired")
	// ErrElectionNotLeader is returned by Election.Proclaim when the
	// election is not the leader (it never campaigned, resigned, or its key
	// is gone).
	ErrElectionNotLeader = errors.New("concurrency: election not leader")
	// ErrElectionNoLeader is returned by Election.Leader when no candidate
	// campaigns under the prefix.
	ErrElectionNoLeader = errors.New("concurrency: election no leader")
	// ErrElectionNotFound is returned by Election.Campaign when its
	// candidacy key was deleted by something other than the loss of its
	// session (a Resign through another Election value, a direct Delete)
	// while it waited to lead.
	ErrElectionNotFound = errors.New("concurrency: election not found")
)
