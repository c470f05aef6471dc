package store

import (
	"time"

	"github.com/hashicorp/raft"
)

// pipelineStall bounds how long one pipelined AppendEntries may wait to be
// handed to the pipeline's response decoder before the pipeline is closed.
// A healthy follower answers within a round trip and an fsync; closing
// only makes raft fall back to plain AppendEntries and pipeline again later.
const pipelineStall = 2 * time.Second

// raftTransport is raft's NetworkTransport with its pipeline guarded
// against a deadlock in raft 1.7's pipelined replication.
//
// When the pipeline's decoder stops (a follower answered Success=false, or
// a newer term), raft's send loop chooses between the closed finish channel
// and a ready trigger or CommitTimeout tick at random. If it sends once
// more, netPipeline.AppendEntries blocks forever handing the request to a
// decoder that is itself blocked handing back the previous response, and
// raft.Shutdown then waits forever for the replication goroutine. This was
// seen here during a leadership transfer with the 1 ms CommitTimeout.
// Turning pipelining off (MaxRPCsInFlight 1) also avoids it, but costs
// followers about 0.9 ms per commit they learn; the guard keeps pipelining.
type raftTransport struct {
	*raft.NetworkTransport
	stall time.Duration
}

// AppendEntriesPipeline returns raft's pipeline, guarded.
func (t *raftTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &guardedPipeline{AppendPipeline: p, stall: t.stall}, nil
}

// guardedPipeline closes its pipeline when one AppendEntries blocks longer
// than stall, which unblocks it with an error; raft's replication loop then
// stops using the pipeline and closes it again (a no-op).
type guardedPipeline struct {
	raft.AppendPipeline
	stall time.Duration
}

// AppendEntries sends one pipelined request, giving up after stall.
func (p *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	watchdog := time.AfterFunc(p.stall, func() { _ = p.AppendPipeline.Close() })
	f, err := p.AppendPipeline.AppendEntries(args, resp)
	if !watchdog.Stop() && err == nil {
		// Closed while the request went through: its answer may never be
		// decoded, so report the pipeline as shut down.
		return nil, raft.ErrPipelineShutdown
	}
	return f, err
}
