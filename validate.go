package store

import (
	"fmt"
	"sort"
)

// maxLeaseBatch bounds the leases one checkpoint or expiry entry carries.
const maxLeaseBatch = 10000

// limits are the per-node admission limits checked before a request is
// proposed. They are never consulted inside Apply: nodes may be configured
// differently, and Apply must decide the same way on every node.
type limits struct {
	maxTxnOps   int // per branch, as etcd's --max-txn-ops
	maxTxnDepth int // nesting levels, the outermost txn being 1
	maxTotalOps int // compares and operations across the whole request
}

// applyLimits are the hard structural ceilings Apply enforces on every node,
// whatever the configuration, so that a hostile entry can neither crash nor
// stall the state machine.
var applyLimits = limits{maxTxnOps: 1 << 14, maxTxnDepth: maxTxnDepthLimit, maxTotalOps: 1 << 14}

// getOptionsSet reports options only a Get takes; readShapeOptionsSet the
// same without WithRev, which Watch takes too.
func (op *Op) getOptionsSet() bool { return op.rev != 0 || op.readShapeOptionsSet() }

func (op *Op) readShapeOptionsSet() bool {
	return op.limit != 0 || op.sortTarget != 0 || op.sortOrder != 0 ||
		op.keysOnly || op.countOnly || op.minModRev != 0 || op.maxModRev != 0 ||
		op.minCreateRev != 0 || op.maxCreateRev != 0
}

func (op *Op) watchOptionsSet() bool {
	return op.filterPut || op.filterDelete || op.progressNotify
}

// toRange converts a Get into its wire form, rejecting options a Get cannot
// take.
func (op *Op) toRange() (*rangeReq, error) {
	if op.lease != 0 || op.ignoreValue || op.ignoreLease || op.prevKV || op.watchOptionsSet() {
		return nil, fmt.Errorf("%w: lease, prev-kv, ignore and watch options do not apply to Get", ErrInvalidArgument)
	}
	key, end, err := op.keyRange()
	if err != nil {
		return nil, err
	}
	switch {
	case op.rev < 0:
		return nil, fmt.Errorf("%w: negative revision %d", ErrInvalidArgument, op.rev)
	case op.limit < 0:
		return nil, fmt.Errorf("%w: negative limit %d", ErrInvalidArgument, op.limit)
	case op.sortTarget < SortByKey || op.sortTarget > SortByValue:
		return nil, fmt.Errorf("%w: unknown sort target %d", ErrInvalidArgument, op.sortTarget)
	case op.sortOrder < SortNone || op.sortOrder > SortDescend:
		return nil, fmt.Errorf("%w: unknown sort order %d", ErrInvalidArgument, op.sortOrder)
	case op.minModRev < 0 || op.maxModRev < 0 || op.minCreateRev < 0 || op.maxCreateRev < 0:
		return nil, fmt.Errorf("%w: negative revision filter", ErrInvalidArgument)
	}
	return &rangeReq{
		Key: key, End: end, Rev: op.rev, Limit: op.limit,
		SortTarget: uint8(op.sortTarget), SortOrder: uint8(op.sortOrder),
		KeysOnly: op.keysOnly, CountOnly: op.countOnly,
		MinModRev: op.minModRev, MaxModRev: op.maxModRev,
		MinCreateRev: op.minCreateRev, MaxCreateRev: op.maxCreateRev,
	}, nil
}

func (op *Op) toPut() (*putReq, error) {
	if op.prefix || op.fromKey || op.hasEnd {
		return nil, fmt.Errorf("%w: a Put takes a single key", ErrInvalidArgument)
	}
	if op.getOptionsSet() || op.serializable || op.watchOptionsSet() {
		return nil, fmt.Errorf("%w: read and watch options do not apply to Put", ErrInvalidArgument)
	}
	if len(op.key) == 0 {
		return nil, ErrEmptyKey
	}
	if op.ignoreValue && len(op.val) != 0 {
		return nil, fmt.Errorf("%w: value provided with WithIgnoreValue", ErrInvalidArgument)
	}
	if op.ignoreLease && op.lease != 0 {
		return nil, fmt.Errorf("%w: lease provided with WithIgnoreLease", ErrInvalidArgument)
	}
	if op.lease < 0 {
		return nil, fmt.Errorf("%w: negative lease ID %d", ErrInvalidArgument, op.lease)
	}
	return &putReq{Key: op.key, Value: op.val, Lease: int64(op.lease), PrevKV: op.prevKV,
		IgnoreValue: op.ignoreValue, IgnoreLease: op.ignoreLease}, nil
}

func (op *Op) toDelete() (*deleteReq, error) {
	if op.getOptionsSet() || op.serializable || op.lease != 0 || op.ignoreValue || op.ignoreLease || op.watchOptionsSet() {
		return nil, fmt.Errorf("%w: only range options and WithPrevKV apply to Delete", ErrInvalidArgument)
	}
	key, end, err := op.keyRange()
	if err != nil {
		return nil, err
	}
	return &deleteReq{Key: key, End: end, PrevKV: op.prevKV}, nil
}

func (op *Op) toRequestOp() (requestOp, error) {
	switch op.t {
	case opGet:
		r, err := op.toRange()
		return requestOp{Range: r}, err
	case opPut:
		r, err := op.toPut()
		return requestOp{Put: r}, err
	case opDelete:
		r, err := op.toDelete()
		return requestOp{Delete: r}, err
	case opTxn:
		r, err := toTxnReq(op.cmps, op.thenOps, op.elseOps)
		return requestOp{Txn: r}, err
	}
	return requestOp{}, fmt.Errorf("%w: zero Op (build it with OpGet, OpPut, OpDelete or OpTxn)", ErrInvalidArgument)
}

func toTxnReq(cmps []Cmp, thenOps, elseOps []Op) (*txnReq, error) {
	t := &txnReq{}
	for _, c := range cmps {
		if c.err != nil {
			return nil, c.err
		}
		if len(c.key) == 0 {
			return nil, ErrEmptyKey
		}
		if c.target < CompareVersion || c.target > CompareLease {
			return nil, fmt.Errorf("%w: unknown compare target %d", ErrInvalidArgument, c.target)
		}
		t.Compare = append(t.Compare, compareReq{Target: uint8(c.target), Result: uint8(c.result),
			Key: c.key, End: c.end, Value: c.value, Num: c.num})
	}
	for _, branch := range []struct {
		ops []Op
		out *[]requestOp
	}{{thenOps, &t.Success}, {elseOps, &t.Failure}} {
		for i := range branch.ops {
			ro, err := branch.ops[i].toRequestOp()
			if err != nil {
				return nil, err
			}
			*branch.out = append(*branch.out, ro)
		}
	}
	return t, nil
}

// validateRequest checks a request's structure: exactly one payload per
// operation, non-empty keys, known enums, txn size and depth, and no key
// written twice in one txn. It runs at propose time with the node's limits and
// again inside Apply with applyLimits, so it must be deterministic.
func validateRequest(req *request, lim limits) error {
	switch req.Kind {
	case reqPut:
		if req.Put == nil || req.Delete != nil || req.Txn != nil {
			return fmt.Errorf("%w: malformed put request", ErrInvalidArgument)
		}
		return validatePut(req.Put)
	case reqDelete:
		if req.Delete == nil || req.Put != nil || req.Txn != nil {
			return fmt.Errorf("%w: malformed delete request", ErrInvalidArgument)
		}
		return validateRange(req.Delete.Key, req.Delete.End)
	case reqTxn:
		if req.Txn == nil || req.Put != nil || req.Delete != nil {
			return fmt.Errorf("%w: malformed txn request", ErrInvalidArgument)
		}
		total := 0
		return validateTxn(req.Txn, lim, 1, &total)
	case reqCompact:
		if req.Compact <= 0 {
			return fmt.Errorf("%w: compact revision %d", ErrInvalidArgument, req.Compact)
		}
		return nil
	case reqNoop:
		return nil
	case reqLeaseGrant:
		if req.LeaseTTL <= 0 || req.LeaseTTL > maxLeaseTTL {
			return fmt.Errorf("%w: lease TTL %d outside 1..%d", ErrInvalidArgument, req.LeaseTTL, int64(maxLeaseTTL))
		}
		return nil
	case reqLeaseRevoke, reqLeaseRenew:
		if req.LeaseID <= 0 {
			return fmt.Errorf("%w: lease ID %d", ErrInvalidArgument, req.LeaseID)
		}
		return nil
	case reqLeaseCheckpoint:
		if len(req.LeaseCheckpoints) == 0 || len(req.LeaseCheckpoints) > maxLeaseBatch {
			return fmt.Errorf("%w: %d lease checkpoints", ErrInvalidArgument, len(req.LeaseCheckpoints))
		}
		return nil
	case reqLeaseExpire:
		if len(req.LeaseExpire) == 0 || len(req.LeaseExpire) > maxLeaseBatch {
			return fmt.Errorf("%w: %d lease expiries", ErrInvalidArgument, len(req.LeaseExpire))
		}
		return nil
	}
	return fmt.Errorf("%w: unknown request kind %d", ErrInvalidArgument, req.Kind)
}

func validatePut(p *putReq) error {
	if len(p.Key) == 0 {
		return ErrEmptyKey
	}
	if p.Lease < 0 {
		return fmt.Errorf("%w: negative lease ID", ErrInvalidArgument)
	}
	if p.IgnoreValue && len(p.Value) != 0 || p.IgnoreLease && p.Lease != 0 {
		return fmt.Errorf("%w: ignore option with a provided value or lease", ErrInvalidArgument)
	}
	return nil
}

func validateRange(key, end []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	return nil
}

func validateRangeReq(r *rangeReq) error {
	if err := validateRange(r.Key, r.End); err != nil {
		return err
	}
	if r.Rev < 0 || r.Limit < 0 || r.SortTarget > uint8(SortByValue) || r.SortOrder > uint8(SortDescend) ||
		r.MinModRev < 0 || r.MaxModRev < 0 || r.MinCreateRev < 0 || r.MaxCreateRev < 0 {
		return fmt.Errorf("%w: malformed range request", ErrInvalidArgument)
	}
	return nil
}

// validateTxn checks a txn's structure and its branches' write sets (see
// checkWrites). total counts operations across the whole request.
func validateTxn(t *txnReq, lim limits, depth int, total *int) error {
	if depth > lim.maxTxnDepth {
		return fmt.Errorf("%w: txn nested deeper than %d", ErrTooManyOps, lim.maxTxnDepth)
	}
	if len(t.Success) > lim.maxTxnOps || len(t.Failure) > lim.maxTxnOps || len(t.Compare) > lim.maxTxnOps {
		return fmt.Errorf("%w: more than %d operations in a branch", ErrTooManyOps, lim.maxTxnOps)
	}
	*total += len(t.Compare) + len(t.Success) + len(t.Failure)
	if *total > lim.maxTotalOps {
		return fmt.Errorf("%w: more than %d operations in all", ErrTooManyOps, lim.maxTotalOps)
	}
	for i := range t.Compare {
		c := &t.Compare[i]
		if err := validateRange(c.Key, c.End); err != nil {
			return err
		}
		if c.Target > uint8(CompareLease) || c.Result > uint8(CompareNotEqual) {
			return fmt.Errorf("%w: malformed comparison", ErrInvalidArgument)
		}
	}
	for _, branch := range [][]requestOp{t.Success, t.Failure} {
		for i := range branch {
			if err := validateOp(&branch[i], lim, depth, total); err != nil {
				return err
			}
		}
	}
	if _, _, err := checkWrites(t.Success); err != nil {
		return err
	}
	_, _, err := checkWrites(t.Failure)
	return err
}

func validateOp(op *requestOp, lim limits, depth int, total *int) error {
	n := 0
	for _, set := range []bool{op.Range != nil, op.Put != nil, op.Delete != nil, op.Txn != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: txn operation must have exactly one kind", ErrInvalidArgument)
	}
	switch {
	case op.Range != nil:
		return validateRangeReq(op.Range)
	case op.Put != nil:
		return validatePut(op.Put)
	case op.Delete != nil:
		return validateRange(op.Delete.Key, op.Delete.End)
	default:
		return validateTxn(op.Txn, lim, depth+1, total)
	}
}

// keyInterval is [start, end): end nil = the key alone, "\x00" = no end.
type keyInterval struct{ start, end []byte }

func (iv keyInterval) contains(key []byte) bool {
	if len(iv.end) == 0 {
		return string(key) == string(iv.start)
	}
	if string(key) < string(iv.start) {
		return false
	}
	return len(iv.end) == 1 && iv.end[0] == 0 || string(key) < string(iv.end)
}

func intersects(dels []keyInterval, key []byte) bool {
	for _, d := range dels {
		if d.contains(key) {
			return true
		}
	}
	return false
}

// checkWrites follows etcd's checkIntervals: within one branch no key may be
// put twice, and no put may fall inside a delete of the same branch; the
// Then and Else branches of a nested txn exclude each other, so a key they
// both put is fine. It returns the branch's puts and deletes for the level
// above. The caller bounds the op count, so the quadratic scan is bounded.
func checkWrites(ops []requestOp) (map[string]struct{}, []keyInterval, error) {
	var dels []keyInterval
	for i := range ops {
		if d := ops[i].Delete; d != nil {
			dels = append(dels, keyInterval{d.Key, d.End})
		}
	}
	puts := make(map[string]struct{})
	for i := range ops {
		t := ops[i].Txn
		if t == nil {
			continue
		}
		putsThen, delsThen, err := checkWrites(t.Success)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkWrites(t.Failure)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range sortedKeys(putsThen) {
			if _, dup := puts[k]; dup || intersects(dels, []byte(k)) {
				return nil, nil, fmt.Errorf("%w: %q", ErrDuplicateKey, k)
			}
			puts[k] = struct{}{}
		}
		for _, k := range sortedKeys(putsElse) {
			_, dup := puts[k]
			_, inThen := putsThen[k]
			if dup && !inThen || intersects(dels, []byte(k)) {
				return nil, nil, fmt.Errorf("%w: %q", ErrDuplicateKey, k)
			}
			puts[k] = struct{}{}
		}
		dels = append(append(dels, delsThen...), delsElse...)
	}
	for i := range ops {
		p := ops[i].Put
		if p == nil {
			continue
		}
		k := string(p.Key)
		if _, dup := puts[k]; dup || intersects(dels, p.Key) {
			return nil, nil, fmt.Errorf("%w: %q", ErrDuplicateKey, k)
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}

func sortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
