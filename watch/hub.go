package watch

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedkv/store/mvcc"
)

// Hub is the watcher registry: it delivers the events of the Views passed
// to Publish to the watchers registered with Watch. All its methods are
// safe for concurrent use. See the package documentation for the model.
//
// Goroutines: New starts the hub goroutine, which Close stops and waits
// for. A context that is done runs a short callback (context.AfterFunc)
// that queues the watcher's removal; nothing else runs in the background.
type Hub[T any] struct {
	cfg Config[T] // with defaults; read-only after New
	log *slog.Logger

	latest atomic.Pointer[mvcc.View] // newest published View
	wake   chan struct{}             // cap 1: a View or a request is waiting
	stopCh chan struct{}             // closed by Close
	exited chan struct{}             // closed when the hub goroutine returns
	once   sync.Once                 // guards the close of stopCh

	// mu guards pending and closed. Lock order: mu is a leaf, except that
	// Watch registers a context.AfterFunc callback while holding it, which
	// may take the parent context's internal lock; the callback itself
	// runs on its own goroutine and takes mu only from there, so no cycle
	// is possible.
	mu      sync.Mutex
	pending []request[T] // registrations and removals, in call order
	closed  bool         // set by Close; Watch then returns a closed channel

	// open counts the watchers from Watch until their channel is closed
	// (Active).
	open atomic.Int64

	// Published by the hub goroutine for Stats.
	stWatchers, stSynced, stUnsynced, stRev atomic.Int64

	// Everything below is owned by the hub goroutine.
	view      *mvcc.View             // newest dispatched View
	lastRev   int64                  // view.Rev()
	keyed     map[string]*group[T]   // single-key groups by key
	ranged    map[rangeKey]*group[T] // range groups by (key, end)
	groups    []*group[T]            // every group, for progress and shutdown
	ranges    []*group[T]            // range groups, scanned by dispatch
	unsynced  []*watcher[T]          // lagging watchers, caught up by timer
	nWatchers int                    // open watchers
	nSynced   int                    // watchers in some group's ws
	// scratch, reused between rounds
	batch   []request[T]
	fresh   []*watcher[T]
	revs    []revEvents
	touched []*group[T]
	sel     []revEvents
	cache   []cacheEntry[T]
	moved   []*watcher[T]
	epoch   uint64
}

// request is a registration or a removal queued for the hub goroutine.
type request[T any] struct {
	w        *watcher[T]
	key, end string // registration: the range, copied from Options
	remove   bool
}

// New returns a Hub whose current revision is initial.Rev() (neither
// argument may be nil: New panics if initial or cfg.Convert is nil) and
// starts its goroutine. Call Close to stop it.
func New[T any](cfg Config[T], initial *mvcc.View) *Hub[T] {
	return newHub(cfg, initial, nil)
}

// newHub is New with an optional progress tick source (for tests); nil
// means a ticker of cfg.ProgressInterval.
func newHub[T any](cfg Config[T], initial *mvcc.View, progress <-chan time.Time) *Hub[T] {
	if initial == nil {
		panic("watch: New needs an initial View")
	}
	cfg = cfg.withDefaults()
	h := &Hub[T]{
		cfg:     cfg,
		log:     cfg.Logger,
		wake:    make(chan struct{}, 1),
		stopCh:  make(chan struct{}),
		exited:  make(chan struct{}),
		view:    initial,
		lastRev: initial.Rev(),
		keyed:   make(map[string]*group[T]),
		ranged:  make(map[rangeKey]*group[T]),
	}
	h.latest.Store(initial)
	h.stRev.Store(initial.Rev())
	var ticker *time.Ticker
	if progress == nil {
		ticker = time.NewTicker(cfg.ProgressInterval)
		progress = ticker.C
	}
	go h.run(progress, ticker)
	return h
}

// Publish hands the hub a new View. It is O(1) and never blocks: it
// remembers v as the newest View and wakes the hub goroutine, which reads
// the events after the last revision it dispatched from v itself. Views
// must be published in the order they were taken; publishing after Close
// is harmless. A nil v is ignored.
func (h *Hub[T]) Publish(v *mvcc.View) {
	if v == nil {
		return
	}
	h.latest.Store(v)
	h.signal()
}

// signal wakes the hub goroutine without blocking.
func (h *Hub[T]) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Watch registers a watcher and returns its channel. The channel carries
// the converted Batches of the watcher (see the package documentation for
// the guarantees) and is closed when ctx is done (without a final
// Batch), when the hub closes (after a Canceled Batch with Err ErrClosed
// if the channel has room), or right after a Canceled Batch. The consumer
// should read it until it is closed or stop caring once ctx is done.
//
// After Close, Watch returns an already closed channel with nothing in it
// (Convert may run only on the hub goroutine, which is gone).
//
// Watch copies o.Key and o.End. It does not block on the hub: the watcher
// is registered by the hub goroutine shortly after.
func (h *Hub[T]) Watch(ctx context.Context, o Options) <-chan T {
	w := &watcher[T]{
		ch:      make(chan T, h.cfg.BufferSize),
		flags:   flagsOf(o),
		nextRev: o.StartRev,
	}
	req := request[T]{w: w, key: string(o.Key), end: string(o.End)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(w.ch)
		return w.ch
	}
	if w.nextRev <= 0 {
		w.nextRev = h.latest.Load().Rev() + 1
	}
	h.open.Add(1)
	if ctx.Done() != nil {
		// Registered under mu, so that w.stop is set before the hub can
		// see w; the callback queues the removal after the registration.
		w.stop = context.AfterFunc(ctx, func() { h.enqueue(request[T]{w: w, remove: true}) })
	}
	h.pending = append(h.pending, req)
	h.signal()
	return w.ch
}

// enqueue queues r for the hub goroutine, unless the hub is closed (then
// the watcher has been or will be closed by the shutdown).
func (h *Hub[T]) enqueue(r request[T]) {
	h.mu.Lock()
	if !h.closed {
		h.pending = append(h.pending, r)
	}
	h.mu.Unlock()
	h.signal()
}

// Close cancels every open watcher with a Batch whose Err is ErrClosed
// (when its channel has room), closes their channels, stops the hub
// goroutine and waits for it. It is idempotent and safe to call
// concurrently; every call returns once the goroutine has stopped.
func (h *Hub[T]) Close() {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.stopCh)
	})
	<-h.exited
}

// Active reports whether any watcher is open: from the moment Watch returns
// until its channel is closed. The store publishes a View after every
// applied batch while it is true, and may skip Views nobody needs
// otherwise.
func (h *Hub[T]) Active() bool { return h.open.Load() > 0 }

// Stats returns the hub's counters as of the end of the hub goroutine's
// latest round of work.
func (h *Hub[T]) Stats() Stats {
	return Stats{
		Watchers:   int(h.stWatchers.Load()),
		Synced:     int(h.stSynced.Load()),
		Unsynced:   int(h.stUnsynced.Load()),
		CurrentRev: h.stRev.Load(),
	}
}

// run is the hub goroutine. Each round handles the queued requests,
// dispatches the newest View, catches up the watchers that need it, and
// sends progress notifications when their tick came.
func (h *Hub[T]) run(progress <-chan time.Time, ticker *time.Ticker) {
	defer close(h.exited)
	if ticker != nil {
		defer ticker.Stop()
	}
	catchUp := time.NewTimer(time.Hour)
	catchUp.Stop()
	defer catchUp.Stop()
	armed := false
	for {
		tick, progressTick := false, false
		select {
		case <-h.stopCh:
			h.shutdown()
			return
		case <-h.wake:
		case <-catchUp.C:
			armed, tick = false, true
		case <-progress:
			progressTick = true
		}
		fresh := h.drain()
		if v := h.latest.Load(); v != h.view {
			h.dispatch(v)
		}
		if tick {
			h.catchUpAll()
		}
		for _, w := range fresh {
			if w.state == stateUnsynced {
				h.catchUp(w)
			}
		}
		h.fresh = reuse(fresh)
		if progressTick {
			h.progress()
		}
		if len(h.unsynced) > 0 && !armed {
			catchUp.Reset(h.cfg.CatchUpInterval)
			armed = true
		}
		h.publishStats()
	}
}

// drain handles the queued requests in order and returns the watchers it
// registered as unsynced, to be caught up at once.
func (h *Hub[T]) drain() []*watcher[T] {
	h.mu.Lock()
	batch := h.pending
	h.pending = h.batch[:0]
	h.mu.Unlock()
	fresh := h.fresh[:0]
	for _, r := range batch {
		if r.remove {
			h.closeWatcher(r.w, nil)
			continue
		}
		if w := h.register(r); w != nil {
			fresh = append(fresh, w)
		}
	}
	h.batch = reuse(batch)
	return fresh
}

// register adds the watcher of r to the index, synced if its start
// revision is after lastRev, else unsynced (and then returned). A watcher
// removed before its registration is not registered.
func (h *Hub[T]) register(r request[T]) *watcher[T] {
	w := r.w
	if w.state != statePending {
		return nil // removed already
	}
	w.g = h.groupFor(r.key, r.end)
	h.nWatchers++
	if w.nextRev > h.lastRev {
		h.addSynced(w)
		return nil
	}
	h.addUnsynced(w)
	return w
}

// shutdown runs when the hub closes: it registers what is still queued
// and then cancels every watcher with ErrClosed and closes its channel.
func (h *Hub[T]) shutdown() {
	h.drain()
	var final [2]*T // the ErrClosed Batch, without and with PrevKV
	closing := func(w *watcher[T]) *T {
		i := 0
		if w.flags&flagPrevKV != 0 {
			i = 1
		}
		if final[i] == nil && w.hasRoom() {
			b := h.cfg.Convert(Batch{Rev: h.lastRev, Canceled: true, Err: ErrClosed, PrevKV: i == 1})
			final[i] = &b
		}
		return final[i]
	}
	for len(h.unsynced) > 0 {
		w := h.unsynced[len(h.unsynced)-1]
		h.closeWatcher(w, closing(w))
	}
	for len(h.groups) > 0 {
		g := h.groups[len(h.groups)-1]
		if len(g.ws) == 0 {
			// Cannot happen: unsynced watchers are gone and a group
			// without watchers is dropped. Guard against looping.
			g.refs = 1
			h.release(g)
			continue
		}
		w := g.ws[len(g.ws)-1]
		h.closeWatcher(w, closing(w))
	}
	h.publishStats()
	h.log.Debug("watch: hub closed", "rev", h.lastRev)
}

// publishStats makes the counters visible to Stats.
func (h *Hub[T]) publishStats() {
	h.stWatchers.Store(int64(h.nWatchers))
	h.stSynced.Store(int64(h.nSynced))
	h.stUnsynced.Store(int64(len(h.unsynced)))
	h.stRev.Store(h.lastRev)
}
