// Package watch is the watcher registry of the store: it turns the Views the
// Raft FSM publishes (package mvcc) into ordered streams of events, one per
// watcher, in the manner of etcd's watchable store.
//
// # Architecture
//
// A Hub owns exactly one goroutine, the hub goroutine. Everything that
// touches watchers happens there: registering them, dispatching new
// revisions, catching up laggards, progress notifications, cancelling and
// closing. Only the hub goroutine sends on or closes a watcher's channel,
// so a watcher's stream needs no locking and cannot be duplicated or
// reordered by a race.
//
// The FSM calls Hub.Publish after each applied batch. Publish stores the
// View in an atomic pointer and wakes the hub goroutine through a channel
// of capacity one; it never blocks and does O(1) work however many
// watchers there are. When the hub wakes up it takes the newest View and
// reads the events of every revision it has not dispatched yet with
// View.Events; Views published in between are simply skipped over, since
// the newest View holds their events too.
//
// # Synced and unsynced watchers
//
// Every watcher tracks nextRev, the first revision it has not been sent
// yet. The hub tracks lastRev, the revision of the newest View it has
// dispatched.
//
//   - A watcher is synced when nextRev == lastRev+1 (or when it waits for a
//     future start revision): it has been sent everything up to lastRev.
//     When the hub dispatches a new View, each synced watcher whose range
//     has events gets them by a non-blocking send into its buffered
//     channel. If the channel is full, the watcher becomes unsynced, with
//     nextRev at the first revision it did not get.
//   - An unsynced watcher lags behind: it was registered with a start
//     revision at or below lastRev, or its consumer did not keep up. Every
//     Config.CatchUpInterval (and right after registration) the hub catches
//     up each unsynced watcher whose channel has room: it reads the
//     watcher's range from the history of its current View, starting at
//     nextRev, and sends as many responses as fit without blocking. Once
//     nextRev reaches lastRev+1 the watcher is synced again.
//
// Dispatch and catch-up run on the same goroutine, so the switch between
// the two neither loses nor repeats a revision. A watcher whose consumer
// stalls costs nothing while its channel is full (the check is len(ch) <
// cap(ch)); it never delays Publish, the hub, or other watchers.
//
// # Guarantees
//
// For each watcher:
//
//   - Events arrive strictly ordered by revision, each exactly once, with no
//     revision skipped, from the start revision on.
//   - All events of one revision that match the watcher are in the same
//     Batch, in sub-revision order. A Batch holds up to
//     Config.MaxEventsPerResponse events, or more when a single revision
//     has more.
//   - Filters (FilterPut, FilterDelete) drop events but never revisions
//     from the sequence: a Batch left empty is not sent.
//   - A progress notification carries the hub's lastRev and is sent only to
//     synced watchers, so its revision never runs ahead of the events
//     delivered.
//   - If a revision the watcher needs has been compacted, it gets exactly
//     one Batch with Canceled, Err mvcc.ErrCompacted and CompactRev, and
//     then its channel is closed. This Batch is never dropped: it is sent
//     as soon as the channel has room.
//   - Otherwise the channel is closed when the watcher's context is done
//     (without a final Batch) or when the hub closes (after a Canceled
//     Batch with Err ErrClosed, if the channel had room for it).
//
// # Cost
//
// An idle watcher is a small struct plus its channel (whose buffer
// dominates): there is no goroutine per watcher, and a context that can be
// cancelled is followed with context.AfterFunc, which runs only when the
// context is done. Watchers of a single key are indexed in a map by key;
// range watchers in a list of distinct ranges. Watchers of the same range
// are grouped, and a dispatched revision is converted (Config.Convert) once
// per distinct combination of options in the group, not once per watcher.
package watch

import (
	"errors"
	"log/slog"
	"time"

	"github.com/embedkv/store/mvcc"
)

// ErrClosed is the Err of the Canceled Batch a watcher gets when the hub
// closes.
var ErrClosed = errors.New("watch: hub closed")

// Defaults of Config.
const (
	// DefaultBufferSize is the default capacity of a watcher's channel.
	DefaultBufferSize = 16
	// DefaultProgressInterval is the default interval of progress
	// notifications.
	DefaultProgressInterval = 10 * time.Minute
	// DefaultCatchUpInterval is the default interval between catch-up
	// passes over the unsynced watchers.
	DefaultCatchUpInterval = 5 * time.Millisecond
	// DefaultMaxEventsPerResponse is the default soft limit on the events
	// of one Batch.
	DefaultMaxEventsPerResponse = 1000
)

// Options are the options of one watcher.
type Options struct {
	// Key and End select the watched keys, with mvcc's range semantics: End
	// nil (or empty) watches Key alone, End []byte{0} every key >= Key (all
	// keys when Key is []byte{0} too), any other End the keys in [Key, End).
	// Both are copied by Watch.
	Key, End []byte
	// StartRev is the first revision to deliver. 0 (or negative) means the
	// revision after the newest View published to the hub when Watch is
	// called. It may lie in the past (the history is replayed first, and it
	// must not be below the compaction revision; equal is fine) or in the
	// future (the watcher waits; events below StartRev are not sent).
	StartRev int64
	// FilterPut drops PUT events.
	FilterPut bool
	// FilterDelete drops DELETE events.
	FilterDelete bool
	// PrevKV asks for Event.PrevKv. The hub does not strip it: it sets
	// Batch.PrevKV and Config.Convert must drop PrevKv when it is false.
	PrevKV bool
	// ProgressNotify asks for empty progress Batches while the watcher is
	// idle (see Config.ProgressInterval).
	ProgressNotify bool
}

// Batch is one response to one watcher, before conversion by
// Config.Convert. Exactly one of these holds: it has Events, it is a
// progress notification (Progress), or it is the last Batch of the watcher
// (Canceled).
type Batch struct {
	// Events are the watcher's events of one or more consecutive
	// revisions, in revision and then sub-revision order; all matching
	// events of a revision are in the same Batch. Nil for progress and
	// cancellation. The slice and the Events are shared with the store and
	// with other watchers: read-only.
	Events []*mvcc.Event
	// Rev is the header revision: the hub's current revision (the newest
	// View it has dispatched) when the Batch was made.
	Rev int64
	// CompactRev is set, with Canceled, when the watcher is cancelled
	// because a revision it needs was compacted: it is the compaction
	// revision of the hub's View, the oldest revision still available.
	CompactRev int64
	// Canceled marks the last Batch of the watcher; its channel is closed
	// right after it.
	Canceled bool
	// Err says why the watcher was cancelled: mvcc.ErrCompacted, ErrClosed
	// (the hub closed), or nil. Match it with errors.Is.
	Err error
	// PrevKV is the watcher's Options.PrevKV: when false, Convert must not
	// expose Event.PrevKv.
	PrevKV bool
	// Progress marks a progress notification: no events, Rev is the
	// revision up to which the watcher has been sent everything.
	Progress bool
}

// Config configures a Hub. Only Convert is required; zero values select
// the defaults.
type Config[T any] struct {
	// Convert turns a Batch into the type the watchers' channels carry. It
	// is required and is called only on the hub goroutine, never
	// concurrently with itself.
	//
	// Its result may be cached and shared: the hub converts a dispatched
	// revision once per group of watchers with the same range and the
	// same filter and PrevKV options, and sends the same T to all of them
	// (likewise for progress and close notifications, which are shared by
	// all watchers whose Batch is equal). Consumers must therefore treat
	// the T values they receive, and anything they point to, as
	// read-only.
	Convert func(b Batch) T
	// BufferSize is the capacity of each watcher's channel (default 16).
	BufferSize int
	// ProgressInterval is the interval of progress notifications (default
	// 10 minutes). At each interval, every synced watcher with
	// ProgressNotify that was sent nothing since the previous interval
	// gets a Progress Batch, if its channel has room.
	ProgressInterval time.Duration
	// CatchUpInterval is how often unsynced watchers are retried (default
	// 5 ms).
	CatchUpInterval time.Duration
	// MaxEventsPerResponse is the soft limit on the events of one Batch
	// (default 1000). A revision is never split, so a Batch may exceed it
	// by one revision's events.
	MaxEventsPerResponse int
	// Logger receives the hub's diagnostics; nil discards them.
	Logger *slog.Logger
}

// withDefaults returns c with the zero fields set to their defaults. It
// panics if Convert is nil.
func (c Config[T]) withDefaults() Config[T] {
	if c.Convert == nil {
		panic("watch: Config.Convert is required")
	}
	if c.BufferSize <= 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.CatchUpInterval <= 0 {
		c.CatchUpInterval = DefaultCatchUpInterval
	}
	if c.MaxEventsPerResponse <= 0 {
		c.MaxEventsPerResponse = DefaultMaxEventsPerResponse
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats is a snapshot of a Hub's counters, as of the end of the hub
// goroutine's latest round of work.
type Stats struct {
	// Watchers is the number of registered watchers whose channel is open.
	Watchers int
	// Synced is the number of watchers that have been sent every revision
	// up to CurrentRev (or wait for a future start revision).
	Synced int
	// Unsynced is the number of watchers that lag behind and are being
	// caught up from history (including any with a pending cancellation).
	Unsynced int
	// CurrentRev is the revision of the newest View the hub has dispatched.
	CurrentRev int64
}
