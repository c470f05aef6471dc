package store

import (
	"context"
	"fmt"
	"math"

	"github.com/embedkv/store/mvcc"
)

type opType uint8

const (
	opGet opType = iota + 1
	opPut
	opDelete
	opTxn
)

// Op is one operation: a Get, Put, Delete or nested Txn, built by OpGet,
// OpPut, OpDelete or OpTxn for use inside a transaction.
type Op struct {
	t   opType
	key []byte
	val []byte
	end []byte

	hasEnd, prefix, fromKey bool

	// get
	rev                        int64
	limit                      int64
	sortTarget                 SortTarget
	sortOrder                  SortOrder
	keysOnly, countOnly        bool
	serializable               bool
	minModRev, maxModRev       int64
	minCreateRev, maxCreateRev int64

	// put, delete
	prevKV                   bool
	lease                    LeaseID
	ignoreValue, ignoreLease bool

	// watch
	filterPut, filterDelete, progressNotify bool

	// txn
	cmps    []Cmp
	thenOps []Op
	elseOps []Op
}

// OpGet returns a Get operation for use in a transaction.
func OpGet(key string, opts ...OpOption) Op {
	op := Op{t: opGet, key: []byte(key)}
	op.apply(opts)
	return op
}

// OpPut returns a Put operation for use in a transaction.
func OpPut(key, val string, opts ...OpOption) Op {
	op := Op{t: opPut, key: []byte(key), val: []byte(val)}
	op.apply(opts)
	return op
}

// OpDelete returns a Delete operation for use in a transaction.
func OpDelete(key string, opts ...OpOption) Op {
	op := Op{t: opDelete, key: []byte(key)}
	op.apply(opts)
	return op
}

// OpTxn returns a nested transaction for use in a transaction.
func OpTxn(cmps []Cmp, thenOps []Op, elseOps []Op) Op {
	return Op{t: opTxn, cmps: cmps, thenOps: thenOps, elseOps: elseOps}
}

// IsGet, IsPut, IsDelete and IsTxn report the operation's kind.
func (op Op) IsGet() bool { return op.t == opGet }

// IsPut reports whether op is a Put.
func (op Op) IsPut() bool { return op.t == opPut }

// IsDelete reports whether op is a Delete.
func (op Op) IsDelete() bool { return op.t == opDelete }

// IsTxn reports whether op is a nested transaction.
func (op Op) IsTxn() bool { return op.t == opTxn }

// KeyBytes returns the operation's key.
func (op Op) KeyBytes() []byte { return op.key }

func (op *Op) apply(opts []OpOption) {
	for _, o := range opts {
		if o != nil {
			o(op)
		}
	}
}

// keyRange resolves key and the range options into the [key, end) pair the
// MVCC layer understands: end nil = single key, end "\x00" = from key on.
func (op *Op) keyRange() (key, end []byte, err error) {
	key = op.key
	n := 0
	if op.prefix {
		n++
	}
	if op.fromKey {
		n++
	}
	if op.hasEnd {
		n++
	}
	if n > 1 {
		return nil, nil, fmt.Errorf("%w: WithPrefix, WithRange and WithFromKey exclude each other", ErrInvalidArgument)
	}
	switch {
	case op.prefix:
		if len(key) == 0 {
			return []byte{0}, []byte{0}, nil
		}
		return key, mvcc.PrefixEnd(key), nil
	case op.fromKey:
		if len(key) == 0 {
			key = []byte{0}
		}
		return key, []byte{0}, nil
	case op.hasEnd:
		if len(key) == 0 {
			return nil, nil, ErrEmptyKey
		}
		if len(op.end) == 0 {
			return key, nil, nil // etcd: an empty range end means the key alone
		}
		// An end at or before key is an empty range, as in etcd.
		return key, op.end, nil
	}
	if len(key) == 0 {
		return nil, nil, ErrEmptyKey
	}
	return key, nil, nil
}

// CompareTarget is what a Cmp looks at.
type CompareTarget int

// Compare targets, as clientv3.
const (
	CompareVersion CompareTarget = iota
	CompareCreated
	CompareModified
	CompareValue
	CompareLease
)

// CompareResult is a Cmp's operator.
type CompareResult int

// Compare operators.
const (
	CompareEqual CompareResult = iota
	CompareGreater
	CompareLess
	CompareNotEqual
)

// Cmp is one comparison of a transaction's If clause, built by Compare.
type Cmp struct {
	target CompareTarget
	result CompareResult
	key    []byte
	end    []byte
	value  []byte
	num    int64
	err    error
}

// Value targets the value of key in a comparison.
func Value(key string) Cmp { return Cmp{key: []byte(key), target: CompareValue} }

// Version targets the version of key in a comparison (0 when absent).
func Version(key string) Cmp { return Cmp{key: []byte(key), target: CompareVersion} }

// CreateRevision targets the create revision of key (0 when absent).
func CreateRevision(key string) Cmp { return Cmp{key: []byte(key), target: CompareCreated} }

// ModRevision targets the mod revision of key (0 when absent).
func ModRevision(key string) Cmp { return Cmp{key: []byte(key), target: CompareModified} }

// LeaseValue targets the lease of key (NoLease when absent or unleased).
func LeaseValue(key string) Cmp { return Cmp{key: []byte(key), target: CompareLease} }

// WithRange makes the comparison hold for every key in [key, end) (etcd's
// Cmp.WithRange); WithPrefix for every key with the prefix.
func (c Cmp) WithRange(end string) Cmp { c.end = []byte(end); return c }

// WithPrefix makes the comparison hold for every key with the key as prefix.
func (c Cmp) WithPrefix() Cmp {
	if len(c.key) == 0 {
		c.key, c.end = []byte{0}, []byte{0}
		return c
	}
	c.end = mvcc.PrefixEnd(c.key)
	return c
}

// Compare builds a comparison: result is "=", "!=", "<" or ">"; v is a string
// for Value, any Go integer for Version/CreateRevision/ModRevision, and a
// LeaseID (or integer) for LeaseValue. A malformed comparison makes Commit
// fail with ErrInvalidArgument.
func Compare(cmp Cmp, result string, v interface{}) Cmp {
	switch result {
	case "=":
		cmp.result = CompareEqual
	case "!=":
		cmp.result = CompareNotEqual
	case ">":
		cmp.result = CompareGreater
	case "<":
		cmp.result = CompareLess
	default:
		cmp.err = fmt.Errorf("%w: unknown compare operator %q", ErrInvalidArgument, result)
		return cmp
	}
	if cmp.target == CompareValue {
		switch x := v.(type) {
		case string:
			cmp.value = []byte(x)
		case []byte:
			cmp.value = append([]byte(nil), x...)
		default:
			cmp.err = fmt.Errorf("%w: a Value comparison needs a string, got %T", ErrInvalidArgument, v)
		}
		return cmp
	}
	n, ok := toInt64(v)
	if !ok {
		cmp.err = fmt.Errorf("%w: comparison needs an integer, got %T", ErrInvalidArgument, v)
	}
	cmp.num = n
	return cmp
}

func toInt64(v interface{}) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return int64(x), uint64(x) <= math.MaxInt64
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	case LeaseID:
		return int64(x), true
	}
	return 0, false
}

// Txn is a transaction under construction: If(cmps...).Then(ops...).Else(ops...).Commit().
// Like clientv3.Txn, each of If, Then and Else may be called at most once,
// in that order; a misuse makes Commit fail with ErrInvalidArgument.
type Txn struct {
	s       *Store
	ctx     context.Context
	cmps    []Cmp
	thenOps []Op
	elseOps []Op
	stage   int
	err     error
}

// If adds the comparisons that decide between Then and Else. All must hold.
func (t *Txn) If(cmps ...Cmp) *Txn {
	if t.stage >= 1 && t.err == nil {
		t.err = fmt.Errorf("%w: If called after If, Then or Else", ErrInvalidArgument)
	}
	t.stage = 1
	t.cmps = append(t.cmps, cmps...)
	return t
}

// Then adds the operations run when every comparison holds.
func (t *Txn) Then(ops ...Op) *Txn {
	if t.stage >= 2 && t.err == nil {
		t.err = fmt.Errorf("%w: Then called after Then or Else", ErrInvalidArgument)
	}
	t.stage = 2
	t.thenOps = append(t.thenOps, ops...)
	return t
}

// Else adds the operations run when a comparison fails.
func (t *Txn) Else(ops ...Op) *Txn {
	if t.stage >= 3 && t.err == nil {
		t.err = fmt.Errorf("%w: Else called twice", ErrInvalidArgument)
	}
	t.stage = 3
	t.elseOps = append(t.elseOps, ops...)
	return t
}
