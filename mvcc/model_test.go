package mvcc

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
)

// model is a deliberately naive reference implementation: every version of
// every key in a map of slices, never pruned, and every read a full scan.
type model struct {
	rev, compactRev int64
	hist            map[string][]mver
	events          []mevent
	// open transaction
	txWrote bool
	txSub   int64
}

type mver struct {
	rev, sub int64
	kv       *KeyValue // nil: tombstone
}

type mevent struct {
	rev int64
	ev  *Event
}

func newModel() *model { return &model{rev: 1, hist: map[string][]mver{}} }

// at returns key's version at rev, nil if absent.
func (m *model) at(key string, rev int64) *KeyValue {
	var kv *KeyValue
	for _, v := range m.hist[key] {
		if v.rev <= rev {
			kv = v.kv
		}
	}
	return kv
}

// cur is the transaction's current revision.
func (m *model) cur() int64 {
	if m.txWrote {
		return m.rev + 1
	}
	return m.rev
}

func (m *model) put(key, val string, lease int64) *KeyValue {
	rev := m.rev + 1
	prev := m.at(key, rev)
	kv := &KeyValue{Key: []byte(key), Value: b(val), ModRevision: rev, Lease: lease, CreateRevision: rev, Version: 1}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
	}
	m.write(key, kv, &Event{Type: EventPut, Kv: kv, PrevKv: prev})
	return prev
}

func (m *model) write(key string, kv *KeyValue, ev *Event) {
	m.hist[key] = append(m.hist[key], mver{rev: m.rev + 1, sub: m.txSub, kv: kv})
	m.events = append(m.events, mevent{rev: m.rev + 1, ev: ev})
	m.txSub++
	m.txWrote = true
}

// inRange is the etcd range rule, written independently of span.
func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case bytes.Equal(end, []byte{0}) && bytes.Equal(key, []byte{0}):
		return true
	case bytes.Equal(end, []byte{0}):
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

func (m *model) keys() []string {
	ks := make([]string, 0, len(m.hist))
	for k := range m.hist {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (m *model) del(key, end []byte) []*KeyValue {
	var out []*KeyValue
	for _, k := range m.keys() {
		if prev := m.at(k, m.rev+1); prev != nil && inRange([]byte(k), key, end) {
			out = append(out, prev)
			m.write(k, nil, &Event{Type: EventDelete, Kv: &KeyValue{Key: []byte(k), ModRevision: m.rev + 1}, PrevKv: prev})
		}
	}
	return out
}

func (m *model) end() {
	if m.txWrote {
		m.rev++
	}
	m.txWrote, m.txSub = false, 0
}

func (m *model) rangeAt(key, end []byte, o RangeOptions, cur, compactRev int64) (*RangeResult, error) {
	rev := o.Rev
	if rev > cur {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	if rev < compactRev {
		return nil, ErrCompacted
	}
	var kvs []*KeyValue
	for _, k := range m.keys() {
		if kv := m.at(k, rev); kv != nil && inRange(kv.Key, key, end) {
			kvs = append(kvs, kv)
		}
	}
	res := &RangeResult{Rev: rev, Count: int64(len(kvs))}
	if o.CountOnly {
		return res, nil
	}
	filtered := o.MinModRev != 0 || o.MaxModRev != 0 || o.MinCreateRev != 0 || o.MaxCreateRev != 0
	if o.SortOrder == SortNone && !filtered && o.Limit > 0 && int64(len(kvs)) > o.Limit+1 {
		kvs = kvs[:o.Limit+1]
	}
	var kept []*KeyValue
	for _, kv := range kvs {
		if (o.MinModRev == 0 || kv.ModRevision >= o.MinModRev) && (o.MaxModRev == 0 || kv.ModRevision <= o.MaxModRev) &&
			(o.MinCreateRev == 0 || kv.CreateRevision >= o.MinCreateRev) && (o.MaxCreateRev == 0 || kv.CreateRevision <= o.MaxCreateRev) {
			kept = append(kept, kv)
		}
	}
	field := func(kv *KeyValue) int64 {
		switch o.SortTarget {
		case SortByVersion:
			return kv.Version
		case SortByCreateRevision:
			return kv.CreateRevision
		case SortByModRevision:
			return kv.ModRevision
		}
		return 0
	}
	less := func(a, b *KeyValue) int {
		switch o.SortTarget {
		case SortByKey:
			return bytes.Compare(a.Key, b.Key)
		case SortByValue:
			return bytes.Compare(a.Value, b.Value)
		}
		return cmp.Compare(field(a), field(b))
	}
	if o.SortOrder == SortDescend || o.SortOrder == SortAscend || o.SortTarget != SortByKey {
		sign := 1
		if o.SortOrder == SortDescend {
			sign = -1
		}
		sort.SliceStable(kept, func(i, j int) bool { return sign*less(kept[i], kept[j]) < 0 })
	}
	if o.Limit > 0 && int64(len(kept)) > o.Limit {
		kept, res.More = kept[:o.Limit], true
	}
	for i, kv := range kept {
		if o.KeysOnly {
			c := *kv
			c.Value = nil
			kept[i] = &c
		}
	}
	res.KVs = kept
	return res, nil
}

// events renders the model's events like allEvents, for revisions >= from.
func (m *model) eventsFrom(from, upto int64, key, end []byte, stopAfter int) []string {
	var out []string
	for rev := max(from, 0); rev <= upto; rev++ {
		var evs []*Event
		for _, e := range m.events {
			if e.rev == rev && inRange(e.ev.Kv.Key, key, end) {
				evs = append(evs, e.ev)
			}
		}
		if len(evs) > 0 {
			out = append(out, fmt.Sprintf("%d:%s", rev, fmtEvents(evs)))
			if len(out) == stopAfter {
				break
			}
		}
	}
	return out
}

// retained is the number of history items compaction should have left.
func (m *model) retained() int {
	n := 0
	for _, vs := range m.hist {
		newestAtC := -1
		for i, v := range vs {
			if v.rev > m.compactRev {
				n++
			} else {
				newestAtC = i
			}
		}
		if newestAtC >= 0 && vs[newestAtC].kv != nil {
			n++
		}
	}
	return n
}

// gen produces random keys, spans and options over a small key space.
type gen struct {
	*rand.Rand
	nkeys int
	big   int // randomOp writes a ~40 KB value once in big puts; 0: never
}

func (g gen) key() []byte { return fmt.Appendf(nil, "%c%d", 'a'+g.Intn(3), g.Intn(g.nkeys/3)) }

func (g gen) span() (key, end []byte) {
	switch g.Intn(6) {
	case 0:
		a, z := g.key(), g.key()
		return a, z // may be empty or reversed
	case 1:
		k := g.key()[:1]
		return k, PrefixEnd(k)
	case 2:
		return g.key(), []byte{0}
	case 3:
		return []byte{0}, []byte{0}
	default:
		return g.key(), nil
	}
}

func (g gen) opts(rev, compactRev int64) RangeOptions {
	var o RangeOptions
	if g.Intn(2) == 0 {
		o.Rev = compactRev - 1 + g.Int63n(rev-compactRev+3)
	}
	if g.Intn(2) == 0 {
		o.Limit = g.Int63n(6) - 1
	}
	if g.Intn(3) == 0 {
		o.SortTarget, o.SortOrder = SortTarget(g.Intn(5)), SortOrder(g.Intn(3))
	}
	o.KeysOnly = g.Intn(8) == 0
	o.CountOnly = g.Intn(8) == 0
	if g.Intn(5) == 0 {
		switch g.Intn(4) {
		case 0:
			o.MinModRev = g.Int63n(rev + 1)
		case 1:
			o.MaxModRev = g.Int63n(rev + 1)
		case 2:
			o.MinCreateRev = g.Int63n(rev + 1)
		default:
			o.MaxCreateRev = g.Int63n(rev + 1)
		}
	}
	return o
}

func TestModelRandomized(t *testing.T) {
	for _, tc := range []struct {
		name string
		path compactPath
	}{{"compact-auto", compactAuto}, {"compact-seek", compactSeek}, {"compact-scan", compactScan}} {
		t.Run(tc.name, func(t *testing.T) { testModelRandomized(t, tc.path) })
	}
}

// testModelRandomized runs random operations against the store and the
// model, with Compact finding what to drop as path says.
func testModelRandomized(t *testing.T, path compactPath) {
	const ops = 5000
	g := gen{rand.New(rand.NewSource(7)), 30, 0}
	s, m := New(), newModel()
	s.compactPath = path
	type heldView struct {
		v          *View
		rev, compR int64
	}
	var views []heldView
	for i := range ops {
		switch p := g.Intn(100); {
		case p < 55: // write transaction
			tx := s.Write()
			if tx.Rev() != m.rev+1 {
				t.Fatalf("op %d: txn Rev %d, model %d", i, tx.Rev(), m.rev+1)
			}
			for range 1 + g.Intn(4) {
				switch q := g.Intn(10); {
				case q < 6:
					k, val, lease := g.key(), fmt.Sprintf("v%d", g.Intn(20)), g.Int63n(3)
					got, want := tx.Put(k, []byte(val), lease), m.put(string(k), val, lease)
					if fmtKV(got) != fmtKV(want) {
						t.Fatalf("op %d: Put(%s) prev %s, model %s", i, k, fmtKV(got), fmtKV(want))
					}
				case q < 8:
					key, end := g.span()
					if g.Intn(3) != 0 {
						end = nil // mostly single keys, or little would stay live
					}
					got, want := tx.DeleteRange(key, end), m.del(key, end)
					if fmtKVs(got) != fmtKVs(want) {
						t.Fatalf("op %d: DeleteRange(%q,%q) = %s, model %s", i, key, end, fmtKVs(got), fmtKVs(want))
					}
				default:
					key, end := g.span()
					o := g.opts(m.cur(), m.compactRev)
					got := fmtResult(tx.Range(key, end, o))
					want := fmtResult(m.rangeAt(key, end, o, m.cur(), m.compactRev))
					if got != want {
						t.Fatalf("op %d: txn Range(%q,%q,%+v)\n got %s\nwant %s", i, key, end, o, got, want)
					}
				}
			}
			evs := tx.End()
			var wantEvs []*Event
			if m.txWrote {
				for _, e := range m.events {
					if e.rev == m.rev+1 {
						wantEvs = append(wantEvs, e.ev)
					}
				}
			}
			m.end()
			if fmtEvents(evs) != fmtEvents(wantEvs) || s.Rev() != m.rev {
				t.Fatalf("op %d: End() = %s rev %d, model %s rev %d", i, fmtEvents(evs), s.Rev(), fmtEvents(wantEvs), m.rev)
			}
		case p < 75: // read
			key, end := g.span()
			o := g.opts(m.rev, m.compactRev)
			got := fmtResult(s.View().Range(key, end, o))
			want := fmtResult(m.rangeAt(key, end, o, m.rev, m.compactRev))
			if got != want {
				t.Fatalf("op %d: Range(%q,%q,%+v)\n got %s\nwant %s", i, key, end, o, got, want)
			}
		case p < 80: // compact
			c := m.compactRev - 1 + g.Int63n(min(m.rev-m.compactRev+3, 8))
			if g.Intn(2) == 0 {
				c = m.compactRev - 1 + g.Int63n(m.rev-m.compactRev+3)
			}
			err := s.Compact(c)
			switch {
			case c <= m.compactRev:
				wantErr(t, fmt.Sprintf("op %d: Compact(%d)", i, c), err, ErrCompacted)
			case c > m.rev:
				wantErr(t, fmt.Sprintf("op %d: Compact(%d)", i, c), err, ErrFutureRev)
			case err != nil:
				t.Fatalf("op %d: Compact(%d): %v", i, c, err)
			default:
				m.compactRev = c
				if got, want := s.hist.Len(), m.retained(); got != want {
					t.Fatalf("op %d: after Compact(%d) %d history items, model %d", i, c, got, want)
				}
				if got := s.events.Len(); got != 0 && s.events.Len() != int(m.rev-max(c, 2)+1) {
					t.Fatalf("op %d: event log holds %d revisions after Compact(%d) at rev %d", i, got, c, m.rev)
				}
			}
		case p < 92: // events
			from := m.compactRev - 1 + g.Int63n(m.rev-m.compactRev+3)
			key, end := g.span()
			stop := g.Intn(4) // 0: no early stop
			var got []string
			err := s.View().Events(from, key, end, func(rev int64, evs []*Event) bool {
				got = append(got, fmt.Sprintf("%d:%s", rev, fmtEvents(evs)))
				return len(got) != stop
			})
			if from < m.compactRev {
				wantErr(t, fmt.Sprintf("op %d: Events(%d)", i, from), err, ErrCompacted)
				continue
			}
			if err != nil {
				t.Fatalf("op %d: Events(%d): %v", i, from, err)
			}
			want := m.eventsFrom(from, m.rev, key, end, stop)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("op %d: Events(%d,%q,%q)\n got %v\nwant %v", i, from, key, end, got, want)
			}
		default:
			views = append(views, heldView{s.View(), m.rev, m.compactRev})
		}
	}
	t.Logf("final revision %d, compacted at %d, %d live keys, %d history items, %d views",
		m.rev, m.compactRev, s.Len(), s.hist.Len(), len(views))
	// Every held view still answers every readable revision like the model.
	all := []byte{0}
	for _, hv := range views {
		for rev := hv.compR; rev <= hv.rev; rev += 1 + hv.rev/50 {
			got := fmtResult(hv.v.Range(all, all, RangeOptions{Rev: rev}))
			want := fmtResult(m.rangeAt(all, all, RangeOptions{Rev: rev}, hv.rev, hv.compR))
			if got != want {
				t.Fatalf("view at %d, rev %d\n got %s\nwant %s", hv.rev, rev, got, want)
			}
		}
	}
}
