package store

import "github.com/hashicorp/raft"

// The follower's commit index.
//
// The Raft paper has a follower set its commit index to
// min(leaderCommit, index of the last new entry): the last entry of the
// AppendEntries it just accepted, the one it has verified to match the
// leader's log. hashicorp/raft 1.7 uses min(leaderCommit, the follower's
// own last index) instead. A deposed leader that still holds entries it
// appended but never committed can then take them for committed: a new
// leader's AppendEntries whose entries end before them (or that carries
// none) but whose leaderCommit reaches past them passes the consistency
// check without truncating anything, and the follower applies its own
// stale entries (the known bug of atomix/copycat#265 and
// scylladb/scylladb#9965). The robustness soak caught exactly this: a node
// that had lost leadership applied one of its uncommitted writes, and its
// state and watch events disagreed with the other nodes' until it
// restarted and rebuilt from its log.
//
// raftTransport therefore clamps LeaderCommitIndex of every incoming
// AppendEntries to the index of the request's last entry (its
// PrevLogEntry when it carries none) before raft sees it. A leader sends
// every follower its log up to its last index, so in steady state the
// clamp changes nothing; when it does bite, the follower learns the rest
// of the commit index from the next AppendEntries. Heartbeats, which raft
// handles on a fast path, carry no commit index.

// clampRPC clamps rpc's command if it is an AppendEntries; it is the
// transport's relay step, so it never ends the relay.
func clampRPC(rpc raft.RPC) (last bool) {
	if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
		clampLeaderCommit(req)
	}
	return false
}

// clampLeaderCommit lowers req.LeaderCommitIndex to the index of req's last
// entry, or to req.PrevLogEntry when it has none.
func clampLeaderCommit(req *raft.AppendEntriesRequest) {
	last := req.PrevLogEntry
	if n := len(req.Entries); n > 0 && req.Entries[n-1] != nil {
		last = req.Entries[n-1].Index
	}
	if req.LeaderCommitIndex > last {
		req.LeaderCommitIndex = last
	}
}
