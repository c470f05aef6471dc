package store

import (
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
)

// Status reports this node's view of itself and the cluster. It does not
// block on the network. After Close it reports RaftState "Shutdown".
func (s *Store) Status() Status {
	st := s.fsm.latest() // index and view agree; may lag a running batch
	out := Status{
		NodeID:          s.cfg.NodeID,
		RaftState:       s.raft.State().String(),
		Term:            s.raft.CurrentTerm(),
		AppliedIndex:    st.index,
		CommitIndex:     s.raft.CommitIndex(),
		Revision:        st.view.Rev(),
		CompactRevision: st.view.CompactRev(),
		Keys:            st.view.Len(),
	}
	addr, id := s.raft.LeaderWithID()
	out.LeaderID, out.LeaderAddr = string(id), string(addr)
	if s.raft.State() != raft.Leader {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			out.LastContact = time.Since(lc)
		}
	}
	if !s.stopped() {
		if f := s.raft.GetConfiguration(); f.Error() == nil {
			out.Members = len(f.Configuration().Servers)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.cfg.Dir, "raft.db")); err == nil {
		out.DBSizeBytes = fi.Size()
	}
	return out
}
