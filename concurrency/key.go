package concurrency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/embedkv/store"
)

// The key layout, shared by Mutex and Election and identical to etcd's: a
// prefix pfx holds one key per contender, pfx + "/" + the contender's lease
// ID in lower-case hexadecimal, attached to that lease. The contenders are
// ordered by the keys' create revisions; the oldest one owns the lock or
// leads the election. A session therefore holds at most one key per
// prefix, and re-acquiring with the same session finds its key again.

// keyPrefix returns the directory under which the contenders of pfx live.
func keyPrefix(pfx string) string { return pfx + "/" }

// contenderKey returns the key a session with lease id creates under a
// directory made by keyPrefix.
func contenderKey(dir string, id store.LeaseID) string {
	return fmt.Sprintf("%s%x", dir, int64(id))
}

// withFirstCreate selects, of the keys under a prefix, the one with the
// smallest create revision: the owner (clientv3.WithFirstCreate).
func withFirstCreate() []store.OpOption {
	return []store.OpOption{
		store.WithPrefix(),
		store.WithSort(store.SortByCreateRevision, store.SortAscend),
		store.WithLimit(1),
	}
}

// withLastCreate selects, of the keys under a prefix, the one with the
// greatest create revision (clientv3.WithLastCreate). Combined with
// WithMaxCreateRev it finds a contender's predecessor.
func withLastCreate() []store.OpOption {
	return []store.OpOption{
		store.WithPrefix(),
		store.WithSort(store.SortByCreateRevision, store.SortDescend),
		store.WithLimit(1),
	}
}

// errRecheck tells waitDeletes to read the queue again: the watch could not
// continue from the revision it needed (history was compacted), so the
// predecessor must be looked up afresh.
var errRecheck = errors.New("concurrency: re-read the queue")

// waitDeletes blocks until no key under pfx has a create revision of
// maxCreateRev or less, that is until every contender ahead of the caller
// has gone. It waits for one predecessor at a time — the youngest key older
// than the caller — so that a release wakes only the next contender, and
// looks again after each deletion, because an older key may still be there
// (etcd's waitDeletes).
//
// It returns the header of the read that found the queue empty ahead of
// the caller. It fails with ErrSessionExpired as soon as sess's lease is
// lost, with ctx's error when ctx ends, or with the store's error.
func waitDeletes(ctx context.Context, sess *Session, pfx string, maxCreateRev int64) (*store.ResponseHeader, error) {
	st := sess.Store()
	opts := append(withLastCreate(), store.WithMaxCreateRev(maxCreateRev))
	for {
		if sess.lost() {
			return nil, ErrSessionExpired
		}
		resp, err := get(ctx, st, pfx, opts...)
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			return &resp.Header, nil
		}
		err = waitDelete(ctx, sess, string(resp.Kvs[0].Key), resp.Header.Revision)
		if err != nil && !errors.Is(err, errRecheck) {
			return nil, err
		}
	}
}

// waitDelete blocks until key, which existed at revision rev, is deleted.
// The watch replays history from rev+1, so a deletion between the read and
// the watch is not missed; nothing is polled.
func waitDelete(ctx context.Context, sess *Session, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := sess.Store().Watch(wctx, key, store.WithRev(rev+1), store.WithFilterPut())
	for {
		select {
		case <-sess.Done():
			return ErrSessionExpired
		case wr, ok := <-wch:
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fmt.Errorf("concurrency: lost watcher waiting for the deletion of %q: %w", key, store.ErrStopped)
			}
			if wr.CompactRevision != 0 {
				return errRecheck
			}
			if err := wr.Err(); err != nil {
				if cerr := ctx.Err(); cerr != nil {
					return cerr
				}
				return err
			}
			for _, ev := range wr.Events {
				if ev.Type == store.DELETE {
					return nil
				}
			}
		}
	}
}

// oldest reads the owner of the queue under dir: the key with the smallest
// create revision, or nil when the queue is empty.
func oldest(ctx context.Context, st *store.Store, dir string) (*store.GetResponse, *store.KeyValue, error) {
	resp, err := get(ctx, st, dir, withFirstCreate()...)
	if err != nil {
		return nil, nil, err
	}
	if len(resp.Kvs) == 0 {
		return resp, nil, nil
	}
	return resp, resp.Kvs[0], nil
}

// ownerOf returns the key-value of the first Get response in a txn
// response's operations at index i, or nil when there is none.
func ownerOf(resp *store.TxnResponse, i int) *store.KeyValue {
	if resp == nil || i >= len(resp.Responses) {
		return nil
	}
	g := resp.Responses[i].Get()
	if g == nil || len(g.Kvs) == 0 {
		return nil
	}
	return g.Kvs[0]
}

// noLeaderRetry is the pause between reads retried for want of a raft
// leader.
const noLeaderRetry = 50 * time.Millisecond

// get is st.Get, retried while the cluster has no raft leader (an election
// after the leader node failed) until ctx ends, as etcd's client retries a
// read on another endpoint. Reads are idempotent; every other error is
// returned at once.
func get(ctx context.Context, st *store.Store, key string, opts ...store.OpOption) (*store.GetResponse, error) {
	for {
		resp, err := st.Get(ctx, key, opts...)
		if err == nil || !errors.Is(err, store.ErrNoLeader) {
			return resp, err
		}
		t := time.NewTimer(noLeaderRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// localRev returns the revision the store's node has applied, read locally
// without a round trip. A key created by a write submitted afterwards has a
// greater create revision.
func localRev(st *store.Store) int64 {
	resp, err := st.Get(context.Background(), "\x00", store.WithSerializable(), store.WithCountOnly())
	if err != nil {
		return 0
	}
	return resp.Header.Revision
}

// undoCreate cleans up after a write that may have created key and failed
// with an unknown outcome (typically: ctx ended while it was in flight). It
// deletes key only if it was created after revision before, that is by the
// failed attempt and not earlier (a lock already held through the same
// session stays held). It uses the session's clean-up context and is best
// effort: the key goes with the session's lease anyway.
func undoCreate(sess *Session, key string, before int64, err error) {
	if !errors.Is(err, store.ErrUnknownOutcome) || before <= 0 {
		return
	}
	cctx, cancel := sess.cleanupContext()
	defer cancel()
	_, _ = sess.Store().Txn(cctx).
		If(store.Compare(store.CreateRevision(key), ">", before)).
		Then(store.OpDelete(key)).
		Commit()
}
