package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/embedkv/store/mvcc"
	"github.com/embedkv/store/watch"
)

// EventType is the kind of a watch event.
type EventType int32

// Event types, as etcd's mvccpb.PUT and mvccpb.DELETE.
const (
	PUT    EventType = 0
	DELETE EventType = 1

	EventTypePut    = PUT    // clientv3's name for PUT
	EventTypeDelete = DELETE // clientv3's name for DELETE
)

// String returns "PUT" or "DELETE".
func (t EventType) String() string {
	switch t {
	case PUT:
		return "PUT"
	case DELETE:
		return "DELETE"
	}
	return fmt.Sprintf("EventType(%d)", int32(t))
}

// Event is one change seen by a watcher. For a DELETE, Kv holds the key and
// the revision of the delete (ModRevision) only. PrevKv is set when the watch
// asked for WithPrevKV and the key existed before.
//
// Events are shared by all watchers of the same key with the same options:
// treat them as read-only.
type Event struct {
	Type   EventType
	Kv     *KeyValue
	PrevKv *KeyValue
}

// IsCreate reports whether the event created the key.
func (e *Event) IsCreate() bool {
	return e.Type == PUT && e.Kv.CreateRevision == e.Kv.ModRevision
}

// IsModify reports whether the event modified an existing key.
func (e *Event) IsModify() bool {
	return e.Type == PUT && e.Kv.CreateRevision != e.Kv.ModRevision
}

// WatchChan delivers a watch's responses. It is closed when the watch's
// context is done, when the store closes, or after a response with Canceled
// set.
type WatchChan <-chan WatchResponse

// WatchResponse carries the events of one or more consecutive revisions (all
// events of one revision always come in the same response), a progress
// notification (no events, Header.Revision = the revision the watch has
// caught up to), or a cancellation (Canceled, with Err saying why).
type WatchResponse struct {
	Header          ResponseHeader
	Events          []*Event
	CompactRevision int64 // set when the requested start revision was compacted
	Canceled        bool
	err             error
}

// Err returns why the watch was cancelled: ErrCompacted when the revision
// it needed was compacted (CompactRevision says where history starts now),
// ErrStopped when the store closed, or the validation error of a bad Watch
// call. It returns nil for an ordinary response.
func (wr WatchResponse) Err() error {
	switch {
	case wr.CompactRevision != 0:
		return ErrCompacted
	case wr.Canceled && wr.err != nil:
		return wr.err
	case wr.Canceled:
		return ErrStopped
	}
	return nil
}

// IsProgressNotify reports whether the response is a progress notification.
func (wr WatchResponse) IsProgressNotify() bool {
	return len(wr.Events) == 0 && !wr.Canceled && wr.CompactRevision == 0 && wr.Header.Revision != 0
}

// Watch watches key (or the range the options select) and returns a channel
// of changes. It works on every node, followers included, and never blocks
// writes: a watcher that does not keep up is caught up from history later.
//
// Options: WithPrefix, WithRange, WithFromKey, WithRev (replay history from
// that revision, then continue live, with no gap and no duplicate; a
// revision below the compaction point yields one response with
// CompactRevision set and Canceled, whose Err matches ErrCompacted), WithPrevKV,
// WithFilterPut, WithFilterDelete, WithProgressNotify. Without WithRev the
// watch starts after the revision this node has applied when Watch is called.
//
// Events arrive strictly ordered by revision, each once, none skipped. A bad
// argument yields a single cancelled response whose Err says what is wrong.
// The channel closes when ctx is done or the store closes.
func (s *Store) Watch(ctx context.Context, key string, opts ...OpOption) WatchChan {
	if err := s.usable(); err != nil {
		return canceledWatch(s, err)
	}
	op := Op{t: opGet, key: []byte(key)}
	op.apply(opts)
	o, err := op.watchOptions()
	if err != nil {
		return canceledWatch(s, err)
	}
	// Views are published lazily (see fsm): from here on every batch
	// publishes one, and read hands the hub a view of everything applied
	// so far, so the watcher misses nothing nor waits for the next write.
	s.watchSetup.Add(1)
	defer s.watchSetup.Add(-1)
	st, err := s.fsm.read(ctx, s.stopCh)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		st = s.fsm.current() // the hub closes the watch at once
	default:
		return canceledWatch(s, err) // closing
	}
	if o.StartRev == 0 {
		o.StartRev = st.view.Rev() + 1
	}
	return WatchChan(s.hub.Watch(ctx, o))
}

func (op *Op) watchOptions() (watch.Options, error) {
	if op.readShapeOptionsSet() || op.lease != 0 || op.ignoreValue || op.ignoreLease || op.serializable {
		return watch.Options{}, fmt.Errorf("%w: read and write options do not apply to Watch", ErrInvalidArgument)
	}
	if op.rev < 0 {
		return watch.Options{}, fmt.Errorf("%w: negative revision %d", ErrInvalidArgument, op.rev)
	}
	key, end, err := op.keyRange()
	if err != nil {
		return watch.Options{}, err
	}
	return watch.Options{
		Key: key, End: end, StartRev: op.rev,
		FilterPut: op.filterPut, FilterDelete: op.filterDelete,
		PrevKV: op.prevKV, ProgressNotify: op.progressNotify,
	}, nil
}

func canceledWatch(s *Store, err error) WatchChan {
	ch := make(chan WatchResponse, 1)
	rev := int64(0)
	if st := s.fsm.current(); st != nil {
		rev = st.view.Rev()
	}
	ch <- WatchResponse{Header: s.header(rev), Canceled: true, err: err}
	close(ch)
	return ch
}

// convertBatch turns a hub batch into a WatchResponse. It runs on the hub's
// goroutine; the hub may share the result among watchers with the same key
// and options.
func (s *Store) convertBatch(b watch.Batch) WatchResponse {
	wr := WatchResponse{Header: s.header(b.Rev), CompactRevision: b.CompactRev, Canceled: b.Canceled}
	switch {
	case b.Err == nil:
	case errors.Is(b.Err, mvcc.ErrCompacted):
		wr.err = ErrCompacted
	case errors.Is(b.Err, watch.ErrClosed):
		wr.err = ErrStopped
	default:
		wr.err = b.Err
	}
	if len(b.Events) > 0 {
		wr.Events = make([]*Event, len(b.Events))
		for i, ev := range b.Events {
			e := &Event{Type: PUT, Kv: toKV(ev.Kv)}
			if ev.Type == mvcc.EventDelete {
				e.Type = DELETE
			}
			if b.PrevKV && ev.PrevKv != nil {
				e.PrevKv = toKV(ev.PrevKv)
			}
			wr.Events[i] = e
		}
	}
	return wr
}
