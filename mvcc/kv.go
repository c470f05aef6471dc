package mvcc

import (
	"bytes"
	"errors"
	"math"
)

// Sentinel errors. Match them with errors.Is; Load wraps ErrCorrupt with
// detail about what was wrong.
var (
	// ErrCompacted is returned when a read, a compaction or an event catch-up
	// asks for a revision that compaction has already removed.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev is returned when a read or a compaction asks for a
	// revision newer than the store's (or the view's) current revision.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrCorrupt is returned (wrapped) by Load when the snapshot records are
	// truncated, oversized, malformed or inconsistent.
	ErrCorrupt = errors.New("mvcc: corrupt snapshot data")
)

// KeyValue is one version of a key, as returned by reads and carried by
// events. KeyValues handed out by the store are shared with the store's
// history and with every reader: they must be treated as read-only. The
// store never modifies a KeyValue after it has been inserted.
type KeyValue struct {
	// Key is the key. Never modified; may be shared between versions.
	Key []byte
	// Value is the value. Nil for a delete event's Kv and for KeysOnly reads.
	Value []byte
	// CreateRevision is the main revision of the put that created the
	// current generation of the key (0 in a delete event's Kv).
	CreateRevision int64
	// ModRevision is the main revision of the last modification: the put
	// itself, or for a delete event's Kv the revision of the delete.
	ModRevision int64
	// Version counts the puts since the key was (re)created: 1 on create,
	// +1 on every put. 0 only in a delete event's Kv (a tombstone).
	Version int64
	// Lease is the ID of the lease attached to the key, 0 for none.
	Lease int64
}

// isTombstone reports whether kv is a delete marker (a delete event's Kv,
// also stored in history). Live versions always have Version >= 1.
func (kv *KeyValue) isTombstone() bool { return kv.Version == 0 }

// EventType tells whether an Event is a put or a delete.
type EventType uint8

const (
	// EventPut is a put: Kv is the new version of the key.
	EventPut EventType = 0
	// EventDelete is a delete: Kv holds only the Key and the ModRevision of
	// the delete; the other fields are zero (like etcd).
	EventDelete EventType = 1
)

// String returns "PUT" or "DELETE".
func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return "EventType(?)"
}

// Event is one change in the event log. Every write transaction produces one
// event per Put and one per deleted key, in sub-revision order. Events and
// the KeyValues they point to are shared and read-only.
type Event struct {
	// Type is EventPut or EventDelete.
	Type EventType
	// Kv is the new version (put) or the tombstone (delete). Its
	// ModRevision is the main revision of the event.
	Kv *KeyValue
	// PrevKv is the version of the key just before this event, nil if the
	// key did not exist. It stays available after the key's older history
	// has been compacted.
	PrevKv *KeyValue
}

// PrefixEnd returns the range end that, paired with prefix as the range key,
// selects every key starting with prefix (etcd's GetPrefixRangeEnd): the
// prefix with its last byte below 0xff incremented and the rest dropped. If
// every byte is 0xff (or prefix is empty) there is no such end and it
// returns []byte{0}, meaning "every key >= prefix". The argument is not
// modified.
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] < 0xff {
			end := make([]byte, i+1)
			copy(end, prefix)
			end[i]++
			return end
		}
	}
	return []byte{0}
}

// span is a normalised (key, end) range argument.
//
//	len(end) == 0               → exactly key (single)
//	end == {0}                  → every key >= key (open); key == {0} too → all keys
//	otherwise                   → [key, end)
//
// An empty non-nil end is treated like nil, as on etcd's wire where an
// empty range_end is indistinguishable from an absent one.
type span struct {
	start  []byte // nil with open: from the very first key
	end    []byte // exclusive bound unless open or single
	single bool
	open   bool
}

func mkSpan(key, end []byte) span {
	switch {
	case len(end) == 0:
		return span{start: key, single: true}
	case len(end) == 1 && end[0] == 0:
		if len(key) == 1 && key[0] == 0 {
			return span{open: true}
		}
		return span{start: key, open: true}
	default:
		return span{start: key, end: end}
	}
}

// contains reports whether k is in the span.
func (sp *span) contains(k []byte) bool {
	if sp.single {
		return bytes.Equal(k, sp.start)
	}
	if bytes.Compare(k, sp.start) < 0 {
		return false
	}
	return sp.open || bytes.Compare(k, sp.end) < 0
}

// beyond reports whether k (>= start) is past the end of the span, for
// ascending scans.
func (sp *span) beyond(k []byte) bool {
	if sp.single {
		return !bytes.Equal(k, sp.start)
	}
	return !sp.open && bytes.Compare(k, sp.end) >= 0
}

// all reports whether the span selects every key.
func (sp *span) all() bool { return sp.open && len(sp.start) == 0 }

// liveItem is an element of the latest tree: a live key and its current
// version. The key is inlined so that lookups need no allocation.
type liveItem struct {
	key []byte
	kv  *KeyValue
}

func liveLess(a, b liveItem) bool { return bytes.Compare(a.key, b.key) < 0 }

// histItem is an element of the history tree: one version (or tombstone) of
// a key, ordered by key ascending, then (rev, sub) descending, so the first
// item at or after {key, r, maxSub} is the newest version of key at r.
type histItem struct {
	key  []byte    // == kv.Key
	kv   *KeyValue // the version, or the tombstone (kv.Version == 0)
	rev  int64     // == kv.ModRevision
	sub  int32     // sub-revision within rev (WriteTxn's events and Load's batches stay below 2^31)
	tomb bool      // == kv.isTombstone(): compaction decides without reading kv
}

// mkHist returns the history item of version kv (its key, at main
// revision rev and sub-revision sub).
func mkHist(kv *KeyValue, rev int64, sub int) histItem {
	return histItem{key: kv.Key, kv: kv, rev: rev, sub: int32(sub), tomb: kv.isTombstone()}
}

func histLess(a, b histItem) bool {
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c < 0
	}
	if a.rev != b.rev {
		return a.rev > b.rev
	}
	return a.sub > b.sub
}

// histAt is the seek probe for "newest version of key at revision rev".
func histAt(key []byte, rev int64) histItem {
	return histItem{key: key, rev: rev, sub: math.MaxInt32}
}

// histAfter is the seek probe for "first item of the next key after key":
// it sorts after every real item of key, since real revisions are >= 1.
func histAfter(key []byte) histItem {
	return histItem{key: key, rev: math.MinInt64, sub: math.MinInt32}
}

// evBatch is an element of the event tree: all events of one main revision,
// in sub-revision order (evs[i] has sub-revision i).
type evBatch struct {
	rev int64
	evs []*Event
}

func evLess(a, b evBatch) bool { return a.rev < b.rev }
