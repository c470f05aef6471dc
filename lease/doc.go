// Package lease decides, on the Raft leader only, when leases expire.
//
// # What is replicated and what is not
//
// A lease is replicated state: every node's FSM (in the root package) holds
// its ID, its granted TTL, the raft index of its last grant or renewal, and
// a "recorded remaining TTL" written by the last grant, renew or checkpoint
// entry. What is not replicated is a deadline. Wall clocks of different
// machines disagree and raft entries are applied at different moments on
// different nodes, so no node may decide "this lease is over" from the log
// alone.
//
// # Leader-only expiry
//
// The Lessor of this package is the one place where time is counted. It is
// idle on followers: it tracks nothing and runs no goroutine. When the node
// becomes leader the root calls [Lessor.Promote] with every lease's State; the
// Lessor arms each one with
//
//	deadline = now + State.Remaining
//
// on the leader's own monotonic [Clock], keeps the deadlines in a min-heap
// indexed by lease ID (every operation O(log n)), and runs one goroutine that
// sleeps until the earliest deadline. The Lessor never deletes anything: it
// hands expired leases to [Config.OnExpire], and the root proposes an
// "expire" command through raft. That entry carries [Expired.RenewIndex], the
// raft index of the lease's last grant or renewal as the Lessor knew it, so
// the FSM can ignore an expiry that raced with a renewal committed just
// before it. Grants and renewals applied while leading re-arm the deadline
// ([Lessor.Upsert]); revocations and applied expiries forget the lease
// ([Lessor.Remove]). On losing leadership the root calls [Lessor.Demote] and
// the Lessor forgets every deadline.
//
// A lease handed to OnExpire stays tracked in an "expiring" state until the
// root removes it: [Lessor.Remaining] then answers 0, and if the lease is
// still there after [Config.RetryInterval] (the proposal failed, or the FSM
// ignored it) it is reported again. Expiries are rate limited
// ([Config.MaxExpirePerSec], 1000 per second by default as in etcd) so that a
// mass expiry does not flood raft; the rest wait for the next second.
//
// # Checkpoints
//
// A new leader knows only the recorded remaining TTL of each lease, which
// the last grant or renewal set to the full TTL. Without help, a lease of a
// one-hour TTL granted 59 minutes before a leader change would get another
// full hour. So the leader periodically proposes checkpoint entries that
// record, for each lease, the remaining TTL it actually measures.
// [Lessor.Checkpoints] tells the root which leases need one: those whose
// actual remaining TTL is below the recorded one by more than a threshold,
// smallest remaining first, at most a given number per entry.
//
// # How late, never how early
//
// On the leader that keeps its leadership, a lease expires at its deadline
// (plus scheduling and rate-limit delay). After a leader change the new
// leader re-arms from the last recorded remaining TTL, which is at most one
// checkpoint interval (plus the checkpoint threshold) old, and it only
// becomes leader after an election. So a lease expires at most about
//
//	checkpoint interval + checkpoint threshold + election time
//
// later than it would have on the old leader, provided every drifted lease
// fits in one checkpoint entry per interval (otherwise the leases with the
// most remaining wait for a later round). It never expires early: a renewal
// resets the recorded remaining TTL through raft before the client is told
// it succeeded, and a checkpoint records a remaining TTL the leader measured
// on its deadline, which only lowers the recorded value towards the truth.
// A checkpoint measured before a renewal but applied after it would be
// stale; [Checkpoint.RenewIndex] lets the FSM ignore it. Time during which
// no leader exists is not counted against leases.
//
// # Concurrency
//
// Every method is safe for concurrent use. The Lessor's mutex is taken
// after the caller's own locks (the store calls Upsert and Remove while
// holding its lease table lock) and is never held while OnExpire or the
// Checkpoints callback runs, so both may take the caller's locks and may call
// the Lessor's non-blocking methods (IsPrimary, Upsert, Remove, Remaining,
// Checkpoints). [Lessor.Demote] and [Lessor.Close] wait for the goroutine,
// and so for an OnExpire call in progress: make OnExpire return promptly
// before demoting (cancel the context it proposes with first) and never call
// Demote or Close from OnExpire or while holding a lock OnExpire needs.
package lease
