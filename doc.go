// Package store embeds a replicated, etcd-compatible key-value store in a Go
// process.
//
// Every process that calls Open becomes a node; nodes replicate through Raft
// (hashicorp/raft, logs in bolt files with fsync) over one TCP port each, and
// the application gets Put, Get, Delete, Txn and Compact as plain in-process
// calls whose names, options and responses follow etcd's clientv3.
//
// # Basics
//
//	s, err := store.Open(store.Config{
//		NodeID: "n1", Dir: "/var/lib/app/kv", BindAddr: "10.0.0.1:7000",
//		Peers:  []store.Peer{{ID: "n1", Addr: "10.0.0.1:7000"}, {ID: "n2", Addr: "10.0.0.2:7000"}, {ID: "n3", Addr: "10.0.0.3:7000"}},
//	})
//	defer s.Close()
//	s.Put(ctx, "sample_key", "sample_value")
//	resp, err := s.Get(ctx, "sample_key")
//
// An empty Peers list gives a single-node store.
//
// # Revisions
//
// The store is multi-version, like etcd's: a global revision starts at 1 and
// every write (a Put, a Delete that deletes something, a Txn that writes) adds
// one. All changes of one Txn share a revision. Each key records its
// CreateRevision, ModRevision and Version; a delete leaves a tombstone, and a
// later put starts a new generation at Version 1. Reads can ask for any
// revision at or above the compaction point (WithRev). The leader compacts
// history automatically, keeping Config.CompactionRetention revisions;
// Compact compacts explicitly.
//
// # Consistency
//
// Writes are accepted on any node: a follower forwards them to the leader and
// returns only after it has applied the write itself, so a process reads its
// own writes on its own node. Reads are linearizable by default on every
// node (read-index: the leader confirms its leadership with one heartbeat
// round shared by all reads waiting at that moment; a follower asks the
// leader for the index and waits until it has applied it). WithSerializable
// reads the local node's applied state: faster, possibly stale, available
// without a leader.
//
// # Errors
//
// Every error can be matched with errors.Is against the sentinels in
// errors.go. Invalid requests (empty key, oversize, too many txn operations,
// a key written twice in one txn, an unknown lease) fail before anything is
// proposed and change nothing. A write whose outcome cannot be known (the
// leader lost leadership after proposing it, the connection to the leader
// broke after sending, the context ended while waiting) fails with
// ErrUnknownOutcome: it may or may not have been applied, and the store never
// retries it on its own.
//
// # Watch
//
// Watch streams the changes of a key, prefix or range from any node. Events
// are ordered by revision, never duplicated or skipped, and all events of one
// revision arrive in one response; WithRev resumes from any revision still in
// history. A slow consumer never slows writes: it is caught up from history
// later, or cancelled with ErrCompacted if that history is gone.
//
// # Leases
//
// Grant creates a lease; keys written WithLease are deleted, in one
// revision, when it expires or is revoked. KeepAlive renews it. Renewals are
// raft entries; only the leader counts time, and it records remaining TTLs
// through raft every Config.LeaseCheckpointInterval, so after a leader change
// a lease expires at most about 1.5 checkpoint intervals plus the election
// time late, and never early. The concurrency subpackage builds sessions,
// mutexes and elections on leases.
//
// # Cluster and operations
//
// A cluster starts from a Peers list (the same on every node) or grows by
// Join: a node started with the addresses of running members is added by
// the leader as a non-voter and promoted to voter once it has caught up.
// Members, AddMember and RemoveMember manage membership from any node; a
// removed node fails every call with ErrRemoved. Each cluster has an ID
// that every connection announces, so nodes of different clusters refuse
// each other (ErrWrongCluster). With Config.TLS every peer connection is
// mutual TLS, and a certificate must name the node ID its holder announces
// (package peertls). Snapshot writes a consistent backup of the whole store
// and Restore seeds a new data directory from one.
//
// # Caveats
//
// Every node keeps the whole data set in memory. Peers only matters on the
// very first start (bootstrap); later starts recover the membership from
// the raft log, and a node that comes back on a new address needs Join.
package store
