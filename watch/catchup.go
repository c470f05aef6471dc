package watch

import (
	"errors"

	"github.com/embedkv/store/mvcc"
)

// catchUpAll runs catch-up for every unsynced watcher. Watchers leave the
// list as they get synced or closed (swap-remove, taking the last element
// into their slot), so the list is walked from the end: an element moved
// into the current slot has already been visited.
func (h *Hub[T]) catchUpAll() {
	for i := len(h.unsynced) - 1; i >= 0; i-- {
		if i >= len(h.unsynced) {
			continue
		}
		h.catchUp(h.unsynced[i])
	}
}

// catchUp moves the unsynced watcher w forward from the history of the
// hub's View, as far as its channel's free room allows without blocking:
//
//   - a full channel is left alone until the next pass (this is the cheap
//     path of a stalled consumer);
//   - a pending compacted cancellation is sent, and the channel closed;
//   - otherwise the events of w's range from w.nextRev to lastRev are read
//     with View.Events and sent in responses of about
//     MaxEventsPerResponse events (whole revisions), one per free slot.
//     When they all fit, w becomes synced; when they do not, w.nextRev is
//     left at the first revision not sent. If w.nextRev is below the
//     View's compaction revision, w is cancelled instead.
//
// The View is the one dispatch last adopted, whose revision is lastRev, so
// a watcher synced here continues with the next dispatch without a gap.
func (h *Hub[T]) catchUp(w *watcher[T]) {
	room := cap(w.ch) - len(w.ch)
	if room <= 0 {
		return
	}
	if w.compacted {
		h.compactedCancel(w)
		return
	}
	if w.nextRev > h.lastRev {
		h.toSynced(w)
		return
	}
	var (
		g       = w.g
		flags   = w.flags
		limit   = h.cfg.MaxEventsPerResponse
		cur     []*mvcc.Event
		last    int64
		stopped bool
	)
	send := func() bool {
		b := h.cfg.Convert(Batch{Events: cur, Rev: h.lastRev, PrevKV: flags&flagPrevKV != 0})
		cur = nil
		if !w.trySend(b) {
			// Cannot happen (only the hub sends, and room was counted),
			// but never block: retry from here on the next pass.
			return false
		}
		w.nextRev = last + 1
		room--
		return true
	}
	err := h.view.Events(w.nextRev, g.key, g.end, func(rev int64, evs []*mvcc.Event) bool {
		if rev > h.lastRev {
			return false
		}
		evs = filterType(evs, flags)
		if len(evs) == 0 {
			return true
		}
		if cur == nil {
			cur = clip(evs)
		} else {
			cur = append(cur, evs...)
		}
		last = rev
		if len(cur) >= limit {
			if !send() || room == 0 {
				stopped = true
				return false
			}
		}
		return true
	})
	switch {
	case errors.Is(err, mvcc.ErrCompacted):
		h.compactedCancel(w)
		return
	case err != nil:
		h.log.Error("watch: catch-up", "nextRev", w.nextRev, "err", err)
		return
	case stopped:
		return
	}
	if len(cur) > 0 && !send() {
		return
	}
	w.nextRev = h.lastRev + 1
	h.toSynced(w)
}

// compactedCancel sends w its compacted cancellation if the channel has
// room and then closes it; otherwise it leaves w unsynced with the
// cancellation pending.
func (h *Hub[T]) compactedCancel(w *watcher[T]) {
	w.compacted = true
	if !w.hasRoom() {
		return
	}
	b := h.cfg.Convert(Batch{
		Rev:        h.lastRev,
		CompactRev: h.view.CompactRev(),
		Canceled:   true,
		Err:        mvcc.ErrCompacted,
		PrevKV:     w.flags&flagPrevKV != 0,
	})
	h.log.Debug("watch: watcher cancelled, revision compacted",
		"nextRev", w.nextRev, "compactRev", h.view.CompactRev())
	h.closeWatcher(w, &b)
}

// progress sends a progress notification to every synced watcher that
// asked for them and was sent nothing since the previous tick, and starts
// a new interval for all watchers.
func (h *Hub[T]) progress() {
	var conv [2]*T // without and with PrevKV
	for _, g := range h.groups {
		for _, w := range g.ws {
			if w.flags&flagProgress != 0 && !w.sent && w.hasRoom() {
				i := 0
				if w.flags&flagPrevKV != 0 {
					i = 1
				}
				if conv[i] == nil {
					b := h.cfg.Convert(Batch{Rev: h.lastRev, Progress: true, PrevKV: i == 1})
					conv[i] = &b
				}
				w.trySend(*conv[i])
			}
			w.sent = false
		}
	}
	for _, w := range h.unsynced {
		w.sent = false
	}
}
