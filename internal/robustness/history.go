// Package robustness checks that embedkv keeps its promises while the
// network and the nodes fail: linearizability of the key-value operations,
// durability of acknowledged writes, the guarantees of watches, and lease
// expiry.
//
// A run (Run) starts a testcluster (3 or 5 nodes in this process, a
// fault-injecting TCP proxy on every ordered pair of nodes), lets
// concurrent clients (2 per node) put, get, delete, compare-and-set and
// range-read 6 keys in 2 groups of 3, and run multi-key txns on the keys
// of one group (If ModRevision(a) == seen Then Put a, Put b[, Delete c]
// Else Get a, Get b[, Get c]); a lease workload grants short leases left to
// expire and keeps long ones alive; a bad-input client sends invalid
// requests (BadInput: empty keys, oversized keys, values and txns, too many
// or too deeply nested txn ops, a key written twice in a txn, unknown
// leases, reads and watches at compacted and future revisions, writes with
// a cancelled context, calls on a killed node's closed handle) and checks
// each returns its sentinel; all while a nemesis injects faults from a
// schedule drawn from one seed: leader and follower kill + restart,
// symmetric partitions of a minority (with or without the leader), one-way
// partitions, delays, connection drops, leader changes. Then it heals the
// cluster, reads the committed history on every node (reads at every past
// revision; automatic compaction is off, revision 1 is compacted by the
// bad-input client), and checks:
//
//   - CheckWitness: a linear-time revision-witness check, sound and
//     complete against the committed history (see its doc comment); a txn
//     is one revision touching several keys, all or nothing;
//   - CheckPorcupine: porcupine with a model partitioned by key group
//     (GroupModel: a txn and a range read's share of a group are one atomic
//     step on the group's keys), as a second opinion that does not trust
//     revisions (a porcupine timeout fails);
//   - durability: no acknowledged write missing, after healing and after
//     killing and restarting every node from its directory; the history
//     is the same before and after, and on every replica;
//   - CheckWatch: every watcher (one per node, resumed after its node
//     restarts) is ordered, unique, atomic per revision (the txns' and the
//     lease expiries' revisions carry several events), gap-free and exact
//     against the history; plus a watch from a random past revision on
//     every node after the restart (resumable);
//   - CheckLeases: expired leases deleted their keys exactly once, in one
//     revision, never early; kept-alive leases kept their keys;
//   - bad input: every invalid request returned its sentinel (or, where
//     it needs a quorum, an availability error), and no marker of one is
//     in the history, a watch event, an operation's result or any node's
//     final keyspace (BadReport.CheckAbsent).
//
// RunProc is the process profile: every node is a child process (the test
// binary re-executed, see package proccluster and ServeIfChild) holding its
// data directory, fsync on; clients, watchers and the bad-input client
// drive the children over a line-delimited JSON protocol on loopback TCP,
// while a nemesis sends SIGKILL (then restarts the process from its
// directory) and SIGSTOP/SIGCONT (pauses longer than an election timeout)
// to leaders and followers, and once SIGKILLs every node at once. The same
// checks follow (leases excepted), with a final SIGKILL of every node and
// restart for durability; a child that exits on its own, panics or reports
// a data race fails the run.
//
// Failing runs print their seed and write porcupine's visualisation and the
// operations (JSON) to $EMBEDKV_ARTIFACTS (default: a directory
// embedkv-robustness under os.TempDir).
//
// # Running
//
// CI profile (3 in-process runs of 20-30 s of faults and one process run
// of 25 s, about 3 minutes with -race on two cores):
//
//	go test -race -v ./internal/robustness/...
//
// Replay a seed (the schedule of faults and the clients' choices are a
// function of it; timing is not, so a replay is likely, not certain, to
// hit the same interleaving):
//
//	EMBEDKV_SEED=1234 go test -race -v -run 'TestLinearizability/3_nodes$' ./internal/robustness/
//
//	EMBEDKV_SEED=1234 go test -race -v -run 'TestProcesses' ./internal/robustness/
//
// Soak profile: the same runs (every third round a process run), round
// after round with new seeds, for the given time (EMBEDKV_SOAK_CONTINUE=1
// keeps going after a failed round):
//
//	EMBEDKV_SOAK=30m go test -race -v -run Soak -timeout 0 ./internal/robustness/
//
// EMBEDKV_TEST_LOG=1 (or =debug) prints the nodes' logs. The summary of all
// runs is printed at the end (visible with -v) and written to
// $EMBEDKV_ARTIFACTS/robustness-summary.txt when that is set.
//
// Limits: in Run, nodes run in this process, so a kill is an isolation
// followed by a clean Close; RunProc's SIGKILL loses whatever the process
// had not handed to the kernel, but not what the kernel had not written
// to disk: a power cut (dropped page cache) is not simulated.
package robustness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	store "github.com/embedkv/store"
)

// OpKind is the kind of a client operation.
type OpKind uint8

// Operation kinds.
const (
	OpPut       OpKind = iota + 1 // Put(key, value, WithPrevKV)
	OpGet                         // linearizable Get(key)
	OpDelete                      // Delete(key, WithPrevKV)
	OpCAS                         // Txn If Value(key)==Expect Then Put(key, Value) Else Get(key)
	OpRange                       // linearizable Get(prefix, WithPrefix)
	OpSerialGet                   // Get(key, WithSerializable): the node's own applied state
	OpTxn                         // multi-key Txn (see TxnSpec)
)

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpGet:
		return "get"
	case OpDelete:
		return "delete"
	case OpCAS:
		return "cas"
	case OpRange:
		return "range"
	case OpSerialGet:
		return "sget"
	case OpTxn:
		return "txn"
	}
	return "op?"
}

// IsWrite reports whether the operation goes through raft.
func (k OpKind) IsWrite() bool { return k == OpPut || k == OpDelete || k == OpCAS || k == OpTxn }

// Outcome classifies how an operation ended.
type Outcome uint8

// Outcomes.
const (
	// OK: the call returned a response.
	OK Outcome = iota + 1
	// Failed: the call returned an error that proves the operation had no
	// effect (ErrNoLeader for a write: never proposed; any error of a
	// read: reads change nothing).
	Failed
	// Unknown: a write that may or may not have been applied
	// (ErrUnknownOutcome, a context deadline, or any error the store does
	// not document as "not applied").
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case Unknown:
		return "unknown"
	}
	return "outcome?"
}

// Classify returns the outcome of an operation of kind k that returned err.
// Anything not documented as "not applied" counts as Unknown: treating a
// write as possibly applied is always sound, the reverse is not.
func Classify(k OpKind, err error) Outcome {
	switch {
	case err == nil:
		return OK
	case !k.IsWrite():
		return Failed
	case errors.Is(err, store.ErrUnknownOutcome):
		return Unknown
	case errors.Is(err, store.ErrNoLeader),
		errors.Is(err, store.ErrEmptyKey), errors.Is(err, store.ErrInvalidArgument),
		errors.Is(err, store.ErrRequestTooLarge), errors.Is(err, store.ErrTooManyOps),
		errors.Is(err, store.ErrDuplicateKey):
		return Failed
	}
	return Unknown
}

// KV is one version of a key as an operation or the history saw it.
type KV struct {
	Key, Value           string
	Create, Mod, Version int64
}

func (kv KV) String() string {
	return fmt.Sprintf("%s=%q(c%d m%d v%d)", kv.Key, kv.Value, kv.Create, kv.Mod, kv.Version)
}

func toKV(kv *store.KeyValue) KV {
	return KV{Key: string(kv.Key), Value: string(kv.Value), Create: kv.CreateRevision, Mod: kv.ModRevision, Version: kv.Version}
}

func toKVs(kvs []*store.KeyValue) []KV {
	out := make([]KV, len(kvs))
	for i, kv := range kvs {
		out[i] = toKV(kv)
	}
	return out
}

// TxnSpec is a multi-key transaction, all of whose keys lie in one key
// group (Workload.Groups):
//
//	If(ModRevision(Cmp) == CmpRev)
//	Then(Put(Puts[i].Key, Puts[i].Value, WithPrevKV)..., Delete(Deletes[j], WithPrevKV)...)
//	Else(Get(Gets[k])...)
//
// CmpRev 0 means "Cmp is absent". CmpValue is the value the client saw Cmp
// hold at CmpRev: values are unique, so for a correct store the comparison
// is the same as "Cmp holds CmpValue", which is how the value-only
// porcupine model decides it (CheckWitness checks the revision itself).
// The keys of Puts and Deletes are distinct.
type TxnSpec struct {
	Cmp      string
	CmpRev   int64
	CmpValue string
	Puts     []KV // Key and Value only
	Deletes  []string
	Gets     []string
}

// Keys returns every key the txn touches.
func (t *TxnSpec) Keys() []string {
	keys := []string{t.Cmp}
	for _, p := range t.Puts {
		keys = append(keys, p.Key)
	}
	keys = append(keys, t.Deletes...)
	return append(keys, t.Gets...)
}

// Op is one recorded client operation.
type Op struct {
	Client int
	Node   int // the node the client called
	// Session is the incarnation of Node the operation ran on (Target's
	// Incarnation): it changes when the node was killed and restarted.
	Session int
	Kind    OpKind
	Key     string // the key; for OpRange the prefix
	Value   string // put: the value; cas: the new value (unique in the run)
	Expect  string // cas: the expected value

	// Call and Return are monotonic nanoseconds since the run started.
	Call, Return int64
	Outcome      Outcome
	Err          string
	ErrClass     string // see ErrClass

	// Results, for Outcome OK.
	Rev       int64 // Header.Revision
	Succeeded bool  // cas
	Deleted   int64 // delete
	Prev      *KV   // put and delete: the previous version (WithPrevKV)
	KVs       []KV  // get, range; cas that failed: the Else branch's Get

	// Txn is the transaction of an OpTxn (Key is then Txn.Cmp), and its
	// results: for the Then branch, the previous version of each put key
	// (nil: absent) and, per delete, the number deleted and the previous
	// version; for the Else branch, what each get read.
	Txn        *TxnSpec `json:",omitempty"`
	TxnPutPrev []*KV    `json:",omitempty"`
	TxnDeleted []int64  `json:",omitempty"`
	TxnDelPrev []*KV    `json:",omitempty"`
	TxnGets    [][]KV   `json:",omitempty"`
}

func (o *Op) String() string {
	s := fmt.Sprintf("#c%d@n%d.%d %s(%s", o.Client, o.Node+1, o.Session, o.Kind, o.Key)
	switch o.Kind {
	case OpPut:
		s += fmt.Sprintf(", %q", o.Value)
	case OpCAS:
		s += fmt.Sprintf(", %q->%q", o.Expect, o.Value)
	case OpTxn:
		if t := o.Txn; t != nil {
			s += fmt.Sprintf(" mod=%d(%q) then put %v del %v else get %v", t.CmpRev, t.CmpValue, putList(t.Puts), t.Deletes, t.Gets)
		}
	}
	s += fmt.Sprintf(") [%d,%d] %s", o.Call, o.Return, o.Outcome)
	if o.Outcome != OK {
		return s + ": " + o.Err
	}
	s += fmt.Sprintf(" rev %d", o.Rev)
	switch o.Kind {
	case OpCAS:
		s += fmt.Sprintf(" succeeded=%v", o.Succeeded)
	case OpDelete:
		s += fmt.Sprintf(" deleted=%d", o.Deleted)
	case OpTxn:
		s += fmt.Sprintf(" succeeded=%v", o.Succeeded)
		if o.Succeeded {
			s += fmt.Sprintf(" put-prev %s deleted %v del-prev %s", kvPtrs(o.TxnPutPrev), o.TxnDeleted, kvPtrs(o.TxnDelPrev))
		} else {
			s += fmt.Sprintf(" gets %v", o.TxnGets)
		}
	}
	if o.Prev != nil {
		s += " prev " + o.Prev.String()
	}
	if len(o.KVs) > 0 || o.Kind == OpGet || o.Kind == OpRange || o.Kind == OpSerialGet {
		s += fmt.Sprintf(" kvs %v", o.KVs)
	}
	return s
}

// mutating reports whether an OK operation created a revision.
func (o *Op) mutating() bool {
	if o.Outcome != OK {
		return false
	}
	switch o.Kind {
	case OpPut:
		return true
	case OpDelete:
		return o.Deleted > 0
	case OpCAS, OpTxn:
		return o.Succeeded
	}
	return false
}

func putList(kvs []KV) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%s=%q", kv.Key, kv.Value))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func kvPtrs(kvs []*KV) string {
	var parts []string
	for _, kv := range kvs {
		if kv == nil {
			parts = append(parts, "absent")
		} else {
			parts = append(parts, kv.String())
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func optKV(kv *store.KeyValue) *KV {
	if kv == nil {
		return nil
	}
	k := toKV(kv)
	return &k
}

// Clock hands out monotonic timestamps relative to a start.
type Clock struct{ start time.Time }

// NewClock starts a clock now.
func NewClock() *Clock { return &Clock{start: time.Now()} }

// Now returns the nanoseconds since the start (monotonic).
func (c *Clock) Now() int64 { return int64(time.Since(c.start)) }

// Do runs one operation against s and returns its record. Values must be
// unique in the run for puts and cas.
func Do(ctx context.Context, clk *Clock, s *store.Store, op Op) Op {
	op.Call = clk.Now()
	var err error
	switch op.Kind {
	case OpPut:
		var r *store.PutResponse
		if r, err = s.Put(ctx, op.Key, op.Value, store.WithPrevKV()); err == nil {
			op.Rev = r.Header.Revision
			if r.PrevKv != nil {
				p := toKV(r.PrevKv)
				op.Prev = &p
			}
		}
	case OpGet, OpRange, OpSerialGet:
		var opts []store.OpOption
		switch op.Kind {
		case OpRange:
			opts = append(opts, store.WithPrefix())
		case OpSerialGet:
			opts = append(opts, store.WithSerializable())
		}
		var r *store.GetResponse
		if r, err = s.Get(ctx, op.Key, opts...); err == nil {
			op.Rev, op.KVs = r.Header.Revision, toKVs(r.Kvs)
		}
	case OpDelete:
		var r *store.DeleteResponse
		if r, err = s.Delete(ctx, op.Key, store.WithPrevKV()); err == nil {
			op.Rev, op.Deleted = r.Header.Revision, r.Deleted
			if len(r.PrevKvs) == 1 {
				p := toKV(r.PrevKvs[0])
				op.Prev = &p
			}
		}
	case OpCAS:
		var r *store.TxnResponse
		r, err = s.Txn(ctx).
			If(store.Compare(store.Value(op.Key), "=", op.Expect)).
			Then(store.OpPut(op.Key, op.Value)).
			Else(store.OpGet(op.Key)).
			Commit()
		if err == nil {
			op.Rev, op.Succeeded = r.Header.Revision, r.Succeeded
			if !r.Succeeded && len(r.Responses) == 1 && r.Responses[0].Get() != nil {
				op.KVs = toKVs(r.Responses[0].Get().Kvs)
			}
		}
	case OpTxn:
		err = doTxn(ctx, s, &op)
	}
	op.Return = clk.Now()
	op.Outcome = Classify(op.Kind, err)
	if err != nil {
		op.Err, op.ErrClass = err.Error(), ErrClass(err)
	}
	return op
}

// errMalformed marks a response whose shape contradicts the request (a
// library bug, reported by Run).
var errMalformed = errors.New("malformed response")

func doTxn(ctx context.Context, s *store.Store, op *Op) error {
	t := op.Txn
	var then, els []store.Op
	for _, p := range t.Puts {
		then = append(then, store.OpPut(p.Key, p.Value, store.WithPrevKV()))
	}
	for _, d := range t.Deletes {
		then = append(then, store.OpDelete(d, store.WithPrevKV()))
	}
	for _, g := range t.Gets {
		els = append(els, store.OpGet(g))
	}
	r, err := s.Txn(ctx).
		If(store.Compare(store.ModRevision(t.Cmp), "=", t.CmpRev)).
		Then(then...).Else(els...).Commit()
	if err != nil {
		return err
	}
	op.Rev, op.Succeeded = r.Header.Revision, r.Succeeded
	bad := func(i int) error {
		return fmt.Errorf("%w: txn response %d of %d has the wrong type", errMalformed, i, len(r.Responses))
	}
	if r.Succeeded {
		if len(r.Responses) != len(t.Puts)+len(t.Deletes) {
			return fmt.Errorf("%w: %d txn responses for %d operations", errMalformed, len(r.Responses), len(t.Puts)+len(t.Deletes))
		}
		for i := range t.Puts {
			p := r.Responses[i].Put()
			if p == nil {
				return bad(i)
			}
			op.TxnPutPrev = append(op.TxnPutPrev, optKV(p.PrevKv))
		}
		for j := range t.Deletes {
			d := r.Responses[len(t.Puts)+j].Del()
			if d == nil {
				return bad(len(t.Puts) + j)
			}
			var prev *KV
			if len(d.PrevKvs) == 1 {
				prev = optKV(d.PrevKvs[0])
			}
			op.TxnDeleted = append(op.TxnDeleted, d.Deleted)
			op.TxnDelPrev = append(op.TxnDelPrev, prev)
		}
		return nil
	}
	if len(r.Responses) != len(t.Gets) {
		return fmt.Errorf("%w: %d txn responses for %d gets", errMalformed, len(r.Responses), len(t.Gets))
	}
	for i := range t.Gets {
		g := r.Responses[i].Get()
		if g == nil {
			return bad(i)
		}
		op.TxnGets = append(op.TxnGets, toKVs(g.Kvs))
	}
	return nil
}

// ErrClass names the sentinel an error matches, for the run's statistics.
func ErrClass(err error) string {
	for _, c := range []struct {
		name string
		err  error
	}{
		{"malformed", errMalformed},
		{"unknown-outcome", store.ErrUnknownOutcome},
		{"no-leader", store.ErrNoLeader},
		{"stopped", store.ErrStopped},
		{"deadline", context.DeadlineExceeded},
		{"canceled", context.Canceled},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "other"
}
