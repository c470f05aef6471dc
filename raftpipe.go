package store

import "github.com/hashicorp/raft"

// raftTransport is raft's NetworkTransport with its pipeline guarded
// against a deadlock in raft 1.7's pipelined replication.
//
// raft's pipeline decoder (pipelineDecode) returns after the first
// response that is not a success or carries a newer term. Its send loop
// then chooses at random between the closed "finished" channel and a ready
// trigger or CommitTimeout tick. If it sends once more,
// netPipeline.AppendEntries blocks forever handing the request to its
// response reader, which is itself blocked handing back the previous
// response to the decoder that is gone; raft.Shutdown then waits forever
// for that goroutine. This hung Close here during a leadership transfer
// with the 1 ms CommitTimeout (and stalls replication to one follower in
// other programs: grafana/pyroscope#5518).
//
// The guard forwards the pipeline's responses itself and closes the
// pipeline right after forwarding one that ends raft's decoder, which
// makes any send still blocked fail at once. Turning pipelining off
// (MaxRPCsInFlight 1) also avoids the deadlock but costs followers about
// 0.9 ms per commit they learn.
//
// It also clamps the commit index of incoming AppendEntries (raftcommit.go).
type raftTransport struct {
	*raft.NetworkTransport
	clamp *relay[raft.RPC]
}

// newRaftTransport wraps t.
func newRaftTransport(t *raft.NetworkTransport) *raftTransport {
	return &raftTransport{NetworkTransport: t, clamp: startRelay(t.Consumer(), clampRPC, nil)}
}

// Consumer returns the incoming RPCs, AppendEntries clamped.
func (t *raftTransport) Consumer() <-chan raft.RPC { return t.clamp.out }

// Close closes the network transport and stops the clamp. It is
// idempotent.
func (t *raftTransport) Close() error {
	err := t.NetworkTransport.Close()
	t.clamp.close()
	return err
}

// AppendEntriesPipeline returns raft's pipeline, guarded.
func (t *raftTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newGuardedPipeline(p), nil
}

// guardedPipeline wraps a raft.AppendPipeline; see raftTransport. Its
// relay hands raft's decoder the inner pipeline's responses and, after
// one that makes the decoder return (the checks mirror raft's
// pipelineDecode), closes the inner pipeline, so that a send blocked
// behind the gone decoder fails.
type guardedPipeline struct {
	inner raft.AppendPipeline
	relay *relay[raft.AppendFuture]
}

func newGuardedPipeline(inner raft.AppendPipeline) *guardedPipeline {
	return &guardedPipeline{inner: inner,
		relay: startRelay(inner.Consumer(), endsDecoder, func() { _ = inner.Close() })}
}

// endsDecoder reports whether raft's pipeline decoder returns after f.
func endsDecoder(f raft.AppendFuture) bool {
	req, resp := f.Request(), f.Response()
	return resp.Term > req.Term || !resp.Success
}

// AppendEntries sends one pipelined request.
func (p *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	return p.inner.AppendEntries(args, resp)
}

// Consumer returns the channel of completed requests, in order.
func (p *guardedPipeline) Consumer() <-chan raft.AppendFuture { return p.relay.out }

// Close closes the pipeline and waits for the relay. It is idempotent.
func (p *guardedPipeline) Close() error {
	err := p.inner.Close()
	p.relay.close()
	return err
}
