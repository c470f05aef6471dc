package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	store "github.com/embedkv/store"
	"github.com/embedkv/store/internal/robustness/testcluster"
)

// BadPrefix holds the marker keys of the invalid requests BadInput issues;
// BadMarker starts every value they carry. A correct store never writes
// either.
const (
	BadPrefix = Root + "bad/"
	BadMarker = "BAD-"
)

// badCase is one kind of invalid request.
type badCase struct {
	name string
	// run issues the request on s; key and val are fresh markers.
	run  func(ctx context.Context, s *store.Store, key, val string) error
	want error // the sentinel the call must return
	// quorum: the request needs the leader or a quorum round (it is
	// decided in the state machine, or it is a linearizable read), so
	// under faults it may also end with an availability error (ErrNoLeader,
	// ErrUnknownOutcome, a deadline), counted as unavailable.
	quorum bool
	// compacted: only once revision 1 is known compacted.
	compacted bool
	// cancelled: a write issued with an already-cancelled context; it
	// may also report ErrUnknownOutcome (then it may have been applied).
	cancelled bool
	// retired: issued on the handle of a node Kill closed.
	retired bool
	// weight, relative (default 4); the oversized cases are costly.
	weight int
}

// unknownLease is never granted: the store numbers leases from 1.
const unknownLease = store.LeaseID(1 << 50)

var badCases = []badCase{
	{name: "empty key put", want: store.ErrEmptyKey, run: func(ctx context.Context, s *store.Store, _, val string) error {
		_, err := s.Put(ctx, "", val)
		return err
	}},
	{name: "empty key get", want: store.ErrEmptyKey, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Get(ctx, "")
		return err
	}},
	{name: "empty key delete", want: store.ErrEmptyKey, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Delete(ctx, "")
		return err
	}},
	{name: "empty key in txn", want: store.ErrEmptyKey, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Txn(ctx).Then(store.OpPut(key, val), store.OpPut("", val)).Commit()
		return err
	}},
	{name: "key too large", want: store.ErrRequestTooLarge, weight: 1, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Put(ctx, key+strings.Repeat("k", 1600<<10), val)
		return err
	}},
	{name: "value too large", want: store.ErrRequestTooLarge, weight: 1, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Put(ctx, key, val+strings.Repeat("v", 1600<<10))
		return err
	}},
	{name: "txn too large", want: store.ErrRequestTooLarge, weight: 1, run: func(ctx context.Context, s *store.Store, key, val string) error {
		pad := strings.Repeat("v", 20<<10)
		var ops []store.Op
		for i := range 100 { // 2 MB in 100 operations, within the op limit
			ops = append(ops, store.OpPut(fmt.Sprintf("%s/%d", key, i), val+pad))
		}
		_, err := s.Txn(ctx).Then(ops...).Commit()
		return err
	}},
	{name: "too many txn ops", want: store.ErrTooManyOps, run: func(ctx context.Context, s *store.Store, key, val string) error {
		var ops []store.Op
		for i := range 129 { // default MaxTxnOps is 128 per branch
			ops = append(ops, store.OpPut(fmt.Sprintf("%s/%d", key, i), val))
		}
		_, err := s.Txn(ctx).Then(ops...).Commit()
		return err
	}},
	{name: "txn nested too deep", want: store.ErrTooManyOps, run: func(ctx context.Context, s *store.Store, key, val string) error {
		op := store.OpPut(key, val)
		for range 12 { // default MaxTxnDepth is 8
			op = store.OpTxn(nil, []store.Op{op}, nil)
		}
		_, err := s.Txn(ctx).Then(op).Commit()
		return err
	}},
	{name: "duplicate key in txn", want: store.ErrDuplicateKey, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Txn(ctx).Then(store.OpPut(key, val), store.OpPut(key, val+"-2")).Commit()
		return err
	}},
	{name: "put and delete of one key in txn", want: store.ErrDuplicateKey, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Txn(ctx).Then(store.OpPut(key, val), store.OpDelete(BadPrefix, store.WithPrefix())).Commit()
		return err
	}},
	{name: "unknown lease", want: store.ErrLeaseNotFound, quorum: true, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Put(ctx, key, val, store.WithLease(unknownLease))
		return err
	}},
	{name: "unknown lease in txn", want: store.ErrLeaseNotFound, quorum: true, run: func(ctx context.Context, s *store.Store, key, val string) error {
		// The put without a lease must not be applied either: a txn is
		// all or nothing.
		_, err := s.Txn(ctx).Then(store.OpPut(key+"/a", val), store.OpPut(key+"/b", val, store.WithLease(unknownLease))).Commit()
		return err
	}},
	{name: "read at compacted revision", want: store.ErrCompacted, quorum: true, compacted: true, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Get(ctx, KVPrefix, store.WithPrefix(), store.WithRev(1))
		return err
	}},
	{name: "watch from compacted revision", want: store.ErrCompacted, quorum: true, compacted: true, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		// The linearizable read makes the node apply the compaction first.
		if _, err := s.Get(ctx, KVPrefix, store.WithPrefix(), store.WithCountOnly()); err != nil {
			return err
		}
		// The cancellation is immediate: a watch that says nothing is a
		// violation, not unavailability.
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for resp := range s.Watch(wctx, KVPrefix, store.WithPrefix(), store.WithRev(1)) {
			if resp.Canceled {
				return resp.Err()
			}
			return fmt.Errorf("got %d events from a compacted revision", len(resp.Events))
		}
		if wctx.Err() != nil {
			return errors.New("no response within 2s from a watch at a compacted revision")
		}
		return errors.New("watch channel closed without a cancellation")
	}},
	{name: "read at future revision", want: store.ErrFutureRev, quorum: true, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Get(ctx, KVPrefix, store.WithPrefix(), store.WithRev(1<<40))
		return err
	}},
	{name: "serializable read at future revision", want: store.ErrFutureRev, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Get(ctx, KVPrefix, store.WithPrefix(), store.WithRev(1<<40), store.WithSerializable())
		return err
	}},
	{name: "put with cancelled context", want: context.Canceled, cancelled: true, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Put(ctx, key, val)
		return err
	}},
	{name: "delete with cancelled context", want: context.Canceled, cancelled: true, run: func(ctx context.Context, s *store.Store, key, _ string) error {
		_, err := s.Delete(ctx, key)
		return err
	}},
	{name: "txn with cancelled context", want: context.Canceled, cancelled: true, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Txn(ctx).If(store.Compare(store.ModRevision(key), "=", 0)).
			Then(store.OpPut(key+"/a", val), store.OpPut(key+"/b", val)).Commit()
		return err
	}},
	{name: "get with cancelled context", want: context.Canceled, cancelled: true, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Get(ctx, KVPrefix, store.WithPrefix())
		return err
	}},
	{name: "put after close", want: store.ErrStopped, retired: true, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Put(ctx, key, val)
		return err
	}},
	{name: "get after close", want: store.ErrStopped, retired: true, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Get(ctx, KVPrefix, store.WithPrefix(), store.WithSerializable())
		return err
	}},
	{name: "txn after close", want: store.ErrStopped, retired: true, run: func(ctx context.Context, s *store.Store, key, val string) error {
		_, err := s.Txn(ctx).Then(store.OpPut(key, val)).Commit()
		return err
	}},
	{name: "grant after close", want: store.ErrStopped, retired: true, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		_, err := s.Grant(ctx, 10)
		return err
	}},
	{name: "watch after close", want: store.ErrStopped, retired: true, run: func(ctx context.Context, s *store.Store, _, _ string) error {
		for resp := range s.Watch(ctx, KVPrefix, store.WithPrefix()) {
			if resp.Canceled {
				return resp.Err()
			}
			return fmt.Errorf("got %d events from a closed store", len(resp.Events))
		}
		return errors.New("watch channel closed without a cancellation")
	}},
}

// BadReport is what the bad-input client checked.
type BadReport struct {
	Checked     int            // requests issued and checked
	Rejected    int            // ...that returned their sentinel
	Unavailable int            // ...that ended with an availability error their case allows
	ByCase      map[string]int // requests by case name
	Violations  []string
	// Unsure holds the marker values of cancelled writes that reported
	// ErrUnknownOutcome: they may legitimately appear.
	Unsure map[string]bool
}

// BadInput issues invalid requests through the public API, while the
// nemesis works, on random running nodes (and on the closed handles of
// killed nodes), and checks each returns its sentinel. Every value it sends
// carries BadMarker and every key lies under BadPrefix; CheckAbsent then
// checks none of them was ever written.
type BadInput struct {
	env       badEnv
	rng       *rand.Rand
	seq       int
	compacted atomic.Bool
	rep       BadReport
	mu        sync.Mutex // guards rep
	wg        sync.WaitGroup
}

// badEnv is where BadInput sends its requests: nodes in this process, or
// child processes (which run the case themselves).
type badEnv interface {
	N() int
	ID(i int) string
	// issue runs bc on node (or, for a retired case, on a closed handle
	// chosen by node) with fresh markers. ok is false when there is no
	// such node now (down, paused, nothing retired yet); gone reports that
	// the node was killed or paused under the call.
	issue(bc *badCase, node int, key, val string) (err error, gone, ok bool)
	// compact compacts revision 1 away; it reports whether that is done.
	compact() bool
}

// inProcBad is the badEnv of a testcluster.
type inProcBad struct{ c *testcluster.Cluster }

func (e inProcBad) N() int          { return e.c.N() }
func (e inProcBad) ID(i int) string { return e.c.ID(i) }

func (e inProcBad) issue(bc *badCase, node int, key, val string) (error, bool, bool) {
	var s *store.Store
	if bc.retired {
		old := e.c.Retired()
		if len(old) == 0 {
			return nil, false, false
		}
		s = old[node%len(old)]
	} else if s = e.c.Node(node); s == nil {
		return nil, false, false
	}
	err := runBadCase(bc, s, key, val)
	// A live handle may be closed under the call when the nemesis kills
	// its node.
	return err, !bc.retired && e.c.Node(node) != s, true
}

func (e inProcBad) compact() bool {
	l := e.c.Leader()
	if l < 0 {
		return false
	}
	s := e.c.Node(l)
	if s == nil {
		return false
	}
	return compactOne(s) == nil
}

// errConnLost marks a request whose node (a child process) was killed or
// paused under it.
var errConnLost = errors.New("control connection lost")

// runBadCase runs bc on s with a 2 s deadline, or an already cancelled
// context for a cancelled case.
func runBadCase(bc *badCase, s *store.Store, key, val string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if bc.cancelled {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		ctx = cctx
	}
	return bc.run(ctx, s, key, val)
}

// compactOne compacts revision 1 away (the empty store: nothing the
// history needs), so reads and watches there must fail with ErrCompacted.
// It returns nil once that is done (now or before).
func compactOne(s *store.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Compact(ctx, 2); err != nil && !errors.Is(err, store.ErrCompacted) {
		return err
	}
	return nil
}

// badCaseByName returns the case called name.
func badCaseByName(name string) *badCase {
	for i := range badCases {
		if badCases[i].name == name {
			return &badCases[i]
		}
	}
	return nil
}

// sentinels are the errors a bad request's result is matched against
// across the process boundary (see remoteError).
var sentinels = []struct {
	name string
	err  error
}{
	{"empty-key", store.ErrEmptyKey}, {"too-large", store.ErrRequestTooLarge}, {"too-many-ops", store.ErrTooManyOps},
	{"duplicate-key", store.ErrDuplicateKey}, {"lease-not-found", store.ErrLeaseNotFound}, {"compacted", store.ErrCompacted},
	{"future-rev", store.ErrFutureRev}, {"stopped", store.ErrStopped}, {"no-leader", store.ErrNoLeader},
	{"unknown-outcome", store.ErrUnknownOutcome}, {"canceled", context.Canceled}, {"deadline", context.DeadlineExceeded},
}

// sentinelNames lists the sentinels err matches.
func sentinelNames(err error) []string {
	var names []string
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			names = append(names, s.name)
		}
	}
	return names
}

// remoteError is an error a child returned: its message, and errors.Is
// matches the sentinels it matched in the child.
type remoteError struct {
	msg  string
	errs []error
}

func newRemoteError(msg string, names []string) error {
	e := &remoteError{msg: msg}
	for _, n := range names {
		for _, s := range sentinels {
			if s.name == n {
				e.errs = append(e.errs, s.err)
			}
		}
	}
	return e
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.errs }

// StartBadInput starts the bad-input client on a testcluster; it runs
// until ctx ends (Wait for it).
func StartBadInput(ctx context.Context, c *testcluster.Cluster, seed uint64) *BadInput {
	return startBadInput(ctx, inProcBad{c}, seed)
}

func startBadInput(ctx context.Context, env badEnv, seed uint64) *BadInput {
	b := &BadInput{env: env, rng: rand.New(rand.NewPCG(seed, 0xbad)),
		rep: BadReport{ByCase: map[string]int{}, Unsure: map[string]bool{}}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.run(ctx)
	}()
	return b
}

// Wait waits for the client to stop and returns its report.
func (b *BadInput) Wait() *BadReport {
	b.wg.Wait()
	return &b.rep
}

func (b *BadInput) run(ctx context.Context) {
	total := 0
	for _, bc := range badCases {
		total += bc.weightOr()
	}
	for ctx.Err() == nil {
		sleepCtx(ctx, time.Duration(20+b.rng.IntN(40))*time.Millisecond)
		if !b.compacted.Load() && b.env.compact() {
			b.compacted.Store(true)
		}
		n := b.rng.IntN(total)
		var bc *badCase
		for i := range badCases {
			if n -= badCases[i].weightOr(); n < 0 {
				bc = &badCases[i]
				break
			}
		}
		pick := b.rng.Uint64()
		if bc.compacted && !b.compacted.Load() {
			continue
		}
		b.seq++
		key, val := fmt.Sprintf("%s%d", BadPrefix, b.seq), fmt.Sprintf("%s%d-", BadMarker, b.seq)
		node := int(pick % uint64(b.env.N()))
		if bc.retired {
			node = int(pick % (1 << 20))
		}
		err, gone, ok := b.env.issue(bc, node, key, val)
		if ok {
			b.record(bc, node, key, val, err, gone)
		}
	}
}

func (bc *badCase) weightOr() int {
	if bc.weight == 0 {
		return 4
	}
	return bc.weight
}

// record checks the result of one bad request.
func (b *BadInput) record(bc *badCase, node int, key, val string, err error, gone bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rep.Checked++
	b.rep.ByCase[bc.name]++
	where := "a closed handle"
	if !bc.retired {
		where = b.env.ID(node)
	}
	unknown := errors.Is(err, store.ErrUnknownOutcome)
	switch {
	case err != nil && errors.Is(err, bc.want) && !(bc.cancelled && unknown):
		b.rep.Rejected++
	case err != nil && bc.cancelled && unknown:
		b.rep.Unavailable++
		b.rep.Unsure[val] = true
	case err != nil && gone && (errors.Is(err, store.ErrStopped) || errors.Is(err, errConnLost)):
		b.rep.Unavailable++
	case err != nil && bc.quorum && (errors.Is(err, store.ErrNoLeader) || unknown || errors.Is(err, context.DeadlineExceeded)):
		b.rep.Unavailable++
	default:
		b.rep.Violations = append(b.rep.Violations, fmt.Sprintf("bad request %q (%s) on %s: got %v, want %v", bc.name, key, where, err, bc.want))
	}
}

// CheckAbsent checks that no marker of an invalid request appears in the
// committed history, in any watch event, in any operation's result, or in
// the final state of any node (scans: each node's whole keyspace).
func (r *BadReport) CheckAbsent(hists []*History, logs []*WatchLog, ops []Op, scans map[string][]KV) []string {
	var bad []string
	marked := func(kv KV) bool {
		return strings.HasPrefix(kv.Key, BadPrefix) || kv.Key == "" ||
			(strings.HasPrefix(kv.Value, BadMarker) && !r.Unsure[kv.Value])
	}
	short := func(kv KV) string {
		if len(kv.Key) > 40 {
			kv.Key = kv.Key[:40] + "..."
		}
		if len(kv.Value) > 40 {
			kv.Value = kv.Value[:40] + "..."
		}
		return kv.String()
	}
	for _, h := range hists {
		for _, evs := range h.Events {
			for _, e := range evs {
				if marked(e.KV) {
					bad = append(bad, fmt.Sprintf("invalid request applied: history has @%d %s", e.Rev, short(e.KV)))
				}
			}
		}
	}
	for _, l := range logs {
		for _, resp := range l.Responses {
			for _, e := range resp.Events {
				if marked(e.KV) {
					bad = append(bad, fmt.Sprintf("invalid request applied: watcher on n%d got @%d %s", l.Node+1, e.Rev, short(e.KV)))
				}
			}
		}
	}
	for i := range ops {
		op := &ops[i]
		kvs := append([]KV(nil), op.KVs...)
		for _, g := range op.TxnGets {
			kvs = append(kvs, g...)
		}
		for _, p := range append(append([]*KV{op.Prev}, op.TxnPutPrev...), op.TxnDelPrev...) {
			if p != nil {
				kvs = append(kvs, *p)
			}
		}
		for _, kv := range kvs {
			if marked(kv) {
				bad = append(bad, fmt.Sprintf("invalid request applied: %s read %s", op, short(kv)))
			}
		}
	}
	var nodes []string
	for n := range scans {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		for _, kv := range scans[n] {
			if marked(kv) {
				bad = append(bad, fmt.Sprintf("invalid request applied: %s holds %s", n, short(kv)))
			}
		}
	}
	return bad
}

// scanAll reads every key of s (serializably: s has applied everything
// when this runs).
func scanAll(ctx context.Context, s *store.Store) ([]KV, error) {
	r, err := s.Get(ctx, "\x00", store.WithFromKey(), store.WithSerializable())
	if err != nil {
		return nil, err
	}
	return toKVs(r.Kvs), nil
}
