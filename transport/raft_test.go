package transport

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// listFSM records the data of every applied log entry.
type listFSM struct {
	mu      sync.Mutex
	applied []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, string(l.Data))
	return len(f.applied)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }

func (f *listFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

func (f *listFSM) has(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.applied {
		if a == s {
			return true
		}
	}
	return false
}

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

// raftNode is one member of the test cluster.
type raftNode struct {
	mux   *Mux
	trans *raft.NetworkTransport
	raft  *raft.Raft
	fsm   *listFSM
}

func TestRaftClusterOverMux(t *testing.T) {
	defer goleak.VerifyNone(t)

	const n = 3
	cluster := clusterID("raft-test")
	// Every raft stream carries its preamble and is admitted before raft
	// sees it; raft's own bytes must follow intact.
	var raftAdmits atomic.Int64
	admit := func(p PeerInfo) error {
		if p.Hello.ClusterID != cluster {
			return fmt.Errorf("cluster ID %x, want %x", p.Hello.ClusterID, cluster)
		}
		if p.Proto == ProtoRaft {
			raftAdmits.Add(1)
		}
		return nil
	}
	nodes := make([]*raftNode, n)
	var servers []raft.Server
	for i := range nodes {
		m, err := Listen(Config{
			Hello: func() Hello { return Hello{ClusterID: cluster, NodeID: fmt.Sprintf("node%d", i)} },
			Admit: admit,
		})
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		// The same muxes serve RPC: the RPC answers with the node's index.
		m.ServeRPC(func(_ context.Context, method uint8, req []byte) ([]byte, error) {
			return fmt.Appendf(nil, "node%d:%d:%s", i, method, req), nil
		})
		nodes[i] = &raftNode{mux: m, fsm: &listFSM{}}
		servers = append(servers, raft.Server{
			ID:      raft.ServerID(fmt.Sprintf("node%d", i)),
			Address: raft.ServerAddress(m.Addr()),
		})
	}
	client := NewClient(ClientConfig{Hello: func() Hello { return Hello{ClusterID: cluster, NodeID: "client"} }})

	shutdown := func() {
		for _, nd := range nodes {
			if nd.raft != nil {
				if err := nd.raft.Shutdown().Error(); err != nil {
					t.Errorf("raft Shutdown: %v", err)
				}
			}
		}
		for _, nd := range nodes {
			if nd.trans != nil {
				if err := nd.trans.Close(); err != nil {
					t.Errorf("transport Close: %v", err)
				}
			}
		}
		if err := client.Close(); err != nil {
			t.Errorf("Client.Close: %v", err)
		}
		for _, nd := range nodes {
			if err := nd.mux.Close(); err != nil {
				t.Errorf("Mux.Close: %v", err)
			}
		}
	}
	defer shutdown()

	for i, nd := range nodes {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.Logger = hclog.NewNullLogger()
		conf.HeartbeatTimeout = 200 * time.Millisecond
		conf.ElectionTimeout = 200 * time.Millisecond
		conf.LeaderLeaseTimeout = 100 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(conf, logs, logs, snaps, nil, raft.Configuration{Servers: servers}); err != nil {
			t.Fatalf("BootstrapCluster: %v", err)
		}
		nd.trans = raft.NewNetworkTransportWithLogger(nd.mux.RaftLayer(), 3, 2*time.Second, hclog.NewNullLogger())
		r, err := raft.NewRaft(conf, nd.fsm, logs, logs, snaps, nd.trans)
		if err != nil {
			t.Fatalf("NewRaft: %v", err)
		}
		nd.raft = r
		if got, want := string(nd.trans.LocalAddr()), nd.mux.Addr(); got != want {
			t.Errorf("transport LocalAddr: got %q, want %q", got, want)
		}
	}

	var leader *raftNode
	eventually(t, "a leader", func() bool {
		for _, nd := range nodes {
			if nd.raft.State() == raft.Leader {
				leader = nd
				return true
			}
		}
		return false
	})

	entries := []string{"put a=1", "put b=2", "delete a"}
	for _, e := range entries {
		if err := leader.raft.Apply([]byte(e), testTimeout).Error(); err != nil {
			t.Fatalf("Apply(%q): %v", e, err)
		}
	}
	for i, nd := range nodes {
		for _, e := range entries {
			eventually(t, fmt.Sprintf("node%d to apply %q", i, e), func() bool { return nd.fsm.has(e) })
		}
	}

	if got := raftAdmits.Load(); got < n-1 {
		t.Errorf("raft streams admitted: got %d, want at least %d", got, n-1)
	}

	// RPC between the same muxes while raft runs on them.
	for i, nd := range nodes {
		t.Run(fmt.Sprintf("rpc to node%d", i), func(t *testing.T) {
			got, err := client.Call(callCtx(t), nd.mux.Addr(), 4, []byte("fwd"))
			if want := fmt.Sprintf("node%d:4:fwd", i); err != nil || string(got) != want {
				t.Errorf("Call: got %q, %v, want %q, nil", got, err, want)
			}
		})
	}
}
