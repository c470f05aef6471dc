package store

import (
	"fmt"
	"time"
)

// LeaseID identifies a lease. NoLease (0) means "no lease".
type LeaseID int64

// NoLease is the zero LeaseID: a key written without a lease.
const NoLease LeaseID = 0

// KeyValue is one version of a key, as etcd's mvccpb.KeyValue.
//
// CreateRevision is the revision of the put that created the key's current
// generation, ModRevision the revision of its last modification, and Version
// counts the puts since creation (1 after the first put; a delete ends the
// generation). The slices belong to the caller: the store never changes them
// after returning them.
type KeyValue struct {
	Key, Value     []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          LeaseID
}

// String prints the KeyValue the way etcd's protobuf text form does, so the
// seed's examples print familiar lines.
func (kv *KeyValue) String() string {
	if kv == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("key:%q", kv.Key)
	if kv.CreateRevision != 0 {
		s += fmt.Sprintf(" create_revision:%d", kv.CreateRevision)
	}
	if kv.ModRevision != 0 {
		s += fmt.Sprintf(" mod_revision:%d", kv.ModRevision)
	}
	if kv.Version != 0 {
		s += fmt.Sprintf(" version:%d", kv.Version)
	}
	if len(kv.Value) != 0 {
		s += fmt.Sprintf(" value:%q", kv.Value)
	}
	if kv.Lease != 0 {
		s += fmt.Sprintf(" lease:%d", kv.Lease)
	}
	return s
}

// ResponseHeader comes with every response. Revision is the store revision
// the response reflects (for a write: the revision after it), RaftTerm the
// Raft term of the answering node, MemberID its node ID.
type ResponseHeader struct {
	Revision int64
	RaftTerm uint64
	MemberID string
}

// PutResponse is returned by Put. PrevKv is set with WithPrevKV when the key
// existed before.
type PutResponse struct {
	Header ResponseHeader
	PrevKv *KeyValue
}

// GetResponse is returned by Get. Count is the number of keys in the range
// (ignoring WithLimit and the min/max filters, as etcd does); More reports
// that WithLimit cut the result.
type GetResponse struct {
	Header ResponseHeader
	Kvs    []*KeyValue
	Count  int64
	More   bool
}

// DeleteResponse is returned by Delete: how many keys were deleted and, with
// WithPrevKV, their last values.
type DeleteResponse struct {
	Header  ResponseHeader
	Deleted int64
	PrevKvs []*KeyValue
}

// TxnResponse is returned by Txn().Commit(). Succeeded reports whether the
// If comparisons held (Then ran) or not (Else ran); Responses holds one entry
// per operation of the branch that ran.
type TxnResponse struct {
	Header    ResponseHeader
	Succeeded bool
	Responses []OpResponse
}

// OpResponse is the result of one operation inside a transaction. Exactly
// one of Get, Put, Del and Txn returns non-nil, matching the operation.
type OpResponse struct {
	get *GetResponse
	put *PutResponse
	del *DeleteResponse
	txn *TxnResponse
}

// Get returns the response of an OpGet, or nil.
func (r OpResponse) Get() *GetResponse { return r.get }

// Put returns the response of an OpPut, or nil.
func (r OpResponse) Put() *PutResponse { return r.put }

// Del returns the response of an OpDelete, or nil.
func (r OpResponse) Del() *DeleteResponse { return r.del }

// Txn returns the response of a nested OpTxn, or nil.
func (r OpResponse) Txn() *TxnResponse { return r.txn }

// Status describes one node as it sees itself and the cluster.
type Status struct {
	NodeID          string
	LeaderID        string        // "" when no leader is known
	LeaderAddr      string        // "" when no leader is known
	RaftState       string        // "Leader", "Follower", "Candidate" or "Shutdown"
	Term            uint64        // current raft term
	AppliedIndex    uint64        // last raft index applied to the store
	CommitIndex     uint64        // last raft index known committed
	Revision        int64         // current store revision on this node
	CompactRevision int64         // revisions below it have been compacted
	Keys            int           // live keys on this node
	Members         int           // members in the latest raft configuration
	LastContact     time.Duration // since the last contact with the leader (0 on the leader)
	DBSizeBytes     int64         // size of the raft log database on disk
}
