package store

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// stuckPipeline blocks AppendEntries until Close, as raft's netPipeline
// does when its decoder is gone.
type stuckPipeline struct {
	block  bool
	once   sync.Once
	closed chan struct{}
}

func (p *stuckPipeline) AppendEntries(*raft.AppendEntriesRequest, *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if !p.block {
		return nil, nil
	}
	<-p.closed
	return nil, raft.ErrPipelineShutdown
}

func (p *stuckPipeline) Consumer() <-chan raft.AppendFuture { return nil }

func (p *stuckPipeline) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func TestGuardedPipeline(t *testing.T) {
	tests := []struct {
		name    string
		block   bool
		wantErr error
		closed  bool
	}{
		{"a stuck send is unblocked by closing the pipeline", true, raft.ErrPipelineShutdown, true},
		{"a send that goes through keeps the pipeline", false, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := &stuckPipeline{block: tc.block, closed: make(chan struct{})}
			p := &guardedPipeline{AppendPipeline: inner, stall: 50 * time.Millisecond}
			done := make(chan error, 1)
			go func() {
				_, err := p.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{})
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("AppendEntries: got %v, want %v", err, tc.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("AppendEntries still blocked after 10 s")
			}
			select {
			case <-inner.closed:
				if !tc.closed {
					t.Error("the pipeline was closed, want it open")
				}
			default:
				if tc.closed {
					t.Error("the pipeline is open, want it closed")
				}
			}
		})
	}
}

// TestTransportKeepsPipelining checks that the node's transport still
// pipelines (the guard, not MaxRPCsInFlight 1, avoids the deadlock).
func TestTransportKeepsPipelining(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	f := c.follower()
	s := c.nodes[l]
	p, err := s.trans.AppendEntriesPipeline(raft.ServerID(c.cfgs[f].NodeID), raft.ServerAddress(c.nodes[f].mux.Addr()))
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer p.Close()
	if _, ok := p.(*guardedPipeline); !ok {
		t.Errorf("pipeline is %T, want *guardedPipeline", p)
	}
}
