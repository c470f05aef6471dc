// Package mvcc is an in-memory, multi-version key-value store with the
// semantics of etcd v3's mvcc package, written by a single goroutine (the
// Raft FSM) and read concurrently through immutable copy-on-write Views.
// Everything is deterministic: no clocks, no randomness, no dependence on
// map iteration order, so every replica that applies the same writes ends
// in the same state.
//
// # Usage
//
// The writer (the Raft FSM) applies each command in a write transaction and
// publishes a View once per applied batch:
//
//	tx := s.Write()
//	prev := tx.Put([]byte("foo"), []byte("a"), 0) // nil: foo is new
//	deleted := tx.DeleteRange([]byte("tmp/"), mvcc.PrefixEnd([]byte("tmp/")))
//	evs := tx.End() // the revision's events, for the watchers
//	v := s.View()   // hand this to readers
//
// Readers use the View from any goroutine, for as long as they like:
//
//	r, err := v.Range([]byte("foo/"), mvcc.PrefixEnd([]byte("foo/")), mvcc.RangeOptions{Limit: 10})
//	err = v.Events(watchRev, key, end, func(rev int64, evs []*mvcc.Event) bool {
//		return send(rev, evs) // false stops the catch-up
//	})
//
// Snapshots go through View.Dump and Load; compaction through
// Store.Compact.
//
// # Revisions
//
// The store has a global revision, 1 when empty. Every write transaction
// (Store.Write ... WriteTxn.End) that changes something bumps it by exactly
// one; all its changes share that main revision and get sub-revisions 0, 1,
// 2, ... in the order performed. A transaction that writes nothing, or a
// DeleteRange that matches nothing, leaves the revision alone.
//
// Each version of a key carries CreateRevision (the revision of the put
// that created the key's current generation), ModRevision (the revision of
// its last modification), Version (1 on create, +1 on every put) and Lease.
// A delete writes a tombstone that ends the generation: the key is absent
// from the delete's revision on, but still readable at earlier revisions; a
// later put starts a new generation at Version 1.
//
// # A worked example
//
// Starting from an empty store (revision 1):
//
//	rev  write          result
//	2    put foo=a      foo: create 2, mod 2, version 1
//	3    put foo=b      foo: create 2, mod 3, version 2
//	4    put bar=x      bar: create 4, mod 4, version 1
//	5    delete foo     tombstone for foo at 5
//	6    put foo=c      foo: create 6, mod 6, version 1 (a new generation)
//
// The history of foo is then, newest first (this is also the order of the
// history tree, see below):
//
//	(foo, 6.0) foo=c create 6 version 1
//	(foo, 5.0) tombstone
//	(foo, 3.0) foo=b create 2 version 2
//	(foo, 2.0) foo=a create 2 version 1
//
// and reads of foo return, at each revision (Rev 0 means the current one):
//
//	Rev 1        nothing (the empty store)
//	Rev 2        foo=a  create 2, mod 2, version 1
//	Rev 3, 4     foo=b  create 2, mod 3, version 2
//	Rev 5        nothing (the tombstone), though Rev 4 still shows foo=b
//	Rev 6 or 0   foo=c  create 6, mod 6, version 1
//	Rev 7        ErrFutureRev
//
// A range over all keys at Rev 5 returns only bar (Count 1); at Rev 4 it
// returns bar and foo (Count 2). The event log holds one entry per
// revision, each event with the previous version of its key:
//
//	2  PUT foo=a                       prev nil
//	3  PUT foo=b                       prev foo=a
//	4  PUT bar=x                       prev nil
//	5  DELETE {Key foo, ModRevision 5}  prev foo=b
//	6  PUT foo=c                       prev nil
//
// Compact(4) makes revisions below 4 unreadable and drops what no read at
// 4 or later can see: for each key it keeps the versions newer than 4 plus
// the newest one at or below 4 (unless that is a tombstone). foo keeps 6.0,
// 5.0 and 3.0 and loses 2.0; bar keeps 4.0. A read at Rev 3 now fails with
// ErrCompacted, a read at Rev 4 still returns bar=x and foo=b, and the event
// log keeps revisions 4 to 6.
//
// Compact(5) then finds foo's newest version at or below 5 to be the
// tombstone, so it drops both the tombstone and foo=b: only foo=c is left.
// The delete event at exactly revision 5 stays in the log (etcd loses it),
// still carrying PrevKv foo=b, so a watcher catching up from revision 5 with
// previous values sees the full delete even though foo=b itself is gone from
// history.
//
// # Reads and ranges
//
// Ranges follow etcd: end nil selects the key alone, end []byte{0} every
// key >= key (all keys when key is []byte{0} as well), any other end the
// half-open interval [key, end). PrefixEnd builds the end of a prefix
// range. RangeOptions and RangeResult reproduce etcd v3.5's server-side
// Range: Count ignores Limit and the min/max filters; sorting and filtering
// fetch everything and then truncate to Limit; More reports truncation.
//
// # Concurrency
//
// A Store is used by one goroutine. Store.View returns, in O(1), an
// immutable View of the current state that any number of goroutines may
// use, forever: the trees are B-trees (github.com/tidwall/btree) whose Copy
// is copy-on-write, so the writer clones the nodes on the paths it touches
// after a View and never modifies a node a View can reach. Stored KeyValues
// and Events are never modified after insertion and are shared with readers,
// who must treat them as read-only.
//
// # Data structure
//
// Three trees of small value items (keys are inlined, so lookups allocate
// nothing):
//
//   - latest: key → current version, for the live keys only. Reads at the
//     current revision (the common case) walk it directly, without
//     skipping history or tombstones.
//   - hist: every retained version and tombstone, ordered by key ascending
//     then (revision, sub-revision) descending. The newest version of a
//     key at revision r is the first item at or after (key, r, max); a
//     range read takes that item for each key and seeks past the rest of
//     the key's history, so a long history costs O(log n), not O(history).
//   - events: one item per revision holding that revision's events in
//     sub-revision order. Catch-up is a seek and a scan; unfiltered
//     catch-up allocates nothing per revision.
//
// Compaction visits the keys changed since the last compaction, or scans
// the whole history (as etcd's does) when they are many, and removes each
// key's dropped items in one descent of the tree.
//
// Every version owns its KeyValue and one buffer with its key and value
// bytes; its Event is a separate allocation. Nothing a version keeps
// reachable belongs to an older version, so a compacted version is garbage
// as soon as the last View, event or reader holding it lets go.
//
// # Snapshots
//
// View.Dump writes the state as opaque records and Load rebuilds it. Rather
// than copying the history, a snapshot holds the live keys at the
// compaction revision plus the event log, and Load replays the events above
// the compaction revision through ordinary write transactions; the result
// is consistent by construction and equal, read for read, to the dumped
// View. Load validates everything and reports bad input with ErrCorrupt.
// The format is described in dump.go.
package mvcc
