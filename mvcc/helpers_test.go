package mvcc

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// put writes key=val in its own transaction and returns the new revision.
func put(t testing.TB, s *Store, key, val string) int64 {
	t.Helper()
	tx := s.Write()
	tx.Put([]byte(key), []byte(val), 0)
	tx.End()
	return s.Rev()
}

// del deletes [key, end) in its own transaction and returns how many keys
// were deleted.
func del(t testing.TB, s *Store, key, end string) int {
	t.Helper()
	tx := s.Write()
	var e []byte
	if end != "" {
		e = []byte(end)
	}
	n := len(tx.DeleteRange([]byte(key), e))
	tx.End()
	return n
}

// b converts a string to bytes, "" to nil (a single-key range end).
func b(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// fmtKV renders a KeyValue compactly: key=value@create/mod/vVersion[Llease].
func fmtKV(kv *KeyValue) string {
	if kv == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("%s=%s@%d/%d/v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	if kv.Lease != 0 {
		s += fmt.Sprintf("L%d", kv.Lease)
	}
	return s
}

func fmtKVs(kvs []*KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = fmtKV(kv)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// fmtEvent renders an event as PUT|DELETE kv (prev).
func fmtEvent(ev *Event) string {
	return fmt.Sprintf("%s %s (prev %s)", ev.Type, fmtKV(ev.Kv), fmtKV(ev.PrevKv))
}

func fmtEvents(evs []*Event) string {
	parts := make([]string, len(evs))
	for i, ev := range evs {
		parts[i] = fmtEvent(ev)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// fmtResult renders a whole RangeResult (or the error).
func fmtResult(r *RangeResult, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("rev=%d count=%d more=%v kvs=%s", r.Rev, r.Count, r.More, fmtKVs(r.KVs))
}

// rangeStr reads a range at rev through the view and renders it.
func rangeStr(v *View, key, end string, rev int64) string {
	return fmtResult(v.Range(b(key), b(end), RangeOptions{Rev: rev}))
}

// keysOf renders only the keys of a result.
func keysOf(r *RangeResult) string {
	ks := make([]string, len(r.KVs))
	for i, kv := range r.KVs {
		ks[i] = string(kv.Key)
	}
	return strings.Join(ks, ",")
}

// allEvents collects Events(from, key, end) as one string per revision.
func allEvents(t testing.TB, v *View, from int64, key, end []byte) []string {
	t.Helper()
	var out []string
	err := v.Events(from, key, end, func(rev int64, evs []*Event) bool {
		out = append(out, fmt.Sprintf("%d:%s", rev, fmtEvents(evs)))
		return true
	})
	if err != nil {
		t.Fatalf("Events(%d): %v", from, err)
	}
	return out
}

func wantErr(t testing.TB, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: got error %v, want %v", what, got, want)
	}
}
