package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// allKeys reads every key of s at rev (0 = current), linearizably.
func allKeys(t testing.TB, s *Store, rev int64) []*KeyValue {
	t.Helper()
	r, err := s.Get(ctxT(t), "\x00", WithFromKey(), WithRev(rev))
	if err != nil {
		t.Fatalf("Get all at %d on %s: %v", rev, s.cfg.NodeID, err)
	}
	return r.Kvs
}

func TestBackupRestoreUnderWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.nodes[c.waitLeader()]
	lease, err := l.Grant(ctxT(t), 3600)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, l, "leased", "x", WithLease(lease.ID))
	mustPut(t, l, "gone", "1")
	if _, err := l.Delete(ctxT(t), "gone"); err != nil {
		t.Fatal(err)
	}
	w := startWriter(l, "bk/")
	poll(t, 10*time.Second, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.acked) > 200 })

	var backup bytes.Buffer
	if err := c.nodes[c.follower()].Snapshot(ctxT(t), &backup); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	w.finish(t, l, "bk/")
	t.Logf("backup: %d bytes", backup.Len())

	dir := filepath.Join(t.TempDir(), "restored")
	cfg := Config{NodeID: "solo", Dir: dir, Logger: testLogger(t)}
	fastTimers(&cfg)
	if err := Restore(bytes.NewReader(backup.Bytes()), cfg); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open restored: %v", err)
	}
	defer r.Close()
	rev := r.Status().Revision
	if rev == 0 {
		t.Fatal("restored node has revision 0")
	}
	got, want := allKeys(t, r, 0), allKeys(t, l, rev)
	if len(got) < 200 {
		t.Fatalf("restored %d keys, want the >200 written before the backup", len(got))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored keys differ from the cluster's at revision %d: got %d keys, want %d", rev, len(got), len(want))
	}
	if gr := mustGet(t, r, "gone", WithRev(rev-1)); gr.Header.Revision != rev {
		t.Fatalf("history read on restored node: header revision %d, want %d", gr.Header.Revision, rev)
	}
	ttl, err := r.TimeToLive(ctxT(t), lease.ID, WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("restored lease: got %+v, %v; want a live lease with key %q", ttl, err, "leased")
	}
	// The restored node is a new cluster: it writes on from the backup's revision.
	pr := mustPut(t, r, "after-restore", "1")
	if pr.Header.Revision != rev+1 {
		t.Fatalf("first write after restore: revision %d, want %d", pr.Header.Revision, rev+1)
	}
	if r.cluster() == l.cluster() {
		t.Fatal("the restored cluster kept the old cluster's ID")
	}
}

func TestRestoreThreeNodes(t *testing.T) {
	src := newCluster(t, 1, nil)
	for i := 0; i < 50; i++ {
		mustPut(t, src.nodes[0], fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	var backup bytes.Buffer
	if err := src.nodes[0].Snapshot(ctxT(t), &backup); err != nil {
		t.Fatal(err)
	}
	rev := src.nodes[0].Status().Revision

	c := &testCluster{t: t}
	addrs := freeAddrs(t, 3)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("r%d", i+1), Addr: a})
	}
	base := t.TempDir()
	for i := range peers {
		cfg := Config{NodeID: peers[i].ID, Dir: filepath.Join(base, peers[i].ID), BindAddr: addrs[i], Peers: peers, Logger: testLogger(t)}
		fastTimers(&cfg)
		if err := Restore(bytes.NewReader(backup.Bytes()), cfg); err != nil {
			t.Fatalf("Restore %s: %v", cfg.NodeID, err)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.nodes = make([]*Store, 3)
	for i := range c.cfgs {
		c.start(i)
	}
	t.Cleanup(c.closeAll)
	c.waitLeader()
	for i, s := range c.nodes {
		if got, want := allKeys(t, s, 0), allKeys(t, src.nodes[0], rev); !reflect.DeepEqual(got, want) {
			t.Fatalf("node %d: restored %d keys, want %d equal to the source's", i, len(got), len(want))
		}
	}
	mustPut(t, c.nodes[c.follower()], "new", "1")
}

func TestRestoreRejectsBadInput(t *testing.T) {
	src := newCluster(t, 1, nil)
	mustPut(t, src.nodes[0], "k", "v")
	var backup bytes.Buffer
	if err := src.nodes[0].Snapshot(ctxT(t), &backup); err != nil {
		t.Fatal(err)
	}
	good := backup.Bytes()
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40
	used := filepath.Join(t.TempDir(), "used")
	if err := Restore(bytes.NewReader(good), Config{Dir: used}); err != nil {
		t.Fatal(err)
	}
	var raftSnap bytes.Buffer
	if err := writeFSMSnapshot(&raftSnap, src.nodes[0].fsm.capture(), fsmSnapshotKind); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		r    []byte
		cfg  func(dir string) Config
		want error
	}{
		{"truncated", good[:len(good)/2], nil, ErrCorrupt},
		{"truncated trailer", good[:len(good)-1], nil, ErrCorrupt},
		{"flipped byte", flipped, nil, ErrCorrupt},
		{"empty", nil, nil, ErrCorrupt},
		{"raft snapshot is not a backup", raftSnap.Bytes(), nil, ErrCorrupt},
		{"dir holds state", good, func(string) Config { return Config{Dir: used} }, ErrConfig},
		{"join", good, func(dir string) Config { return Config{Dir: dir, NodeID: "a", Join: []string{"127.0.0.1:1"}} }, ErrConfig},
		{"no dir", good, func(string) Config { return Config{} }, ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new")
			cfg := Config{Dir: dir}
			if tt.cfg != nil {
				cfg = tt.cfg(dir)
			}
			err := Restore(bytes.NewReader(tt.r), cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Restore: got %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a rejected Restore left %s behind (stat: %v)", dir, err)
			}
		})
	}
	t.Run("nil reader", func(t *testing.T) {
		if err := Restore(nil, Config{Dir: t.TempDir()}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("got %v, want ErrInvalidArgument", err)
		}
	})
	t.Run("snapshot arguments", func(t *testing.T) {
		s := src.nodes[0]
		if err := s.Snapshot(ctxT(t), nil); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("nil writer: got %v, want ErrInvalidArgument", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Snapshot(ctx, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled context: got %v, want context.Canceled", err)
		}
		if err := s.Snapshot(ctxT(t), failingWriter{}); err == nil {
			t.Fatal("a failing writer did not fail Snapshot")
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// FuzzRestore feeds arbitrary bytes to the backup reader: it must reject
// them with an error, never panic, and write nothing when it rejects.
func FuzzRestore(f *testing.F) {
	s, err := Open(Config{Dir: f.TempDir(), Logger: testLogger(f), UnsafeNoFsync: true})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := s.Grant(ctx, 60)
	if err == nil {
		_, err = s.Put(ctx, "a", "1", WithLease(lease.ID))
	}
	if err == nil {
		_, err = s.Put(ctx, "b", "2")
	}
	var backup bytes.Buffer
	if err == nil {
		err = s.Snapshot(ctx, &backup)
	}
	s.Close()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(backup.Bytes())
	f.Add(backup.Bytes()[:backup.Len()/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := readFSMSnapshot(bytes.NewReader(b), backupKind)
		if err == nil && st == nil {
			t.Fatal("nil state without error")
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error does not match ErrCorrupt: %v", err)
		}
	})
}

func TestSnapshotBySize(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.SnapshotThresholdBytes = 64 << 10 })
	s := c.nodes[0]
	big := string(bytes.Repeat([]byte("x"), 4096))
	for i := 0; i < 40; i++ { // 160 KiB in 40 entries, far below SnapshotThreshold
		mustPut(t, s, fmt.Sprintf("k%02d", i), big)
	}
	snaps := filepath.Join(c.cfgs[0].Dir, "snapshots")
	if !poll(t, 10*time.Second, func() bool {
		entries, _ := os.ReadDir(snaps)
		return len(entries) > 0
	}) {
		t.Fatal("no snapshot after 160 KiB with a 64 KiB byte threshold")
	}
	c.stop(0)
	s = c.start(0)
	if got := value(mustGet(t, s, "k39")); got != big {
		t.Fatalf("after restart from the snapshot: got %d bytes, want %d", len(got), len(big))
	}
}
