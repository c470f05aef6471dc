package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is: the store often wraps them with
// detail (which key, which limit, which revision).
var (
	// ErrEmptyKey is returned when a key argument is empty.
	ErrEmptyKey = errors.New("store: key is not provided")
	// ErrRequestTooLarge is returned when a request's encoded size exceeds
	// Config.MaxRequestBytes. Nothing is proposed.
	ErrRequestTooLarge = errors.New("store: request is too large")
	// ErrTooManyOps is returned when a transaction holds more operations than
	// Config.MaxTxnOps (counted per branch, like etcd) or nests deeper than
	// MaxTxnDepth.
	ErrTooManyOps = errors.New("store: too many operations in txn request")
	// ErrDuplicateKey is returned when a transaction branch writes the same key
	// twice (two puts, or a put and a delete covering the key).
	ErrDuplicateKey = errors.New("store: duplicate key given in txn request")
	// ErrCompacted is returned when a read or watch asks for a revision that
	// compaction has removed.
	ErrCompacted = errors.New("store: required revision has been compacted")
	// ErrFutureRev is returned when a read asks for a revision newer than the
	// store's current revision.
	ErrFutureRev = errors.New("store: required revision is a future revision")
	// ErrLeaseNotFound is returned when a lease does not exist.
	ErrLeaseNotFound = errors.New("store: requested lease not found")
	// ErrLeaseExists is returned when granting a lease ID that already exists.
	ErrLeaseExists = errors.New("store: lease already exists")
	// ErrNoLeader is returned when the cluster has no leader before the
	// context's deadline (or within Config.RequestTimeout when the context has
	// none). A write that fails with ErrNoLeader was never proposed.
	ErrNoLeader = errors.New("store: no leader")
	// ErrStopped is returned by every call made after Close, and by calls that
	// were waiting when Close ran.
	ErrStopped = errors.New("store: store is closed")
	// ErrMemberNotFound is returned when a member ID is not in the cluster.
	ErrMemberNotFound = errors.New("store: member not found")
	// ErrMemberExists is returned when adding a member whose ID or address is
	// already used by another member.
	ErrMemberExists = errors.New("store: member already exists")
	// ErrInvalidArgument is returned for an argument that is malformed in a way
	// no more specific sentinel describes (a negative limit, an unknown
	// compare operator, a range end before its key, ...).
	ErrInvalidArgument = errors.New("store: invalid argument")
	// ErrUnknownOutcome is returned by a write when the store cannot tell
	// whether it was applied: leadership was lost after the write was proposed,
	// the connection to the leader broke after the request was sent, or the
	// context ended while waiting. The write may or may not be in the store;
	// it is never retried automatically. When the context ended, the error
	// also matches ctx.Err().
	ErrUnknownOutcome = errors.New("store: outcome of the write is unknown (it may or may not have been applied)")
	// ErrKeyNotFound is returned by a Put WithIgnoreValue or WithIgnoreLease
	// on a key that does not exist.
	ErrKeyNotFound = errors.New("store: key not found")
	// ErrRemoved is returned by every call on a node that has been removed
	// from its cluster (by RemoveMember on any node). The node keeps its data
	// but takes no further part; to bring it back, Close it and Open it
	// again with Config.Join (or wipe its Dir and join as a new node).
	ErrRemoved = errors.New("store: this node has been removed from the cluster")
	// ErrWrongCluster is returned when a node and the peer it talks to
	// belong to different clusters (their cluster IDs differ: a data
	// directory or address reused across clusters). Nothing is merged.
	ErrWrongCluster = errors.New("store: peer belongs to a different cluster")
	// ErrConfig is returned by Open when the Config is invalid.
	ErrConfig = errors.New("store: invalid config")
	// ErrCorrupt is returned when stored or received state cannot be decoded.
	ErrCorrupt = errors.New("store: corrupt data")
)

// wire error codes: how a sentinel travels between nodes. Codes are part of
// the node-to-node protocol; never renumber them. errorCode picks the first
// match, so ErrUnknownOutcome comes first: an error that is both "stopped"
// and "unknown outcome" must reach the proposer as unknown.
var errCodes = []struct {
	code uint16
	err  error
}{
	{14, ErrUnknownOutcome},
	{1, ErrEmptyKey},
	{2, ErrRequestTooLarge},
	{3, ErrTooManyOps},
	{4, ErrDuplicateKey},
	{5, ErrCompacted},
	{6, ErrFutureRev},
	{7, ErrLeaseNotFound},
	{8, ErrLeaseExists},
	{9, ErrNoLeader},
	{10, ErrStopped},
	{11, ErrMemberNotFound},
	{12, ErrMemberExists},
	{13, ErrInvalidArgument},
	{15, ErrCorrupt},
	{16, errNotLeader},
	{17, ErrKeyNotFound},
	{18, ErrRemoved},
	{19, ErrWrongCluster},
	{20, errNotMember},
}

// errNotLeader is an internal, retryable error: the node asked is not the
// leader (any more). The request was not proposed.
var errNotLeader = errors.New("store: node is not the leader")

// errorCode returns the wire code of the first sentinel err matches, or 0.
func errorCode(err error) uint16 {
	for _, c := range errCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return 0
}

// errorFromCode rebuilds an error received from a peer so that errors.Is
// matches the sentinel while the message keeps the peer's detail.
func errorFromCode(code uint16, msg string) error {
	for _, c := range errCodes {
		if c.code == code {
			if msg == c.err.Error() {
				return c.err
			}
			return &remoteError{sentinel: c.err, msg: msg}
		}
	}
	return fmt.Errorf("store: peer error %d: %s", code, msg)
}

type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }
