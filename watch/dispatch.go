package watch

import (
	"github.com/embedkv/store/mvcc"
)

// revEvents is the events of one revision (all of them, or those of one
// group's range).
type revEvents struct {
	rev int64
	evs []*mvcc.Event
}

// part is one converted response of a dispatch, and the last revision it
// covers.
type part[T any] struct {
	val  T
	last int64
}

// cacheEntry holds the responses built for the watchers of one group with
// the same content flags and the same start revision, during one
// delivery.
type cacheEntry[T any] struct {
	flags uint8
	start int64
	parts []part[T]
}

// dispatch moves the hub to View v: it sends the synced watchers the
// events of the revisions after lastRev, and adopts v for catch-up.
func (h *Hub[T]) dispatch(v *mvcc.View) {
	if h.nWatchers == 0 {
		// Nobody to send to. The store publishes views lazily while no
		// watcher is open, so v may be far ahead (even past a compaction):
		// adopt it without reading its events.
		h.view, h.lastRev = v, v.Rev()
		return
	}
	old := h.lastRev
	switch {
	case v.Rev() < old:
		// The state was replaced by an older one (a snapshot restore
		// going back). Pin every synced watcher to the revision it really
		// waits for, so nothing is sent twice; they resume once the store
		// passes that revision again.
		h.log.Warn("watch: published view is older than the hub's", "rev", v.Rev(), "hubRev", old)
		for _, g := range h.groups {
			for _, w := range g.ws {
				w.nextRev = max(w.nextRev, old+1)
			}
		}
		h.view, h.lastRev = v, v.Rev()
		return
	case v.Rev() == old:
		// A compaction without new revisions: keep the new compaction
		// revision for catch-up.
		h.view = v
		return
	}
	from := old + 1
	if cr := v.CompactRev(); from < cr {
		// The hub missed revisions that are now compacted (it fell behind
		// a compaction, or a snapshot restore replaced the state). Synced
		// watchers that needed them go through catch-up, which cancels
		// them; those waiting for a revision >= cr just continue.
		h.log.Warn("watch: revisions compacted before dispatch", "from", from, "compactRev", cr)
		h.unsyncBelow(cr, from)
		from = cr
	}
	revs := h.revs[:0]
	all := []byte{0} // key and end of the range of every key
	err := v.Events(from, all, all, func(rev int64, evs []*mvcc.Event) bool {
		revs = append(revs, revEvents{rev, evs})
		return true
	})
	if err != nil {
		// Cannot happen: from >= v.CompactRev(). Keep going with what we
		// have rather than stall every watcher.
		h.log.Error("watch: reading events", "from", from, "err", err)
	}
	h.view, h.lastRev = v, v.Rev()
	h.fanOut(revs, from)
	h.revs = reuse(revs)
}

// unsyncBelow moves to the unsynced list every synced watcher whose next
// revision (from at least) is below cr.
func (h *Hub[T]) unsyncBelow(cr, from int64) {
	moved := h.moved[:0]
	for _, g := range h.groups {
		for _, w := range g.ws {
			if next := max(w.nextRev, from); next < cr {
				w.nextRev = next
				moved = append(moved, w)
			}
		}
	}
	for _, w := range moved {
		h.toUnsynced(w)
	}
	h.moved = reuse(moved)
}

// fanOut delivers the events of revs (the revisions from `from` to
// lastRev that have events) to the synced watchers.
func (h *Hub[T]) fanOut(revs []revEvents, from int64) {
	if len(revs) == 0 {
		return
	}
	if len(h.keyed) > 0 {
		// Collect each watched key's events, in revision order, without
		// copying: an event alone is a sub-slice of its revision's slice.
		h.epoch++
		touched := h.touched[:0]
		for _, re := range revs {
			for i, ev := range re.evs {
				g := h.keyed[string(ev.Kv.Key)]
				if g == nil || len(g.ws) == 0 {
					continue
				}
				if g.mark != h.epoch {
					g.mark = h.epoch
					g.revs = g.revs[:0]
					touched = append(touched, g)
				}
				if n := len(g.revs); n > 0 && g.revs[n-1].rev == re.rev {
					g.revs[n-1].evs = append(g.revs[n-1].evs, ev)
				} else {
					g.revs = append(g.revs, revEvents{re.rev, re.evs[i : i+1 : i+1]})
				}
			}
		}
		for _, g := range touched {
			h.deliver(g, g.revs, from)
			if cap(g.revs) > 8 {
				g.revs = nil // kept per group: keep it small
			} else {
				g.revs = reuse(g.revs)
			}
		}
		h.touched = reuse(touched)
	}
	for _, g := range h.ranges {
		if len(g.ws) == 0 {
			continue
		}
		sel := h.sel[:0]
		for _, re := range revs {
			if evs := g.filter(re.evs); len(evs) > 0 {
				sel = append(sel, revEvents{re.rev, evs})
			}
		}
		if len(sel) > 0 {
			h.deliver(g, sel, from)
		}
		h.sel = reuse(sel)
	}
}

// deliver sends the events revs of group g to its synced watchers, each
// from its own next revision (from at least). Responses are built once per
// (content flags, start revision) and shared. A watcher whose channel
// fills up becomes unsynced at the first revision it did not get.
func (h *Hub[T]) deliver(g *group[T], revs []revEvents, from int64) {
	cache := h.cache[:0]
	moved := h.moved[:0]
	for _, w := range g.ws {
		start := max(w.nextRev, from)
		if start > h.lastRev {
			continue // waits for a future revision
		}
		flags := w.flags & flagsContent
		var parts []part[T]
		found := false
		for i := range cache {
			if cache[i].flags == flags && cache[i].start == start {
				parts, found = cache[i].parts, true
				break
			}
		}
		if !found {
			parts = h.build(revs, flags, start)
			cache = append(cache, cacheEntry[T]{flags, start, parts})
		}
		for i := range parts {
			if !w.trySend(parts[i].val) {
				w.nextRev = start
				if i > 0 {
					w.nextRev = parts[i-1].last + 1
				}
				moved = append(moved, w)
				break
			}
		}
	}
	for _, w := range moved {
		h.toUnsynced(w)
	}
	h.moved = reuse(moved)
	h.cache = reuse(cache)
}

// build converts the events of revs at or after start that survive the
// filters of flags into responses of about MaxEventsPerResponse events
// each, never splitting a revision. A response of a single unfiltered
// revision reuses the store's slice.
func (h *Hub[T]) build(revs []revEvents, flags uint8, start int64) []part[T] {
	var (
		parts []part[T]
		cur   []*mvcc.Event
		last  int64
	)
	flush := func() {
		b := Batch{Events: cur, Rev: h.lastRev, PrevKV: flags&flagPrevKV != 0}
		parts = append(parts, part[T]{h.cfg.Convert(b), last})
		cur = nil
	}
	for _, re := range revs {
		if re.rev < start {
			continue
		}
		evs := filterType(re.evs, flags)
		if len(evs) == 0 {
			continue
		}
		if cur == nil {
			cur = clip(evs)
		} else {
			cur = append(cur, evs...)
		}
		last = re.rev
		if len(cur) >= h.cfg.MaxEventsPerResponse {
			flush()
		}
	}
	if len(cur) > 0 {
		flush()
	}
	return parts
}

// maxScratch is the capacity above which a scratch slice is dropped
// rather than kept for the next round, so that a burst (a large dispatch,
// a mass registration) does not pin memory for the hub's lifetime.
const maxScratch = 1024

// reuse returns s emptied for reuse, cleared so that it pins nothing, or
// nil if it has grown beyond maxScratch.
func reuse[S ~[]E, E any](s S) S {
	if cap(s) > maxScratch {
		return nil
	}
	clear(s)
	return s[:0]
}
