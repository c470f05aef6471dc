package store

// OpOption configures an operation, as clientv3.OpOption does. Options that
// make no sense for an operation are rejected with ErrInvalidArgument (a
// WithLease on a Get, say) rather than silently ignored.
type OpOption func(*Op)

// SortTarget selects the field Get sorts by.
type SortTarget int

// Sort targets, as clientv3.SortTarget.
const (
	SortByKey SortTarget = iota
	SortByVersion
	SortByCreateRevision
	SortByModRevision
	SortByValue
)

// SortOrder selects the direction of sorting.
type SortOrder int

// Sort orders, as clientv3.SortOrder.
const (
	SortNone SortOrder = iota
	SortAscend
	SortDescend
)

// WithPrefix makes the operation cover every key starting with the given key.
// With an empty key it covers all keys.
func WithPrefix() OpOption { return func(op *Op) { op.prefix = true } }

// WithRange makes the operation cover the keys in [key, end). An end of
// "\x00" means "every key from key on" (see WithFromKey).
func WithRange(end string) OpOption {
	return func(op *Op) { op.end = []byte(end); op.hasEnd = true }
}

// WithFromKey makes the operation cover every key greater than or equal to
// the given key.
func WithFromKey() OpOption { return func(op *Op) { op.fromKey = true } }

// WithRev reads (or, for Watch, starts watching) at the given revision. 0
// means the current revision.
func WithRev(rev int64) OpOption { return func(op *Op) { op.rev = rev } }

// WithLimit caps the number of keys a Get returns; GetResponse.More reports
// that more keys matched. 0 means no limit.
func WithLimit(n int64) OpOption { return func(op *Op) { op.limit = n } }

// WithSort sorts the result of a Get.
func WithSort(target SortTarget, order SortOrder) OpOption {
	return func(op *Op) { op.sortTarget = target; op.sortOrder = order }
}

// WithKeysOnly makes a Get return keys and metadata without values.
func WithKeysOnly() OpOption { return func(op *Op) { op.keysOnly = true } }

// WithCountOnly makes a Get return only the count of matching keys.
func WithCountOnly() OpOption { return func(op *Op) { op.countOnly = true } }

// WithSerializable makes a Get read the local node's applied state without
// confirming it is current: faster, possibly stale, available without a
// leader.
func WithSerializable() OpOption { return func(op *Op) { op.serializable = true } }

// WithPrevKV makes a Put, Delete or Watch return the previous key-value pair.
func WithPrevKV() OpOption { return func(op *Op) { op.prevKV = true } }

// WithLease attaches the key written by a Put to a lease.
func WithLease(id LeaseID) OpOption { return func(op *Op) { op.lease = id } }

// WithIgnoreValue makes a Put keep the key's current value (the key must
// exist), updating only its lease or version.
func WithIgnoreValue() OpOption { return func(op *Op) { op.ignoreValue = true } }

// WithIgnoreLease makes a Put keep the key's current lease (the key must
// exist).
func WithIgnoreLease() OpOption { return func(op *Op) { op.ignoreLease = true } }

// WithMinModRev keeps only keys whose ModRevision is >= rev.
func WithMinModRev(rev int64) OpOption { return func(op *Op) { op.minModRev = rev } }

// WithMaxModRev keeps only keys whose ModRevision is <= rev.
func WithMaxModRev(rev int64) OpOption { return func(op *Op) { op.maxModRev = rev } }

// WithMinCreateRev keeps only keys whose CreateRevision is >= rev.
func WithMinCreateRev(rev int64) OpOption { return func(op *Op) { op.minCreateRev = rev } }

// WithMaxCreateRev keeps only keys whose CreateRevision is <= rev.
func WithMaxCreateRev(rev int64) OpOption { return func(op *Op) { op.maxCreateRev = rev } }

// WithFilterPut makes a Watch skip PUT events.
func WithFilterPut() OpOption { return func(op *Op) { op.filterPut = true } }

// WithFilterDelete makes a Watch skip DELETE events.
func WithFilterDelete() OpOption { return func(op *Op) { op.filterDelete = true } }

// WithProgressNotify makes a Watch send empty responses carrying the current
// revision while it is idle.
func WithProgressNotify() OpOption { return func(op *Op) { op.progressNotify = true } }
