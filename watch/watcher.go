package watch

import (
	"bytes"
	"slices"

	"github.com/embedkv/store/mvcc"
)

// Watcher flags, from Options.
const (
	flagFilterPut uint8 = 1 << iota
	flagFilterDelete
	flagPrevKV
	flagProgress

	// flagsContent are the flags that change what a watcher is sent for
	// given events: watchers of one group that agree on them share the
	// converted responses.
	flagsContent = flagFilterPut | flagFilterDelete | flagPrevKV
)

// flagsOf packs the boolean options of o.
func flagsOf(o Options) uint8 {
	var f uint8
	if o.FilterPut {
		f |= flagFilterPut
	}
	if o.FilterDelete {
		f |= flagFilterDelete
	}
	if o.PrevKV {
		f |= flagPrevKV
	}
	if o.ProgressNotify {
		f |= flagProgress
	}
	return f
}

// Watcher states. Only the hub goroutine reads or writes a watcher's
// fields after Watch has queued it.
const (
	statePending  uint8 = iota // queued by Watch, not yet registered
	stateSynced                // in its group's ws
	stateUnsynced              // in Hub.unsynced
	stateClosed                // channel closed; forgotten
)

// watcher is one registered watch. It is kept small: the channel's buffer
// is the bulk of an idle watcher's memory.
type watcher[T any] struct {
	ch   chan T
	g    *group[T] // the watched range, shared with same-range watchers
	stop func() bool
	// nextRev is the first revision not yet sent. For a synced watcher it
	// is maintained lazily: the real value is max(nextRev, Hub.lastRev+1),
	// so that a dispatch need not touch the watchers with nothing to get.
	nextRev int64
	idx     int32 // position in g.ws (synced) or Hub.unsynced (unsynced)
	flags   uint8
	state   uint8
	// sent records a send since the last progress tick.
	sent bool
	// compacted marks a pending compacted cancellation, sent as soon as
	// the channel has room.
	compacted bool
}

// trySend sends v without blocking and reports whether it did.
func (w *watcher[T]) trySend(v T) bool {
	select {
	case w.ch <- v:
		w.sent = true
		return true
	default:
		return false
	}
}

// hasRoom reports whether the channel can take one more value. Only the
// hub sends, so room never shrinks behind its back.
func (w *watcher[T]) hasRoom() bool { return len(w.ch) < cap(w.ch) }

// Range kinds of a group.
const (
	kindSingle uint8 = iota // exactly key
	kindRange               // [key, end)
	kindOpen                // every key >= key
	kindAll                 // every key
)

// group is a distinct watched range and the watchers of it. The synced
// watchers are in ws; refs counts all registered watchers of the range,
// synced or not, and the group is dropped from the index when it reaches
// zero.
type group[T any] struct {
	key, end []byte // private copies; end nil for a single key
	kind     uint8
	ws       []*watcher[T]
	refs     int
	gidx     int // position in Hub.groups
	ridx     int // position in Hub.ranges (range groups only)

	// Dispatch scratch: the group's events of the current dispatch, valid
	// while mark equals the hub's dispatch epoch.
	mark uint64
	revs []revEvents
}

// rangeKey indexes range groups.
type rangeKey struct{ key, end string }

// kindOf classifies a (key, end) pair like mvcc does.
func kindOf(key, end string) uint8 {
	switch {
	case end == "":
		return kindSingle
	case end == "\x00" && key == "\x00":
		return kindAll
	case end == "\x00":
		return kindOpen
	}
	return kindRange
}

// contains reports whether k is in the group's range.
func (g *group[T]) contains(k []byte) bool {
	switch g.kind {
	case kindSingle:
		return bytes.Equal(k, g.key)
	case kindAll:
		return true
	case kindOpen:
		return bytes.Compare(k, g.key) >= 0
	}
	return bytes.Compare(k, g.key) >= 0 && bytes.Compare(k, g.end) < 0
}

// filter returns the events of evs in the group's range: evs itself when
// all are, nil when none is, else a new slice.
func (g *group[T]) filter(evs []*mvcc.Event) []*mvcc.Event {
	if g.kind == kindAll {
		return evs
	}
	return keepEvents(evs, func(ev *mvcc.Event) bool { return g.contains(ev.Kv.Key) })
}

// filterType drops the event types flags filter out: it returns evs itself
// when nothing is dropped, nil when everything is, else a new slice.
func filterType(evs []*mvcc.Event, flags uint8) []*mvcc.Event {
	if flags&(flagFilterPut|flagFilterDelete) == 0 {
		return evs
	}
	return keepEvents(evs, func(ev *mvcc.Event) bool {
		if ev.Type == mvcc.EventPut {
			return flags&flagFilterPut == 0
		}
		return flags&flagFilterDelete == 0
	})
}

// keepEvents returns the events of evs that keep accepts: evs itself when
// all are kept (no allocation on the common path), nil when none is, else a
// new slice.
func keepEvents(evs []*mvcc.Event, keep func(*mvcc.Event) bool) []*mvcc.Event {
	n := 0
	for _, ev := range evs {
		if keep(ev) {
			n++
		}
	}
	switch n {
	case 0:
		return nil
	case len(evs):
		return evs
	}
	out := make([]*mvcc.Event, 0, n)
	for _, ev := range evs {
		if keep(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// groupFor returns the group of the range (key, end), creating it if
// needed, and counts one more reference to it.
func (h *Hub[T]) groupFor(key, end string) *group[T] {
	kind := kindOf(key, end)
	var g *group[T]
	if kind == kindSingle {
		g = h.keyed[key]
	} else {
		g = h.ranged[rangeKey{key, end}]
	}
	if g == nil {
		g = &group[T]{key: []byte(key), kind: kind, gidx: len(h.groups), ridx: -1}
		h.groups = append(h.groups, g)
		if kind == kindSingle {
			h.keyed[key] = g
		} else {
			g.end = []byte(end)
			g.ridx = len(h.ranges)
			h.ranges = append(h.ranges, g)
			h.ranged[rangeKey{key, end}] = g
		}
	}
	g.refs++
	return g
}

// release drops one reference to g, and g itself with the last one.
func (h *Hub[T]) release(g *group[T]) {
	g.refs--
	if g.refs > 0 {
		return
	}
	last := len(h.groups) - 1
	h.groups[g.gidx] = h.groups[last]
	h.groups[g.gidx].gidx = g.gidx
	h.groups[last] = nil
	h.groups = h.groups[:last]
	if g.kind == kindSingle {
		delete(h.keyed, string(g.key))
		return
	}
	last = len(h.ranges) - 1
	h.ranges[g.ridx] = h.ranges[last]
	h.ranges[g.ridx].ridx = g.ridx
	h.ranges[last] = nil
	h.ranges = h.ranges[:last]
	delete(h.ranged, rangeKey{string(g.key), string(g.end)})
}

// addSynced puts w, not in any list, among its group's synced watchers.
func (h *Hub[T]) addSynced(w *watcher[T]) {
	g := w.g
	w.idx = int32(len(g.ws))
	w.state = stateSynced
	g.ws = append(g.ws, w)
	h.nSynced++
}

// addUnsynced puts w, not in any list, among the unsynced watchers.
func (h *Hub[T]) addUnsynced(w *watcher[T]) {
	w.idx = int32(len(h.unsynced))
	w.state = stateUnsynced
	h.unsynced = append(h.unsynced, w)
}

// unlink removes w from whichever list holds it (swap-remove: the last
// element takes its place).
func (h *Hub[T]) unlink(w *watcher[T]) {
	var list *[]*watcher[T]
	switch w.state {
	case stateSynced:
		list = &w.g.ws
		h.nSynced--
	case stateUnsynced:
		list = &h.unsynced
	default:
		return
	}
	s := *list
	last := len(s) - 1
	s[w.idx] = s[last]
	s[w.idx].idx = w.idx
	s[last] = nil
	*list = s[:last]
	w.state = statePending
}

// toUnsynced moves a synced watcher to the unsynced list; nextRev must
// already hold its real value.
func (h *Hub[T]) toUnsynced(w *watcher[T]) {
	h.unlink(w)
	h.addUnsynced(w)
}

// toSynced moves an unsynced watcher into its group's synced watchers.
func (h *Hub[T]) toSynced(w *watcher[T]) {
	h.unlink(w)
	h.addSynced(w)
}

// closeWatcher sends final (when the channel has room and final is non-nil),
// closes the channel, forgets w and stops following its context.
func (h *Hub[T]) closeWatcher(w *watcher[T], final *T) {
	if w.state == stateClosed {
		return
	}
	if final != nil {
		w.trySend(*final)
	}
	h.unlink(w)
	if w.g != nil {
		h.release(w.g)
		w.g = nil
	}
	w.state = stateClosed
	h.nWatchers--
	h.open.Add(-1)
	close(w.ch)
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

// clip returns evs with its capacity cut to its length, so that appending
// to it copies instead of writing into a shared backing array.
func clip(evs []*mvcc.Event) []*mvcc.Event { return slices.Clip(evs) }
