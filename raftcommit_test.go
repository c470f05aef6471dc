package store

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/embedkv/store/internal/hclogslog"
)

func TestClampLeaderCommit(t *testing.T) {
	entries := func(idx ...uint64) []*raft.Log {
		var out []*raft.Log
		for _, i := range idx {
			out = append(out, &raft.Log{Index: i})
		}
		return out
	}
	tests := []struct {
		name    string
		req     raft.AppendEntriesRequest
		wantCmt uint64
	}{
		{"commit within the entries", raft.AppendEntriesRequest{PrevLogEntry: 5, Entries: entries(6, 7), LeaderCommitIndex: 6}, 6},
		{"commit past the last entry", raft.AppendEntriesRequest{PrevLogEntry: 5, Entries: entries(6, 7), LeaderCommitIndex: 10}, 7},
		{"no entries, commit past prev", raft.AppendEntriesRequest{PrevLogEntry: 5, LeaderCommitIndex: 9}, 5},
		{"no entries, commit at prev", raft.AppendEntriesRequest{PrevLogEntry: 5, LeaderCommitIndex: 5}, 5},
		{"no prev, no entries", raft.AppendEntriesRequest{LeaderCommitIndex: 3}, 0},
		{"no commit", raft.AppendEntriesRequest{PrevLogEntry: 5, Entries: entries(6)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			clampLeaderCommit(&req)
			if req.LeaderCommitIndex != tt.wantCmt {
				t.Errorf("got LeaderCommitIndex %d, want %d", req.LeaderCommitIndex, tt.wantCmt)
			}
		})
	}
}

// recordingFSM records the data of every applied command by index.
type recordingFSM struct {
	mu      sync.Mutex
	applied map[uint64]string
}

func (f *recordingFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[l.Index] = string(l.Data)
	return nil
}

func (f *recordingFSM) get(i uint64) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.applied[i]
	return d, ok
}

func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, raft.ErrNothingNewToSnapshot }
func (f *recordingFSM) Restore(io.ReadCloser) error         { return nil }

// TestDeposedLeaderDoesNotApplyStaleEntries drives one real raft node over
// the node's TCP raft transport with crafted AppendEntries: leader L of
// term 1 gives it entries 2 ("a") and 3 ("stale"), commit 2; then X, the
// leader of term 2, whose entry 3 is "new", sends an AppendEntries that
// stops at 2 but says commit 3, then its entry 3. raft 1.7 alone applies
// "stale" at index 3 (its commit rule reaches the follower's own last
// entry); with the transport's clamp the node applies "new".
func TestDeposedLeaderDoesNotApplyStaleEntries(t *testing.T) {
	logger := hclogslog.New(testLogger(t), "raft")
	inner, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, logger)
	if err != nil {
		t.Fatal(err)
	}
	trans := newRaftTransport(inner)
	defer trans.Close()
	sender, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sender.CloseStreams() // its pooled connection, which the node's handler reads
		sender.Close()
	}()

	conf := raft.DefaultConfig()
	conf.LocalID = "v"
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 10*time.Second, 10*time.Second, time.Second
	conf.Logger = logger
	servers := raft.Configuration{Servers: []raft.Server{
		{ID: "v", Address: trans.LocalAddr()},
		{ID: "l", Address: "127.0.0.1:1"},
		{ID: "x", Address: "127.0.0.1:2"},
	}}
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, servers); err != nil {
		t.Fatal(err)
	}
	fsm := &recordingFSM{applied: map[uint64]string{}}
	r, err := raft.NewRaft(conf, fsm, logs, logs, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()

	appendEntries := func(leader string, term, prev, prevTerm, commit uint64, entries ...*raft.Log) {
		t.Helper()
		req := &raft.AppendEntriesRequest{
			RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(leader), Addr: []byte("127.0.0.1:9")},
			Term:              term,
			PrevLogEntry:      prev,
			PrevLogTerm:       prevTerm,
			Entries:           entries,
			LeaderCommitIndex: commit,
		}
		var resp raft.AppendEntriesResponse
		if err := sender.AppendEntries(raft.ServerID("v"), trans.LocalAddr(), req, &resp); err != nil {
			t.Fatalf("AppendEntries from %s: %v", leader, err)
		}
		if !resp.Success {
			t.Fatalf("AppendEntries from %s (term %d, prev %d): refused, response %+v", leader, term, prev, resp)
		}
	}
	cmd := func(index, term uint64, data string) *raft.Log {
		return &raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: []byte(data)}
	}
	waitApplied := func(index uint64, want string) {
		t.Helper()
		var got string
		if !poll(t, 10*time.Second, func() bool {
			var ok bool
			got, ok = fsm.get(index)
			return ok
		}) {
			t.Fatalf("index %d was never applied", index)
		}
		if got != want {
			t.Fatalf("index %d: got %q applied, want %q", index, got, want)
		}
	}

	appendEntries("l", 1, 1, 1, 2, cmd(2, 1, "a"), cmd(3, 1, "stale"))
	waitApplied(2, "a")
	appendEntries("x", 2, 2, 1, 3) // consistent up to 2, commit 3, no entries
	appendEntries("x", 2, 2, 1, 3, cmd(3, 2, "new"))
	waitApplied(3, "new")
}
