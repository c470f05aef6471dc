package store

import (
	"context"
	"errors"
	"fmt"
	"github.com/embedkv/store/transport"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// join adds a node that joins through the running nodes and returns its
// index.
func (c *testCluster) join(tweak func(*Config)) int {
	c.t.Helper()
	i := len(c.cfgs)
	cfg := Config{
		NodeID:   fmt.Sprintf("n%d", i+1),
		Dir:      filepath.Join(c.t.TempDir(), fmt.Sprintf("n%d", i+1)),
		BindAddr: freeAddrs(c.t, 1)[0],
		Logger:   testLogger(c.t),
	}
	for j, s := range c.nodes {
		if s != nil {
			cfg.Join = append(cfg.Join, c.nodes[j].mux.Addr())
		}
	}
	fastTimers(&cfg)
	if tweak != nil {
		tweak(&cfg)
	}
	c.cfgs = append(c.cfgs, cfg)
	c.nodes = append(c.nodes, nil)
	c.start(i)
	return i
}

// any returns a running node.
func (c *testCluster) any() *Store {
	for _, s := range c.nodes {
		if s != nil {
			return s
		}
	}
	c.t.Fatal("no running node")
	return nil
}

// memberList renders Members as "id:voter/nonvoter" sorted, for comparisons.
func memberList(t testing.TB, s *Store) string {
	t.Helper()
	got, err := renderMembers(t, s)
	if err != nil {
		t.Fatalf("Members on %s: %v", s.cfg.NodeID, err)
	}
	return got
}

// renderMembers is memberList's rendering, returning Members' error.
func renderMembers(t testing.TB, s *Store) (string, error) {
	ms, err := s.Members(ctxT(t))
	if err != nil {
		return "", err
	}
	var out []string
	for _, m := range ms {
		kind := "nonvoter"
		if m.Voter {
			kind = "voter"
		}
		out = append(out, m.ID+":"+kind)
	}
	sort.Strings(out)
	return strings.Join(out, " "), nil
}

// waitMembers polls until s lists exactly want (see memberList).
func waitMembers(t testing.TB, s *Store, want string) {
	t.Helper()
	var got string
	if !poll(t, 20*time.Second, func() bool {
		var err error
		if got, err = renderMembers(t, s); err != nil {
			got = err.Error()
			return false
		}
		return got == sortedWords(want)
	}) {
		t.Fatalf("members on %s: got %q, want %q", s.cfg.NodeID, got, want)
	}
}

func sortedWords(s string) string {
	w := strings.Fields(s)
	sort.Strings(w)
	return strings.Join(w, " ")
}

// backgroundWriter writes distinct keys through s until stopped and
// records which writes were acknowledged.
type backgroundWriter struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked map[string]string
	fails []error
}

func startWriter(s *Store, prefix string) *backgroundWriter {
	w := &backgroundWriter{stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]string{}}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			k, v := fmt.Sprintf("%s%06d", prefix, i), fmt.Sprintf("v%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := s.Put(ctx, k, v)
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked[k] = v
			} else if !errors.Is(err, ErrUnknownOutcome) && !errors.Is(err, ErrNoLeader) {
				w.fails = append(w.fails, err)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// finish stops the writer and checks that every acknowledged write is on s.
func (w *backgroundWriter) finish(t testing.TB, s *Store, prefix string) int {
	t.Helper()
	close(w.stop)
	<-w.done
	if len(w.fails) > 0 {
		t.Errorf("writer failures: %v", w.fails)
	}
	r, err := s.Get(ctxT(t), prefix, WithPrefix())
	if err != nil {
		t.Fatalf("Get prefix: %v", err)
	}
	have := map[string]string{}
	for _, kv := range r.Kvs {
		have[string(kv.Key)] = string(kv.Value)
	}
	lost := 0
	for k, v := range w.acked {
		if have[k] != v {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged write %s=%s: got %q", k, v, have[k])
			}
		}
	}
	if lost > 0 {
		t.Errorf("acknowledged writes lost: %d of %d", lost, len(w.acked))
	}
	return len(w.acked)
}

func TestMembershipGrowAndShrinkUnderWrites(t *testing.T) {
	c := newCluster(t, 1, nil)
	n1 := c.nodes[0]
	w := startWriter(n1, "grow/")

	want := "n1:voter"
	for k := 2; k <= 5; k++ {
		i := c.join(nil)
		want += fmt.Sprintf(" n%d:voter", k)
		waitMembers(t, n1, want)
		// The joiner serves linearizable reads of what was written.
		mustPut(t, c.nodes[i], fmt.Sprintf("joined/%d", k), "yes")
		if got := value(mustGet(t, n1, fmt.Sprintf("joined/%d", k))); got != "yes" {
			t.Fatalf("write through joiner n%d: got %q, want %q", k, got, "yes")
		}
	}
	for k := 5; k >= 2; k-- {
		id := fmt.Sprintf("n%d", k)
		if err := n1.RemoveMember(ctxT(t), id); err != nil {
			t.Fatalf("RemoveMember(%s): %v", id, err)
		}
		want = strings.TrimSuffix(want, " "+id+":voter")
		waitMembers(t, n1, want)
		removed := c.nodes[k-1]
		if !poll(t, 10*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := removed.Get(ctx, "x")
			return errors.Is(err, ErrRemoved)
		}) {
			t.Fatalf("removed %s: calls do not fail with ErrRemoved", id)
		}
		c.stop(k - 1)
	}
	n := w.finish(t, n1, "grow/")
	if n == 0 {
		t.Fatal("the writer acknowledged no write")
	}
	// Alone again, n1 keeps no connection to the members that left (raft's
	// connection pool would keep one per departed address forever).
	if !poll(t, 10*time.Second, func() bool { return n1.mux.Conns() == 0 }) {
		t.Errorf("open connections on n1 after the others left: got %d, want 0", n1.mux.Conns())
	}
	t.Logf("acknowledged writes while growing 1->5 and shrinking back: %d, none lost", n)
}

func TestMembershipRejoinAfterRestart(t *testing.T) {
	c := newCluster(t, 3, nil)
	i := c.join(nil)
	waitMembers(t, c.nodes[0], "n1:voter n2:voter n3:voter n4:voter")
	mustPut(t, c.nodes[0], "before", "1")
	c.stop(i)
	mustPut(t, c.nodes[0], "while-down", "2")

	t.Run("same address", func(t *testing.T) {
		s := c.start(i)
		if !poll(t, 10*time.Second, func() bool {
			r, err := s.Get(ctxT(t), "while-down", WithSerializable())
			return err == nil && value(r) == "2"
		}) {
			t.Fatal("restarted joiner did not catch up")
		}
		if got, want := memberList(t, s), "n1:voter n2:voter n3:voter n4:voter"; got != want {
			t.Fatalf("members: got %q, want %q", got, want)
		}
		c.stop(i)
	})
	t.Run("new address", func(t *testing.T) {
		c.cfgs[i].BindAddr = "127.0.0.1:0"
		s := c.start(i)
		ms, err := c.nodes[0].Members(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.ID == "n4" && m.Addr != s.mux.Addr() {
				t.Fatalf("n4's address: got %s, want %s", m.Addr, s.mux.Addr())
			}
		}
		mustPut(t, c.nodes[0], "after", "3")
		if !poll(t, 10*time.Second, func() bool {
			r, err := s.Get(ctxT(t), "after", WithSerializable())
			return err == nil && value(r) == "3"
		}) {
			t.Fatal("rejoined node at a new address did not catch up")
		}
	})
}

func TestMembershipRemoveLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	f := c.follower()
	leaderID := c.cfgs[l].NodeID
	if err := c.nodes[f].RemoveMember(ctxT(t), leaderID); err != nil {
		t.Fatalf("RemoveMember(leader %s): %v", leaderID, err)
	}
	old := c.nodes[l]
	if !poll(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := old.Put(ctx, "k", "v")
		return errors.Is(err, ErrRemoved)
	}) {
		t.Fatal("removed leader does not fail calls with ErrRemoved")
	}
	c.stop(l)
	c.waitLeader()
	mustPut(t, c.nodes[f], "after", "ok")
	var others []string
	for i, s := range c.nodes {
		if s != nil {
			others = append(others, c.cfgs[i].NodeID+":voter")
		}
	}
	waitMembers(t, c.nodes[f], strings.Join(others, " "))

	// Its directory says it was removed: it does not come back by itself.
	if _, err := Open(c.cfgs[l]); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Open of a removed node: got %v, want ErrRemoved", err)
	}
}

func TestMembershipChangesAndBadInput(t *testing.T) {
	c := newCluster(t, 3, nil)
	s := c.nodes[c.follower()]
	addrs := freeAddrs(t, 2)
	before := memberList(t, s)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"add empty ID", func() error { return s.AddMember(ctxT(t), "", addrs[0]) }, ErrInvalidArgument},
		{"add long ID", func() error { return s.AddMember(ctxT(t), strings.Repeat("x", 256), addrs[0]) }, ErrInvalidArgument},
		{"add bad address", func() error { return s.AddMember(ctxT(t), "n9", "nowhere") }, ErrInvalidArgument},
		{"add existing ID, other address", func() error { return s.AddMember(ctxT(t), "n1", addrs[0]) }, ErrMemberExists},
		{"add existing address, other ID", func() error { return s.AddMember(ctxT(t), "n9", c.cfgs[0].BindAddr) }, ErrMemberExists},
		{"add existing member again", func() error { return s.AddMember(ctxT(t), "n1", c.cfgs[0].BindAddr) }, nil},
		{"remove empty ID", func() error { return s.RemoveMember(ctxT(t), "") }, ErrInvalidArgument},
		{"remove unknown", func() error { return s.RemoveMember(ctxT(t), "n9") }, ErrMemberNotFound},
		{"cancelled context", func() error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return s.AddMember(ctx, "n9", addrs[0])
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if got := memberList(t, s); got != before {
				t.Fatalf("members changed: got %q, want %q", got, before)
			}
		})
	}

	t.Run("stale entry replaced by joiner", func(t *testing.T) {
		// A member registered at an address a new node now uses.
		if err := s.AddMember(ctxT(t), "ghost", addrs[1]); err != nil {
			t.Fatalf("AddMember(ghost): %v", err)
		}
		waitMembers(t, s, before+" ghost:nonvoter")
		i := c.join(func(cfg *Config) { cfg.BindAddr = addrs[1] })
		waitMembers(t, s, before+" n4:voter")
		// Joining again with the same ID and address is a no-op.
		if err := c.nodes[i].changeMembers(ctxT(t), memberReq{Op: memberJoin, ID: "n4", Addr: addrs[1], Cluster: clusterBytes(c.nodes[0])}); err != nil {
			t.Fatalf("joining again: %v", err)
		}
		if got, want := memberList(t, s), before+" n4:voter"; got != want {
			t.Fatalf("members after joining again: got %q, want %q", got, want)
		}
	})

	t.Run("last voter", func(t *testing.T) {
		one := newCluster(t, 1, nil)
		if err := one.nodes[0].RemoveMember(ctxT(t), "n1"); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("removing the only voter: got %v, want ErrInvalidArgument", err)
		}
	})
}

// clusterBytes returns s's cluster ID as carried in a join request.
func clusterBytes(s *Store) []byte {
	id := s.cluster()
	return id[:]
}

func TestClusterIdentityRefusesOtherCluster(t *testing.T) {
	a := newCluster(t, 3, nil)
	b := newCluster(t, 3, nil) // the same node IDs, other addresses
	if a.nodes[0].cluster() == b.nodes[0].cluster() {
		t.Fatal("two clusters with different peer sets got the same cluster ID")
	}
	mustPut(t, b.nodes[0], "b", "1")
	term := b.nodes[0].Status().Term

	t.Run("join with another cluster's data", func(t *testing.T) {
		a.stop(2)
		cfg := a.cfgs[2]
		cfg.Peers = nil
		cfg.Join = []string{b.cfgs[0].BindAddr}
		cfg.JoinTimeout = 3 * time.Second
		s, err := Open(cfg)
		if err == nil {
			s.Close()
			t.Fatal("a node of cluster A joined cluster B")
		}
		if !errors.Is(err, ErrWrongCluster) {
			t.Fatalf("got %v, want ErrWrongCluster", err)
		}
	})
	t.Run("raft traffic from another cluster", func(t *testing.T) {
		// Cluster A's n1 restarts and finds B's nodes where its peers were.
		a.stop(0)
		a.stop(1)
		cfg := a.cfgs[0]
		cfg.DialAddress = func(id string) (string, bool) {
			for i, c := range b.cfgs {
				if c.NodeID == id {
					return b.cfgs[i].BindAddr, true
				}
			}
			return "", false
		}
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if st := s.Status(); st.LeaderID != "" {
				t.Fatalf("A's node found leader %q in cluster B", st.LeaderID)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := memberList(t, b.nodes[0]); got != "n1:voter n2:voter n3:voter" {
			t.Fatalf("B's members: got %q", got)
		}
		if got := value(mustGet(t, b.nodes[1], "b")); got != "1" {
			t.Fatalf("B's data: got %q, want %q", got, "1")
		}
		if got := b.nodes[0].Status().Term; got != term {
			t.Logf("B's term moved from %d to %d", term, got)
		}
	})
}

func TestJoinUnderAnotherMembersAddress(t *testing.T) {
	c := newCluster(t, 3, nil)
	before := memberList(t, c.nodes[0])
	cfg := Config{
		NodeID:        "evil",
		Dir:           filepath.Join(t.TempDir(), "evil"),
		BindAddr:      freeAddrs(t, 1)[0],
		AdvertiseAddr: c.cfgs[2].BindAddr, // n3's address
		Join:          []string{c.cfgs[0].BindAddr},
		JoinTimeout:   3 * time.Second,
		Logger:        testLogger(t),
	}
	s, err := Open(cfg)
	if err == nil {
		s.Close()
		t.Fatal("a node joined under another member's address")
	}
	if got := memberList(t, c.nodes[0]); got != before {
		t.Fatalf("members: got %q, want %q", got, before)
	}
}

func TestRemovedWhileDown(t *testing.T) {
	c := newCluster(t, 3, nil)
	mustPut(t, c.nodes[0], "k", "v")
	down := c.follower()
	id := c.cfgs[down].NodeID
	c.stop(down)
	var other *Store
	for _, s := range c.nodes {
		if s != nil {
			other = s
			break
		}
	}
	if err := other.RemoveMember(ctxT(t), id); err != nil {
		t.Fatalf("RemoveMember(%s): %v", id, err)
	}
	// Outlast the leader's removal notices (5 attempts over about 6 s), so
	// that only asking the members can tell the node.
	time.Sleep(7 * time.Second)
	s, err := Open(c.cfgs[down])
	if err != nil {
		t.Fatalf("Open of a node removed while down: %v (its log does not know yet)", err)
	}
	c.nodes[down] = s
	// Members refuse its raft traffic; it asks them and learns it.
	if !poll(t, 15*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := s.Get(ctx, "k", WithSerializable())
		return errors.Is(err, ErrRemoved)
	}) {
		t.Fatal("a node removed while down never reports ErrRemoved")
	}
	c.stop(down)
	if _, err := Open(c.cfgs[down]); !errors.Is(err, ErrRemoved) {
		t.Fatalf("reopening a removed node: got %v, want ErrRemoved", err)
	}
}

func TestJoinedNodeRestartsWithLongHistory(t *testing.T) {
	c := newCluster(t, 1, nil)
	for i := 0; i < 300; i++ {
		mustPut(t, c.nodes[0], fmt.Sprintf("pre/%03d", i), "v")
	}
	i := c.join(nil)
	waitMembers(t, c.nodes[0], "n1:voter n2:voter")
	for round := 0; round < 2; round++ {
		c.stop(i)
		s := c.start(i)
		// Replaying the configurations from before it joined must not
		// make it think it was removed, even briefly.
		for k := 0; k < 200; k++ {
			if err := s.usable(); err != nil {
				t.Fatalf("restart %d, check %d: %v", round, k, err)
			}
		}
		if !poll(t, 10*time.Second, func() bool {
			r, err := s.Get(ctxT(t), "pre/299", WithSerializable())
			if errors.Is(err, ErrRemoved) {
				t.Fatalf("restart %d: %v", round, err)
			}
			return err == nil && value(r) == "v"
		}) {
			t.Fatalf("restart %d: did not catch up", round)
		}
	}
}

func TestRemoveWhilePromoterIsBusy(t *testing.T) {
	c := newCluster(t, 3, nil)
	s := c.nodes[0]
	// A non-voter that never answers slows every promoter round.
	if err := s.AddMember(ctxT(t), "ghost", freeAddrs(t, 1)[0]); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 3; k++ {
		i := c.join(nil)
		id := c.cfgs[i].NodeID
		if err := s.RemoveMember(ctxT(t), id); err != nil {
			t.Fatalf("RemoveMember(%s): %v", id, err)
		}
		c.stop(i)
	}
	// The removed nodes must stay removed: promotion never undoes a removal.
	for n := 0; n < 10; n++ {
		if got, want := memberList(t, s), "ghost:nonvoter n1:voter n2:voter n3:voter"; got != want {
			t.Fatalf("members: got %q, want %q", got, want)
		}
		time.Sleep(100 * time.Millisecond) // let promoter rounds run
	}
}

// TestAdmitBeforeClusterKnown checks how a node judges a peer's cluster,
// also in the moment of Open before it has read its own cluster ID (a
// restart with a large raft log): then every peer is told to retry
// (transport.ErrNotReady, logged at debug), not refused as a stranger.
func TestAdmitBeforeClusterKnown(t *testing.T) {
	a, b := clusterID{1}, clusterID{2}
	tests := []struct {
		name        string
		ours        *clusterID // nil: not known yet
		theirs      clusterID
		proto       byte
		wantErr     error // nil: admitted
		wantMessage string
	}{
		{"raft, own cluster not known yet", nil, a, transport.ProtoRaft, transport.ErrNotReady, "does not know its cluster"},
		{"rpc, own cluster not known yet", nil, a, transport.ProtoRPC, transport.ErrNotReady, "does not know its cluster"},
		{"another cluster", &a, b, transport.ProtoRaft, ErrWrongCluster, "is in cluster"},
		{"a joiner without a cluster, over rpc", &a, clusterID{}, transport.ProtoRPC, nil, ""},
		{"a node without a cluster, over raft", &a, clusterID{}, transport.ProtoRaft, ErrWrongCluster, "is in cluster"},
		{"the same cluster, over rpc", &a, a, transport.ProtoRPC, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Store{}
			if tt.ours != nil {
				s.setCluster(*tt.ours)
			}
			err := s.admit(transport.PeerInfo{Proto: tt.proto, Hello: transport.Hello{ClusterID: tt.theirs, NodeID: "n9"}})
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("got %v, want the peer admitted", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			case tt.wantErr != nil && !strings.Contains(err.Error(), tt.wantMessage):
				t.Fatalf("got %q, want it to say %q", err, tt.wantMessage)
			}
		})
	}
}
