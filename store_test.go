package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSingleNodeKV(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	ctx := ctxT(t)

	p := mustPut(t, s, "sample_key", "sample_value")
	if p.Header.Revision != 2 {
		t.Errorf("first put revision: got %d, want 2", p.Header.Revision)
	}
	if p.Header.MemberID != "n1" || p.Header.RaftTerm == 0 {
		t.Errorf("header: got %+v, want member n1 and a term", p.Header)
	}
	g := mustGet(t, s, "sample_key")
	if got := value(g); got != "sample_value" {
		t.Errorf("get: got %q, want sample_value", got)
	}
	kv := g.Kvs[0]
	if kv.CreateRevision != 2 || kv.ModRevision != 2 || kv.Version != 1 {
		t.Errorf("kv: got %v, want create 2 mod 2 version 1", kv)
	}
	p2 := mustPut(t, s, "sample_key", "v2", WithPrevKV())
	if p2.PrevKv == nil || string(p2.PrevKv.Value) != "sample_value" {
		t.Errorf("prev kv: got %v, want sample_value", p2.PrevKv)
	}
	d, err := s.Delete(ctx, "sample_key")
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 1 || d.Header.Revision != 4 {
		t.Errorf("delete: got deleted %d rev %d, want 1 and 4", d.Deleted, d.Header.Revision)
	}
	if got := value(mustGet(t, s, "sample_key")); got != "<absent>" {
		t.Errorf("after delete: got %q", got)
	}
	// A delete of nothing creates no revision.
	d, err = s.Delete(ctx, "sample_key")
	if err != nil || d.Deleted != 0 || d.Header.Revision != 4 {
		t.Errorf("empty delete: got %+v, %v; want 0 deleted at revision 4", d, err)
	}
	// Past revisions stay readable.
	old := mustGet(t, s, "sample_key", WithRev(2))
	if value(old) != "sample_value" {
		t.Errorf("read at rev 2: got %q", value(old))
	}
}

func TestGetOptions(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	for i, k := range []string{"a", "b/1", "b/2", "b/3", "c"} {
		mustPut(t, s, k, fmt.Sprintf("v%d", 5-i))
	}
	keys := func(r *GetResponse) string {
		out := ""
		for _, kv := range r.Kvs {
			out += string(kv.Key) + ","
		}
		return out
	}
	tests := []struct {
		name      string
		key       string
		opts      []OpOption
		wantKeys  string
		wantCount int64
		wantMore  bool
	}{
		{"single", "a", nil, "a,", 1, false},
		{"missing", "zz", nil, "", 0, false},
		{"prefix", "b/", []OpOption{WithPrefix()}, "b/1,b/2,b/3,", 3, false},
		{"range", "a", []OpOption{WithRange("b/3")}, "a,b/1,b/2,", 3, false},
		{"from key", "b/2", []OpOption{WithFromKey()}, "b/2,b/3,c,", 3, false},
		{"all keys", "", []OpOption{WithPrefix()}, "a,b/1,b/2,b/3,c,", 5, false},
		{"limit", "", []OpOption{WithPrefix(), WithLimit(2)}, "a,b/1,", 5, true},
		{"sort by value ascending", "", []OpOption{WithPrefix(), WithSort(SortByValue, SortAscend)}, "c,b/3,b/2,b/1,a,", 5, false},
		{"sort by key descending limit", "", []OpOption{WithPrefix(), WithSort(SortByKey, SortDescend), WithLimit(2)}, "c,b/3,", 5, true},
		{"count only", "b/", []OpOption{WithPrefix(), WithCountOnly()}, "", 3, false},
		{"min mod rev", "", []OpOption{WithPrefix(), WithMinModRev(5)}, "b/3,c,", 5, false},
		{"max create rev", "", []OpOption{WithPrefix(), WithMaxCreateRev(3)}, "a,b/1,", 5, false},
		{"serializable", "a", []OpOption{WithSerializable()}, "a,", 1, false},
		{"past revision", "", []OpOption{WithPrefix(), WithRev(3)}, "a,b/1,", 2, false},
		{"range end before key is empty", "c", []OpOption{WithRange("a")}, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustGet(t, s, tt.key, tt.opts...)
			if got := keys(r); got != tt.wantKeys {
				t.Errorf("keys: got %q, want %q", got, tt.wantKeys)
			}
			if r.Count != tt.wantCount || r.More != tt.wantMore {
				t.Errorf("count/more: got %d/%v, want %d/%v", r.Count, r.More, tt.wantCount, tt.wantMore)
			}
		})
	}
	t.Run("keys only", func(t *testing.T) {
		r := mustGet(t, s, "a", WithKeysOnly())
		if len(r.Kvs) != 1 || r.Kvs[0].Value != nil || r.Kvs[0].Version != 1 {
			t.Errorf("got %v, want key a without value", r.Kvs)
		}
	})
}

func TestClusterWriteAnywhereReadEverywhere(t *testing.T) {
	c := newCluster(t, 3, nil)
	for i, s := range c.nodes {
		key := fmt.Sprintf("from-%d", i)
		p := mustPut(t, s, key, "v")
		// Read-your-write on the writing node, serializable: the write
		// returned only after this node applied it.
		if got := value(mustGet(t, s, key, WithSerializable())); got != "v" {
			t.Errorf("node %d serializable read of own write: got %q", i, got)
		}
		// Linearizable reads on every node see it.
		for j, o := range c.nodes {
			g := mustGet(t, o, key)
			if value(g) != "v" || g.Kvs[0].ModRevision != p.Header.Revision {
				t.Errorf("node %d reading %s: got %v, want mod revision %d", j, key, g.Kvs, p.Header.Revision)
			}
		}
	}
}

func TestConcurrentWritesThroughFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	f := c.nodes[c.follower()]
	const n = 200
	var wg sync.WaitGroup
	revs := make(chan int64, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := f.Put(context.Background(), fmt.Sprintf("k%03d", i), "v")
			if err != nil {
				errs <- err
				return
			}
			revs <- r.Header.Revision
		}(i)
	}
	wg.Wait()
	close(errs)
	close(revs)
	for err := range errs {
		t.Fatalf("put through follower: %v", err)
	}
	seen := map[int64]bool{}
	for r := range revs {
		if seen[r] {
			t.Errorf("revision %d returned twice", r)
		}
		seen[r] = true
	}
	for i, s := range c.nodes {
		g := mustGet(t, s, "k", WithPrefix(), WithCountOnly())
		if g.Count != n {
			t.Errorf("node %d: got %d keys, want %d", i, g.Count, n)
		}
	}
}

func TestLeaderStoppedNoAckedWriteLost(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	acked := map[string]bool{}
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("before-%d", i)
		mustPut(t, c.nodes[(l+i)%3], k, "v")
		acked[k] = true
	}
	c.stop(l)
	nl := c.waitLeader()
	if nl == l {
		t.Fatal("stopped node still leader")
	}
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("after-%d", i)
		mustPut(t, c.nodes[nl], k, "v")
		acked[k] = true
	}
	for i, s := range c.nodes {
		if s == nil {
			continue
		}
		for k := range acked {
			if value(mustGet(t, s, k)) != "v" {
				t.Errorf("node %d lost acknowledged write %s", i, k)
			}
		}
	}
	// The old leader rejoins and catches up.
	c.start(l)
	if !poll(t, 10*time.Second, func() bool {
		g, err := c.nodes[l].Get(ctxT(t), "", WithPrefix(), WithCountOnly(), WithSerializable())
		return err == nil && g.Count == int64(len(acked))
	}) {
		t.Errorf("restarted old leader did not catch up")
	}
}

func TestFullRestartFromDisk(t *testing.T) {
	c := newCluster(t, 3, nil)
	for i := 0; i < 30; i++ {
		mustPut(t, c.nodes[i%3], fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	if _, err := c.nodes[0].Delete(ctxT(t), "k0", WithPrefix()); err != nil { // k00..k09
		t.Fatal(err)
	}
	want := mustGet(t, c.nodes[0], "", WithPrefix())
	c.closeAll()
	for i := range c.nodes {
		c.start(i)
	}
	c.waitLeader()
	for i, s := range c.nodes {
		got := mustGet(t, s, "", WithPrefix())
		if got.Count != want.Count || got.Header.Revision < want.Header.Revision {
			t.Errorf("node %d after restart: count %d rev %d, want %d rev >= %d",
				i, got.Count, got.Header.Revision, want.Count, want.Header.Revision)
		}
		for j := range want.Kvs {
			if j < len(got.Kvs) && (string(got.Kvs[j].Key) != string(want.Kvs[j].Key) ||
				got.Kvs[j].ModRevision != want.Kvs[j].ModRevision) {
				t.Errorf("node %d kv %d: got %v, want %v", i, j, got.Kvs[j], want.Kvs[j])
			}
		}
	}
}

func TestSnapshotTruncateRestart(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 80
		cfg.SnapshotInterval = 50 * time.Millisecond
	})
	for i := 0; i < 400; i++ {
		mustPut(t, c.nodes[i%3], fmt.Sprintf("k%03d", i%100), fmt.Sprint(i))
	}
	mustPut(t, c.nodes[0], "k000", "last")
	for i, s := range c.nodes {
		if f := s.raft.Snapshot(); f.Error() != nil {
			t.Logf("node %d explicit snapshot: %v", i, f.Error())
		}
		first, err := s.bolt.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		if first <= 1 {
			t.Errorf("node %d: log not truncated (first index %d)", i, first)
		}
	}
	want := mustGet(t, c.nodes[0], "", WithPrefix())
	c.closeAll()
	for i := range c.nodes {
		c.start(i)
	}
	c.waitLeader()
	for i, s := range c.nodes {
		got := mustGet(t, s, "", WithPrefix())
		if got.Count != 100 || value(mustGet(t, s, "k000")) != "last" {
			t.Errorf("node %d after snapshot restart: count %d, k000=%q", i, got.Count, value(mustGet(t, s, "k000")))
		}
		if got.Header.Revision < want.Header.Revision {
			t.Errorf("node %d revision went back: %d < %d", i, got.Header.Revision, want.Header.Revision)
		}
		// History below the snapshot survives too.
		old := mustGet(t, s, "k001", WithRev(3))
		if value(old) != "1" {
			t.Errorf("node %d read at rev 3: got %q, want 1", i, value(old))
		}
	}
}

func TestCompactionAndPastReads(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	ctx := ctxT(t)
	var revs []int64
	for i := 0; i < 5; i++ {
		revs = append(revs, mustPut(t, s, "k", fmt.Sprint(i)).Header.Revision)
	}
	for i, r := range revs {
		if got := value(mustGet(t, s, "k", WithRev(r))); got != fmt.Sprint(i) {
			t.Errorf("at rev %d: got %q, want %d", r, got, i)
		}
	}
	if err := s.Compact(ctx, revs[3]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rev  int64
		want string
		err  error
	}{
		{"below compaction", revs[2], "", ErrCompacted},
		{"at compaction", revs[3], "3", nil},
		{"after compaction", revs[4], "4", nil},
		{"future", revs[4] + 10, "", ErrFutureRev},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := s.Get(ctx, "k", WithRev(tt.rev))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err: got %v, want %v", err, tt.err)
			}
			if err == nil && value(g) != tt.want {
				t.Errorf("value: got %q, want %q", value(g), tt.want)
			}
		})
	}
	if err := s.Compact(ctx, revs[1]); !errors.Is(err, ErrCompacted) {
		t.Errorf("compact below compaction point: got %v, want ErrCompacted", err)
	}
	if err := s.Compact(ctx, revs[4]+100); !errors.Is(err, ErrFutureRev) {
		t.Errorf("compact in the future: got %v, want ErrFutureRev", err)
	}
	if st := s.Status(); st.CompactRevision != revs[3] {
		t.Errorf("status compact revision: got %d, want %d", st.CompactRevision, revs[3])
	}
}

func TestAutomaticCompaction(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.CompactionRetention = 20
		cfg.CompactionCheckInterval = 20 * time.Millisecond
	})
	s := c.nodes[0]
	for i := 0; i < 60; i++ {
		mustPut(t, s, "k", fmt.Sprint(i))
	}
	if !poll(t, 5*time.Second, func() bool { return s.Status().CompactRevision > 1 }) {
		t.Fatalf("no automatic compaction: status %+v", s.Status())
	}
	st := s.Status()
	if st.Revision-st.CompactRevision < 20 {
		t.Errorf("compacted too much: revision %d, compact %d, retention 20", st.Revision, st.CompactRevision)
	}
}

func TestCloseIdempotentAndStopped(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	mustPut(t, s, "k", "v")
	c.stop(0)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	calls := map[string]func() error{
		"Put":     func() error { _, err := s.Put(ctx, "k", "v"); return err },
		"Get":     func() error { _, err := s.Get(ctx, "k"); return err },
		"Delete":  func() error { _, err := s.Delete(ctx, "k"); return err },
		"Txn":     func() error { _, err := s.Txn(ctx).Then(OpPut("k", "v")).Commit(); return err },
		"Compact": func() error { return s.Compact(ctx, 2) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, ErrStopped) {
				t.Errorf("got %v, want ErrStopped", err)
			}
		})
	}
	if st := s.Status(); st.RaftState != "Shutdown" {
		t.Errorf("status after close: got %q, want Shutdown", st.RaftState)
	}
}

func TestNoLeaderTimesOut(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.LeaderWaitTimeout = 500 * time.Millisecond })
	l := c.waitLeader()
	f := c.follower()
	for i := range c.nodes {
		if i != f && i != l {
			c.stop(i)
		}
	}
	c.stop(l)
	s := c.nodes[f]
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := s.Put(ctx, "k", "v"); !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrUnknownOutcome) {
		t.Errorf("put without quorum: got %v, want ErrNoLeader", err)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, ErrNoLeader) {
		t.Errorf("linearizable get without leader: got %v, want ErrNoLeader", err)
	}
	if _, err := s.Get(context.Background(), "k", WithSerializable()); err != nil {
		t.Errorf("serializable get without leader: %v", err)
	}
}
