package store

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakePipeline stands for raft's netPipeline: AppendEntries blocks until
// Close (its in-flight channel is full), and responses come from consumer.
type fakePipeline struct {
	consumer chan raft.AppendFuture
	once     sync.Once
	closed   chan struct{}
}

func (p *fakePipeline) AppendEntries(*raft.AppendEntriesRequest, *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	<-p.closed
	return nil, raft.ErrPipelineShutdown
}

func (p *fakePipeline) Consumer() <-chan raft.AppendFuture { return p.consumer }

func (p *fakePipeline) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// doneFuture is a completed pipelined request.
type doneFuture struct {
	req  raft.AppendEntriesRequest
	resp raft.AppendEntriesResponse
}

func (f *doneFuture) Error() error                          { return nil }
func (f *doneFuture) Start() time.Time                      { return time.Time{} }
func (f *doneFuture) Request() *raft.AppendEntriesRequest   { return &f.req }
func (f *doneFuture) Response() *raft.AppendEntriesResponse { return &f.resp }
func (p *fakePipeline) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

func TestGuardedPipeline(t *testing.T) {
	tests := []struct {
		name       string
		resp       raft.AppendEntriesResponse
		wantClosed bool
	}{
		{"a success keeps the pipeline", raft.AppendEntriesResponse{Term: 3, Success: true}, false},
		{"a failure closes it", raft.AppendEntriesResponse{Term: 3, Success: false}, true},
		{"a newer term closes it", raft.AppendEntriesResponse{Term: 4, Success: true}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := &fakePipeline{consumer: make(chan raft.AppendFuture), closed: make(chan struct{})}
			p := newGuardedPipeline(inner)
			defer p.Close()
			sent := &doneFuture{req: raft.AppendEntriesRequest{Term: 3}, resp: tc.resp}
			inner.consumer <- sent
			select {
			case got := <-p.Consumer():
				if got != raft.AppendFuture(sent) {
					t.Fatalf("forwarded %v, want %v", got, sent)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("response not forwarded")
			}
			// raft's decoder is gone after a closing response; a send
			// blocked behind it must fail instead of hanging.
			if tc.wantClosed {
				if !poll(t, 10*time.Second, inner.isClosed) {
					t.Fatal("pipeline still open after a response that ends raft's decoder")
				}
				if _, err := p.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{}); !errors.Is(err, raft.ErrPipelineShutdown) {
					t.Errorf("AppendEntries after close: got %v, want ErrPipelineShutdown", err)
				}
			} else if inner.isClosed() {
				t.Error("pipeline closed after a success")
			}
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			select {
			case <-p.relay.done:
			default:
				t.Error("Close returned before the forwarding goroutine ended")
			}
		})
	}
}

// TestTransportPipelinesGuarded checks that the node's transport still
// pipelines, through the guard.
func TestTransportPipelinesGuarded(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	f := c.follower()
	p, err := c.nodes[l].trans.AppendEntriesPipeline(raft.ServerID(c.cfgs[f].NodeID), raft.ServerAddress(c.nodes[f].mux.Addr()))
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer p.Close()
	if _, ok := p.(*guardedPipeline); !ok {
		t.Errorf("pipeline is %T, want *guardedPipeline", p)
	}
}
