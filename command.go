package store

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/embedkv/store/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
)

// A command is what travels through the raft log: one type byte followed by a
// msgpack body. Structs encode as msgpack maps keyed by short names, so fields
// can be added in later versions without breaking old logs: unknown fields are
// skipped, missing ones decode as zero.
const (
	cmdRequest byte = 1 // body: request
)

// maxMsgpackDepth bounds the nesting of any msgpack value we decode. A txn
// nests three levels per txn level (request op → txn → op list), plus slack.
const maxMsgpackDepth = 8 + 4*maxTxnDepthLimit

// maxTxnDepthLimit is the hard ceiling for Config.MaxTxnDepth.
const maxTxnDepthLimit = 16

type reqKind uint8

const (
	reqPut reqKind = iota + 1
	reqDelete
	reqTxn
	reqCompact
	reqNoop // a new leader's first entry of its term; see leader.go
	reqLeaseGrant
	reqLeaseRevoke
	reqLeaseRenew
	reqLeaseCheckpoint
	reqLeaseExpire
)

// request is one client write. ID routes the result back to the caller: it is
// the proposing node's boot ID and a sequence number, and has no effect on the
// state machine.
type request struct {
	Origin  uint64     `msgpack:"o,omitempty"`
	Seq     uint64     `msgpack:"q,omitempty"`
	Kind    reqKind    `msgpack:"k"`
	Put     *putReq    `msgpack:"p,omitempty"`
	Delete  *deleteReq `msgpack:"d,omitempty"`
	Txn     *txnReq    `msgpack:"t,omitempty"`
	Compact int64      `msgpack:"c,omitempty"`

	LeaseTTL         int64             `msgpack:"lt,omitempty"` // grant
	LeaseID          int64             `msgpack:"li,omitempty"` // revoke, renew
	LeaseCheckpoints []leaseCheckpoint `msgpack:"lc,omitempty"`
	LeaseExpire      []leaseExpiry     `msgpack:"le,omitempty"`
}

// leaseCheckpoint records a lease's remaining TTL as measured by the leader.
// It applies only if the lease was not renewed since (same RenewIndex).
type leaseCheckpoint struct {
	ID          int64  `msgpack:"i"`
	RemainingMs int64  `msgpack:"r"`
	RenewIndex  uint64 `msgpack:"x"`
}

// leaseExpiry asks to revoke an expired lease, unless it was renewed after
// the leader saw it expire (its renew index moved on).
type leaseExpiry struct {
	ID         int64  `msgpack:"i"`
	RenewIndex uint64 `msgpack:"x"`
}

type rangeReq struct {
	Key          []byte `msgpack:"k"`
	End          []byte `msgpack:"e,omitempty"`
	Rev          int64  `msgpack:"r,omitempty"`
	Limit        int64  `msgpack:"l,omitempty"`
	SortTarget   uint8  `msgpack:"st,omitempty"`
	SortOrder    uint8  `msgpack:"so,omitempty"`
	KeysOnly     bool   `msgpack:"ko,omitempty"`
	CountOnly    bool   `msgpack:"co,omitempty"`
	MinModRev    int64  `msgpack:"mm,omitempty"`
	MaxModRev    int64  `msgpack:"xm,omitempty"`
	MinCreateRev int64  `msgpack:"mc,omitempty"`
	MaxCreateRev int64  `msgpack:"xc,omitempty"`
}

type putReq struct {
	Key         []byte `msgpack:"k"`
	Value       []byte `msgpack:"v,omitempty"`
	Lease       int64  `msgpack:"l,omitempty"`
	PrevKV      bool   `msgpack:"p,omitempty"`
	IgnoreValue bool   `msgpack:"iv,omitempty"`
	IgnoreLease bool   `msgpack:"il,omitempty"`
}

type deleteReq struct {
	Key    []byte `msgpack:"k"`
	End    []byte `msgpack:"e,omitempty"`
	PrevKV bool   `msgpack:"p,omitempty"`
}

type compareReq struct {
	Target uint8  `msgpack:"t"`
	Result uint8  `msgpack:"r"`
	Key    []byte `msgpack:"k"`
	End    []byte `msgpack:"e,omitempty"`
	Value  []byte `msgpack:"v,omitempty"`
	Num    int64  `msgpack:"n,omitempty"`
}

// requestOp is one operation of a txn branch; exactly one field is set.
type requestOp struct {
	Range  *rangeReq  `msgpack:"g,omitempty"`
	Put    *putReq    `msgpack:"p,omitempty"`
	Delete *deleteReq `msgpack:"d,omitempty"`
	Txn    *txnReq    `msgpack:"t,omitempty"`
}

type txnReq struct {
	Compare []compareReq `msgpack:"c,omitempty"`
	Success []requestOp  `msgpack:"s,omitempty"`
	Failure []requestOp  `msgpack:"f,omitempty"`
}

var encPool = sync.Pool{New: func() any {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	return &pooledEncoder{buf: &buf, enc: enc}
}}

type pooledEncoder struct {
	buf *bytes.Buffer
	enc *msgpack.Encoder
}

// encodeCommand returns typ followed by the msgpack encoding of v, in a new
// slice owned by the caller. A plain Put is encoded by hand (same bytes; see
// command_fast.go), anything else reflectively.
func encodeCommand(typ byte, v any) ([]byte, error) {
	if req, ok := v.(*request); ok {
		if out, ok := encodePutFast(typ, req); ok {
			return out, nil
		}
	}
	return encode([]byte{typ}, v)
}

// encodeMsgpack returns the msgpack encoding of v alone (snapshot metadata).
func encodeMsgpack(v any) ([]byte, error) { return encode(nil, v) }

func encode(prefix []byte, v any) ([]byte, error) {
	pe := encPool.Get().(*pooledEncoder)
	defer func() {
		if pe.buf.Cap() <= 1<<20 {
			encPool.Put(pe)
		}
	}()
	pe.buf.Reset()
	pe.buf.Write(prefix)
	if err := pe.enc.Encode(v); err != nil {
		return nil, err
	}
	out := make([]byte, pe.buf.Len())
	copy(out, pe.buf.Bytes())
	return out, nil
}

var decPool = sync.Pool{New: func() any { return msgpack.NewDecoder(nil) }}

// decodeMsgpack checks b with msgpackcheck before decoding it into v (a
// pointer to a concrete type), so hostile lengths or nesting never reach the
// decoder.
func decodeMsgpack(b []byte, v any) error {
	if err := msgpackcheck.Check(b, maxMsgpackDepth); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	dec := decPool.Get().(*msgpack.Decoder)
	defer decPool.Put(dec)
	dec.Reset(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}

// decodeCommand parses a raft log entry. Every error wraps ErrCorrupt.
//
// The request may alias b (a plain Put's Key and Value are sub-slices of
// it, which saves a copy on every node for every write): b must not change
// while the request is in use, and nothing may keep the request's byte
// fields beyond that. Both callers hold immutable bytes (a committed raft
// entry; a forwarded command that is then proposed as is), and the apply
// path copies whatever it keeps (mvcc copies keys and values, the lease
// table converts keys to strings).
func decodeCommand(b []byte) (*request, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: command of %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != cmdRequest {
		return nil, fmt.Errorf("%w: unknown command type %d", ErrCorrupt, b[0])
	}
	// The framing is checked before either decoder sees the bytes. The hand
	// decoder takes the plain encodings it knows (see command_fast.go); for
	// any other input it decodes nothing and the reflective decoder takes
	// the whole input (checking it again).
	if err := msgpackcheck.Check(b[1:], maxMsgpackDepth); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if req, ok := decodeRequestFast(b[1:]); ok {
		return req, nil
	}
	req := new(request)
	if err := decodeMsgpack(b[1:], req); err != nil {
		return nil, err
	}
	return req, nil
}
