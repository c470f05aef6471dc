package robustness

import (
	"context"
	"fmt"
	"sort"
	"strings"

	store "github.com/embedkv/store"
)

// Event is one change of the committed history: a key put to a version, or
// deleted (KV then holds the key only).
type Event struct {
	Rev    int64
	Delete bool
	KV     KV
}

func (e Event) String() string {
	if e.Delete {
		return fmt.Sprintf("@%d DELETE %s", e.Rev, e.KV.Key)
	}
	return fmt.Sprintf("@%d PUT %s", e.Rev, e.KV)
}

// History is the committed history of the keys under a prefix: what every
// revision changed, as one node's MVCC store reports it. It is built from
// reads at each past revision (ReadHistory), independently of the watch
// path, so watches can be checked against it.
type History struct {
	Prefix string
	Rev    int64     // the last revision read
	Events [][]Event // indexed by revision; sorted by key within one

	versions map[string][]Event // per key, ascending revision
}

// NewHistory builds a History from events (any order).
func NewHistory(prefix string, rev int64, events []Event) *History {
	h := &History{Prefix: prefix, Rev: rev, Events: make([][]Event, rev+1), versions: map[string][]Event{}}
	sort.Slice(events, func(i, j int) bool {
		if events[i].Rev != events[j].Rev {
			return events[i].Rev < events[j].Rev
		}
		return events[i].KV.Key < events[j].KV.Key
	})
	for _, e := range events {
		h.Events[e.Rev] = append(h.Events[e.Rev], e)
		h.versions[e.KV.Key] = append(h.versions[e.KV.Key], e)
	}
	return h
}

// ReadHistory reconstructs the history of prefix on node s up to revision
// upTo from serializable reads at every revision from 2 (1 is the empty
// store, which may have been compacted away): the PUT events of revision r
// are the keys whose ModRevision is r, its DELETE events the keys present
// at r-1 and gone at r. The node must have applied upTo and nothing after
// revision 1 may have been compacted.
func ReadHistory(ctx context.Context, s *store.Store, prefix string, upTo int64) (*History, error) {
	var events []Event
	prev := map[string]bool{}
	for r := int64(2); r <= upTo; r++ {
		resp, err := s.Get(ctx, prefix, store.WithPrefix(), store.WithRev(r), store.WithSerializable())
		if err != nil {
			return nil, fmt.Errorf("read %q at revision %d: %w", prefix, r, err)
		}
		cur := map[string]bool{}
		for _, kv := range resp.Kvs {
			cur[string(kv.Key)] = true
			if kv.ModRevision == r {
				events = append(events, Event{Rev: r, KV: toKV(kv)})
			} else if kv.ModRevision > r {
				return nil, fmt.Errorf("read at revision %d returned %s with a later mod revision", r, kv)
			}
		}
		for k := range prev {
			if !cur[k] {
				events = append(events, Event{Rev: r, Delete: true, KV: KV{Key: k, Mod: r}})
			}
		}
		prev = cur
	}
	return NewHistory(prefix, upTo, events), nil
}

// State returns the version of key at revision rev, and whether it existed.
func (h *History) State(key string, rev int64) (KV, bool) {
	vs := h.versions[key]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].Rev > rev }) - 1
	if i < 0 || vs[i].Delete {
		return KV{}, false
	}
	return vs[i].KV, true
}

// Range returns the versions of the keys under prefix at revision rev,
// sorted by key.
func (h *History) Range(prefix string, rev int64) []KV {
	var keys []string
	for k := range h.versions {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []KV
	for _, k := range keys {
		if kv, ok := h.State(k, rev); ok {
			out = append(out, kv)
		}
	}
	return out
}

// Keys returns every key that ever existed under prefix, sorted.
func (h *History) Keys(prefix string) []string {
	var keys []string
	for k := range h.versions {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Validate checks the history is a well-formed MVCC history: versions count
// puts since creation, create revisions start generations, mod revisions
// match. With dense, every revision from 2 to Rev must change something
// (true when only writes under the prefix run).
func (h *History) Validate(dense bool) []string {
	var bad []string
	for k, vs := range h.versions {
		var cur *KV
		for _, e := range vs {
			switch {
			case e.Delete && cur == nil:
				bad = append(bad, fmt.Sprintf("history: %s deletes absent key", e))
			case e.Delete:
				cur = nil
			case cur == nil && (e.KV.Version != 1 || e.KV.Create != e.Rev || e.KV.Mod != e.Rev):
				bad = append(bad, fmt.Sprintf("history: %s creates %s but is not version 1 created and modified at its revision", e, k))
			case cur != nil && (e.KV.Version != cur.Version+1 || e.KV.Create != cur.Create || e.KV.Mod != e.Rev):
				bad = append(bad, fmt.Sprintf("history: %s does not follow %s", e, cur))
			}
			if !e.Delete {
				kv := e.KV
				cur = &kv
			}
		}
	}
	if dense {
		for r := int64(2); r <= h.Rev; r++ {
			if len(h.Events[r]) == 0 {
				bad = append(bad, fmt.Sprintf("history: revision %d changed nothing under %q", r, h.Prefix))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// Diff describes how other differs from h up to the lower of their last
// revisions, or returns "" when that common part is identical.
func (h *History) Diff(other *History) string {
	n := min(h.Rev, other.Rev)
	for r := int64(0); r <= n; r++ {
		a, b := h.Events[r], other.Events[r]
		if fmt.Sprint(a) != fmt.Sprint(b) {
			return fmt.Sprintf("revision %d: %v vs %v", r, a, b)
		}
	}
	return ""
}

// Count returns the number of events in the history.
func (h *History) Count() int {
	n := 0
	for _, evs := range h.Events {
		n += len(evs)
	}
	return n
}
