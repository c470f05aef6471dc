package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// encodeCommandReflect is encodeCommand as it was before the hand encoder:
// the reference the hand encoder must match byte for byte.
func encodeCommandReflect(typ byte, v any) ([]byte, error) { return encode([]byte{typ}, v) }

// decodeCommandReflect is decodeCommand as it was before the hand decoder,
// verbatim: the reference the hand decoder must agree with on every input.
func decodeCommandReflect(b []byte) (*request, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: command of %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != cmdRequest {
		return nil, fmt.Errorf("%w: unknown command type %d", ErrCorrupt, b[0])
	}
	req := new(request)
	if err := decodeMsgpack(b[1:], req); err != nil {
		return nil, err
	}
	return req, nil
}

// putCommand returns a plain Put request.
func putCommand(origin, seq uint64, p putReq) *request {
	return &request{Origin: origin, Seq: seq, Kind: reqPut, Put: &p}
}

// TestCommandFastRoundTrip checks, for plain Puts, that the hand encoder
// writes exactly the reflective encoder's bytes and that both decoders turn
// them back into the request.
func TestCommandFastRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 64<<10)
	binKey := []byte{0x00, 0xff, 0xc1, 0x80, 0xa1, '\n'}
	tests := []struct {
		name string
		req  *request
		want *request // nil: req itself
	}{
		{name: "key and value", req: putCommand(1, 1, putReq{Key: []byte("key-000123"), Value: []byte("value")})},
		{name: "no value", req: putCommand(1, 2, putReq{Key: []byte("k")})},
		{name: "empty value decodes as nil", req: putCommand(1, 2, putReq{Key: []byte("k"), Value: []byte{}}),
			want: putCommand(1, 2, putReq{Key: []byte("k")})},
		{name: "nil key", req: putCommand(1, 2, putReq{Value: []byte("v")})},
		{name: "empty key", req: putCommand(1, 2, putReq{Key: []byte{}, Value: []byte("v")})},
		{name: "empty key no value", req: putCommand(1, 2, putReq{Key: []byte{}})},
		{name: "binary key", req: putCommand(7, 9, putReq{Key: binKey, Value: binKey})},
		{name: "lease", req: putCommand(1, 3, putReq{Key: []byte("k"), Value: []byte("v"), Lease: 0x1234_5678_9abc})},
		{name: "lease 127", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: 127})},
		{name: "lease 128", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: 128})},
		{name: "lease max", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: math.MaxInt64})},
		{name: "lease -1", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: -1})},
		{name: "lease -32", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: -32})},
		{name: "lease -33", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: -33})},
		{name: "lease -129", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: -129})},
		{name: "lease -32769", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: -32769})},
		{name: "lease min int32-1", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: math.MinInt32 - 1})},
		{name: "lease min", req: putCommand(1, 3, putReq{Key: []byte("k"), Lease: math.MinInt64})},
		{name: "prev kv", req: putCommand(1, 4, putReq{Key: []byte("k"), Value: []byte("v"), PrevKV: true})},
		{name: "ignore value", req: putCommand(1, 5, putReq{Key: []byte("k"), IgnoreValue: true})},
		{name: "ignore lease", req: putCommand(1, 6, putReq{Key: []byte("k"), Value: []byte("v"), IgnoreLease: true})},
		{name: "all flags", req: putCommand(1, 7, putReq{Key: []byte("k"), Lease: 5, PrevKV: true, IgnoreValue: true, IgnoreLease: true})},
		{name: "zero seq", req: putCommand(1, 0, putReq{Key: []byte("k"), Value: []byte("v")})},
		{name: "zero origin and seq", req: putCommand(0, 0, putReq{Key: []byte("k"), Value: []byte("v")})},
		{name: "origin 127 seq 128", req: putCommand(127, 128, putReq{Key: []byte("k")})},
		{name: "origin 255 seq 256", req: putCommand(255, 256, putReq{Key: []byte("k")})},
		{name: "origin 65535 seq 65536", req: putCommand(65535, 65536, putReq{Key: []byte("k")})},
		{name: "origin 2^32-1 seq 2^32", req: putCommand(math.MaxUint32, 1<<32, putReq{Key: []byte("k")})},
		{name: "max origin and seq", req: putCommand(math.MaxUint64, math.MaxUint64, putReq{Key: []byte("k")})},
		{name: "value 31 bytes", req: putCommand(1, 1, putReq{Key: []byte("k"), Value: big[:31]})},
		{name: "value 255 bytes", req: putCommand(1, 1, putReq{Key: []byte("k"), Value: big[:255]})},
		{name: "value 256 bytes", req: putCommand(1, 1, putReq{Key: []byte("k"), Value: big[:256]})},
		{name: "value 65535 bytes", req: putCommand(1, 1, putReq{Key: []byte("k"), Value: big[:65535]})},
		{name: "value 64 KiB", req: putCommand(1, 1, putReq{Key: []byte("k"), Value: big})},
		{name: "key 64 KiB", req: putCommand(1, 1, putReq{Key: big, Value: []byte("v")})},
		{name: "value 1 MiB", req: putCommand(1, 1, putReq{Key: []byte("k"), Value: bytes.Repeat([]byte("x"), 1<<20)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.req
			}
			fast, ok := encodePutFast(cmdRequest, tt.req)
			if !ok {
				t.Fatal("encodePutFast refused a plain Put")
			}
			if len(fast) != cap(fast) {
				t.Errorf("encoding has len %d, cap %d; want an exact-size slice", len(fast), cap(fast))
			}
			ref, err := encodeCommandReflect(cmdRequest, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fast, ref) {
				t.Fatalf("hand encoding differs from the reflective one:\n got %x\nwant %x", head(fast), head(ref))
			}
			viaCommand, err := encodeCommand(cmdRequest, tt.req)
			if err != nil || !bytes.Equal(viaCommand, ref) {
				t.Fatalf("encodeCommand = %x, %v; want %x", head(viaCommand), err, head(ref))
			}

			got, err := decodeCommandReflect(fast)
			if err != nil {
				t.Fatalf("reflective decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("reflective decode: got %s, want %s", describe(got), describe(want))
			}
			if _, ok := decodeRequestFast(fast[1:]); !ok {
				t.Error("the hand decoder refused the hand encoder's output")
			}
			got, err = decodeCommand(fast)
			if err != nil {
				t.Fatalf("decodeCommand: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decodeCommand: got %s, want %s", describe(got), describe(want))
			}
		})
	}
}

// TestCommandFastKeyValueLayout checks that a decoded key and value are
// sub-slices of the command (no copy) that cannot grow into it: appending
// to either changes neither the other nor the command.
func TestCommandFastKeyValueLayout(t *testing.T) {
	cmd, err := encodeCommand(cmdRequest, putCommand(1, 1, putReq{Key: []byte("key"), Value: []byte("value")}))
	if err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(cmd)
	req, err := decodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	inCmd := func(b []byte) bool {
		return len(b) > 0 && &b[0] == &cmd[bytes.Index(cmd, b)]
	}
	if !inCmd(req.Put.Key) || !inCmd(req.Put.Value) {
		t.Errorf("got key and value copied out of the command, want sub-slices of it")
	}
	_ = append(req.Put.Key, 'X')
	_ = append(req.Put.Value, 'Y')
	if got := string(req.Put.Value); got != "value" {
		t.Errorf("after appending to the key, value = %q, want %q", got, "value")
	}
	if !bytes.Equal(cmd, orig) {
		t.Errorf("after appending to the key and value, got command %x, want %x unchanged", cmd, orig)
	}
}

// TestCommandFastNonPutReflective checks that requests other than a plain
// Put take the reflective encoder and still round-trip.
func TestCommandFastNonPutReflective(t *testing.T) {
	tests := []struct {
		name string
		req  *request
	}{
		{name: "delete", req: &request{Origin: 1, Seq: 2, Kind: reqDelete, Delete: &deleteReq{Key: []byte("a"), End: []byte("b"), PrevKV: true}}},
		{name: "txn", req: &request{Origin: 1, Seq: 3, Kind: reqTxn, Txn: &txnReq{
			Compare: []compareReq{{Target: uint8(CompareValue), Key: []byte("k"), Value: []byte("v")}},
			Success: []requestOp{{Put: &putReq{Key: []byte("k"), Value: []byte("w")}}},
			Failure: []requestOp{{Range: &rangeReq{Key: []byte("k")}}},
		}}},
		{name: "noop", req: &request{Kind: reqNoop}},
		{name: "compact", req: &request{Kind: reqCompact, Compact: 9}},
		{name: "lease grant", req: &request{Origin: 1, Seq: 4, Kind: reqLeaseGrant, LeaseTTL: 10}},
		{name: "lease checkpoint", req: &request{Kind: reqLeaseCheckpoint, LeaseCheckpoints: []leaseCheckpoint{{ID: 1, RemainingMs: 5, RenewIndex: 2}}}},
		{name: "lease expire", req: &request{Kind: reqLeaseExpire, LeaseExpire: []leaseExpiry{{ID: 1, RenewIndex: 3}}}},
		{name: "put with lease id set", req: &request{Kind: reqPut, LeaseID: 1, Put: &putReq{Key: []byte("k")}}},
		{name: "put with compact set", req: &request{Kind: reqPut, Compact: 1, Put: &putReq{Key: []byte("k")}}},
		{name: "put kind without put", req: &request{Origin: 1, Seq: 5, Kind: reqPut}},
		{name: "put under another kind", req: &request{Origin: 1, Seq: 6, Kind: reqDelete, Put: &putReq{Key: []byte("k")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, ok := encodePutFast(cmdRequest, tt.req); ok {
				t.Fatalf("encodePutFast took a non-plain-Put request: %x", out)
			}
			got, err := encodeCommand(cmdRequest, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := encodeCommandReflect(cmdRequest, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encodeCommand = %x, want %x", got, want)
			}
			dec, err := decodeCommand(got)
			if err != nil {
				t.Fatalf("decodeCommand: %v", err)
			}
			if !reflect.DeepEqual(dec, tt.req) {
				t.Errorf("decodeCommand: got %s, want %s", describe(dec), describe(tt.req))
			}
		})
	}
}

// msgpack building blocks for hand-made commands.
var (
	mkO  = []byte{0xa1, 'o'}
	mkQ  = []byte{0xa1, 'q'}
	mkK  = []byte{0xa1, 'k'}
	mkP  = []byte{0xa1, 'p'}
	mkV  = []byte{0xa1, 'v'}
	mkL  = []byte{0xa1, 'l'}
	mkIV = []byte{0xa2, 'i', 'v'}
	mkIL = []byte{0xa2, 'i', 'l'}
)

// cmdOf returns a cmdRequest command whose body is the concatenation of
// parts.
func cmdOf(parts ...[]byte) []byte {
	return append([]byte{cmdRequest}, bytes.Join(parts, nil)...)
}

// handMadeCommands returns edge-case commands, and whether the hand decoder
// is expected to decode each itself (true) or leave it to the reflective
// decoder (false).
func handMadeCommands() []struct {
	name string
	cmd  []byte
	fast bool
} {
	b := func(x ...byte) []byte { return x }
	return []struct {
		name string
		cmd  []byte
		fast bool
	}{
		{"minimal put", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xa1, 'x')), true},
		{"key as fixstr", cmdOf(b(0x82), mkK, b(1), mkP, b(0x82), mkK, b(0xa3, 'a', 'b', 'c'), mkV, b(0xa1, 'z')), true},
		{"key as str8", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xd9, 2, 'a', 'b')), true},
		{"key as str16", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xda, 0, 2, 'a', 'b')), true},
		{"key as str32", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xdb, 0, 0, 0, 2, 'a', 'b')), true},
		{"key as bin16", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xc5, 0, 2, 'a', 'b')), true},
		{"key as bin32", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xc6, 0, 0, 0, 2, 'a', 'b')), true},
		{"empty bin key", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xc4, 0)), true},
		{"empty fixstr key", cmdOf(b(0x82), mkK, b(1), mkP, b(0x81), mkK, b(0xa0)), true},
		{"empty bin value", cmdOf(b(0x82), mkK, b(1), mkP, b(0x82), mkK, b(0xa1, 'k'), mkV, b(0xc4, 0)), true},
		{"empty key and value", cmdOf(b(0x82), mkK, b(1), mkP, b(0x82), mkK, b(0xc4, 0), mkV, b(0xa0)), true},
		{"nil key and value", cmdOf(b(0x82), mkK, b(1), mkP, b(0x82), mkK, b(0xc0), mkV, b(0xc0)), true},
		{"nil key, empty value", cmdOf(b(0x82), mkK, b(1), mkP, b(0x82), mkK, b(0xc0), mkV, b(0xc4, 0)), true},
		{"value before key", cmdOf(b(0x82), mkP, b(0x82), mkV, b(0xa1, 'v'), mkK, b(0xa1, 'k'), mkK, b(1)), true},
		{"nil put", cmdOf(b(0x82), mkK, b(1), mkP, b(0xc0)), true},
		{"empty put map", cmdOf(b(0x82), mkK, b(1), mkP, b(0x80)), true},
		{"empty request map", cmdOf(b(0x80)), true},
		{"kind only", cmdOf(b(0x81), mkK, b(5)), true},
		{"nil ints and bools", cmdOf(b(0x84), mkO, b(0xc0), mkQ, b(0xc0), mkK, b(0xc0), mkP,
			b(0x85), mkK, b(0xc0), mkL, b(0xc0), mkP, b(0xc0), mkIV, b(0xc0), mkIL, b(0xc0)), true},
		{"false bools", cmdOf(b(0x81), mkP, b(0x83), mkP, b(0xc2), mkIV, b(0xc2), mkIL, b(0xc2)), true},
		{"wide ints", cmdOf(b(0x84), mkO, b(0xcf, 0, 0, 0, 0, 0, 0, 0, 1), mkQ, b(0xd3, 0, 0, 0, 0, 0, 0, 0, 2),
			mkK, b(0xce, 0, 0, 0, 1), mkP, b(0x82), mkK, b(0xa1, 'k'), mkL, b(0xcd, 0, 5)), true},
		{"negative uint fields", cmdOf(b(0x83), mkO, b(0xff), mkQ, b(0xd0, 0x80), mkK, b(0xd1, 0xff, 0xfe)), true},
		{"int32 and int16 origin", cmdOf(b(0x82), mkO, b(0xd2, 0x80, 0, 0, 0), mkQ, b(0xd1, 0x7f, 0xff)), true},
		{"kind truncated to uint8", cmdOf(b(0x81), mkK, b(0xcd, 0x01, 0x01)), true},
		{"lease uint64 above max int64", cmdOf(b(0x81), mkP, b(0x82), mkK, b(0xa1, 'k'), mkL, b(0xcf, 0x80, 0, 0, 0, 0, 0, 0, 1)), true},
		{"lease negative fixint", cmdOf(b(0x81), mkP, b(0x82), mkK, b(0xa1, 'k'), mkL, b(0xe0)), true},
		{"lease uint32", cmdOf(b(0x81), mkP, b(0x82), mkK, b(0xa1, 'k'), mkL, b(0xce, 0xff, 0xff, 0xff, 0xff)), true},
		{"lease int8", cmdOf(b(0x81), mkP, b(0x82), mkK, b(0xa1, 'k'), mkL, b(0xd0, 0x85)), true},

		{"duplicate origin", cmdOf(b(0x83), mkO, b(1), mkO, b(2), mkK, b(1)), false},
		{"duplicate kind", cmdOf(b(0x82), mkK, b(1), mkK, b(2)), false},
		{"duplicate put merges", cmdOf(b(0x82), mkP, b(0x82), mkK, b(0xa1, 'a'), mkV, b(0xa1, 'b'), mkP, b(0x81), mkK, b(0xa1, 'c')), false},
		{"duplicate put, then nil", cmdOf(b(0x82), mkP, b(0x81), mkK, b(0xa1, 'a'), mkP, b(0xc0)), false},
		{"duplicate put key", cmdOf(b(0x81), mkP, b(0x82), mkK, b(0xa3, 'l', 'o', 'n'), mkK, b(0xa1, 's')), false},
		{"duplicate put value, then empty", cmdOf(b(0x81), mkP, b(0x82), mkV, b(0xa1, 'v'), mkV, b(0xa0)), false},
		{"unknown top-level key", cmdOf(b(0x82), mkK, b(1), b(0xa1, 'x'), b(1)), false},
		{"unknown put key", cmdOf(b(0x81), mkP, b(0x82), mkK, b(0xa1, 'k'), b(0xa1, 'x'), b(0x90)), false},
		{"delete key", cmdOf(b(0x82), mkK, b(2), b(0xa1, 'd'), b(0x81), mkK, b(0xa1, 'k')), false},
		{"key name as str8", cmdOf(b(0x81), b(0xd9, 1, 'k'), b(1)), false},
		{"key name as bin8", cmdOf(b(0x81), b(0xc4, 1, 'k'), b(1)), false},
		{"key name nil", cmdOf(b(0x81), b(0xc0), b(1)), false},
		{"key name int", cmdOf(b(0x81), b(1), b(1)), false},
		{"top-level nil", cmdOf(b(0xc0)), false},
		{"top-level empty array", cmdOf(b(0x90)), false},
		{"top-level array", cmdOf(b(0x9b, 1, 2, 1, 0xc0, 0xc0, 0xc0, 0, 0, 0, 0xc0, 0xc0)), false},
		{"top-level map16", cmdOf(b(0xde, 0, 1), mkK, b(1)), false},
		{"top-level int", cmdOf(b(1)), false},
		{"put as map16", cmdOf(b(0x81), mkP, b(0xde, 0, 1), mkK, b(0xa1, 'k')), false},
		{"put as array", cmdOf(b(0x81), mkP, b(0x91, 0xa1, 'k')), false},
		{"put as int", cmdOf(b(0x81), mkP, b(1)), false},
		{"origin as str", cmdOf(b(0x81), mkO, b(0xa1, '1')), false},
		{"origin as float", cmdOf(b(0x81), mkO, b(0xca, 0, 0, 0, 0)), false},
		{"origin as bool", cmdOf(b(0x81), mkO, b(0xc3)), false},
		{"kind as str", cmdOf(b(0x81), mkK, b(0xa0)), false},
		{"lease as str", cmdOf(b(0x81), mkP, b(0x81), mkL, b(0xa0)), false},
		{"prev kv as int", cmdOf(b(0x81), mkP, b(0x81), mkP, b(1)), false},
		{"key as int", cmdOf(b(0x81), mkP, b(0x81), mkK, b(1)), false},
		{"key as array", cmdOf(b(0x81), mkP, b(0x81), mkK, b(0x90)), false},
		{"key as ext", cmdOf(b(0x81), mkP, b(0x81), mkK, b(0xd4, 1, 0)), false},
		{"timestamp value", cmdOf(b(0x81), mkO, b(0xd6, 0xff, 0, 0, 0, 1)), false},
		{"trailing byte", cmdOf(b(0x81), mkK, b(1), b(0)), false},
		{"truncated", cmdOf(b(0x82), mkK, b(1), mkP), false},
		{"hostile bin32", cmdOf(b(0x81), mkV, b(0xc6, 0xff, 0xff, 0xff, 0xff)), false},
		{"reserved byte", cmdOf(b(0x81), mkK, b(0xc1)), false},
		{"one byte", []byte{cmdRequest}, false},
		{"empty", nil, false},
		{"batch type", []byte{cmdBatch, 0x80}, false},
		{"unknown type", []byte{9, 0x80}, false},
	}
}

// TestCommandFastHandMade checks edge-case encodings: both decoders agree on
// every one, and the hand decoder takes exactly those it is meant to.
func TestCommandFastHandMade(t *testing.T) {
	for _, tt := range handMadeCommands() {
		t.Run(tt.name, func(t *testing.T) {
			compareDecoders(t, tt.cmd)
			if len(tt.cmd) < 2 || tt.cmd[0] != cmdRequest {
				return
			}
			if _, ok := decodeRequestFast(tt.cmd[1:]); ok != tt.fast {
				t.Errorf("hand decoder took it: got %v, want %v", ok, tt.fast)
			}
		})
	}
}

// TestCommandFastHandMadeValues pins a few decoded values that depend on
// the reflective decoder's conventions, so the hand decoder's match is not
// only relative.
func TestCommandFastHandMadeValues(t *testing.T) {
	byName := map[string][]byte{}
	for _, c := range handMadeCommands() {
		byName[c.name] = c.cmd
	}
	tests := []struct {
		name string
		want *request
	}{
		{"empty bin key", &request{Kind: 1, Put: &putReq{Key: []byte{}}}},
		{"nil key, empty value", &request{Kind: 1, Put: &putReq{Value: []byte{}}}},
		{"nil put", &request{Kind: 1}},
		{"empty put map", &request{Kind: 1, Put: &putReq{}}},
		{"negative uint fields", &request{Origin: math.MaxUint64, Seq: math.MaxUint64 - 127, Kind: 0xfe}},
		{"kind truncated to uint8", &request{Kind: 1}},
		{"lease uint64 above max int64", &request{Put: &putReq{Key: []byte("k"), Lease: math.MinInt64 + 1}}},
		{"lease int8", &request{Put: &putReq{Key: []byte("k"), Lease: -123}}},
		{"duplicate origin", &request{Origin: 2, Kind: 1}},
		{"duplicate put merges", &request{Put: &putReq{Key: []byte("c"), Value: []byte("b")}}},
		{"top-level nil", &request{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, ok := byName[tt.name]
			if !ok {
				t.Fatalf("no hand-made command %q", tt.name)
			}
			got, err := decodeCommand(cmd)
			if err != nil {
				t.Fatalf("decodeCommand: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %s, want %s", describe(got), describe(tt.want))
			}
		})
	}
}

// compareDecoders fails t unless decodeCommand and the reflective reference
// agree on b: same error text or the same value; and, when b decodes to a
// plain Put, unless encodeCommand re-encodes it as the reflective encoder
// does.
func compareDecoders(t *testing.T, b []byte) {
	t.Helper()
	in := bytes.Clone(b)
	got, gotErr := decodeCommand(b)
	want, wantErr := decodeCommandReflect(b)
	if !bytes.Equal(b, in) {
		t.Fatalf("decoding modified its input")
	}
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("input %x: decodeCommand error %v, reflective error %v", head(b), gotErr, wantErr)
	}
	if gotErr != nil {
		if gotErr.Error() != wantErr.Error() {
			t.Fatalf("input %x: decodeCommand error %q, reflective error %q", head(b), gotErr, wantErr)
		}
		if !errors.Is(gotErr, ErrCorrupt) {
			t.Fatalf("input %x: error %v does not wrap ErrCorrupt", head(b), gotErr)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %x: decodeCommand = %s, reflective = %s", head(b), describe(got), describe(want))
	}
	enc, err := encodeCommand(cmdRequest, got)
	if err != nil {
		return // not encodable either way; the reflective encoder's business
	}
	ref, err := encodeCommandReflect(cmdRequest, got)
	if err != nil || !bytes.Equal(enc, ref) {
		t.Fatalf("request %s: encodeCommand = %x, reflective = %x (%v)", describe(got), head(enc), head(ref), err)
	}
}

// FuzzDecodeCommandFast checks that decodeCommand, with its hand decoder,
// agrees with the reflective decoder on arbitrary bytes: same error or the
// same request; and that re-encoding a decoded request gives the reflective
// encoder's bytes.
//
//	go test -run '^$' -fuzz '^FuzzDecodeCommandFast$' -fuzztime 60s .
func FuzzDecodeCommandFast(f *testing.F) {
	seeds := []*request{
		putCommand(1, 1, putReq{Key: []byte("key-000123"), Value: bytes.Repeat([]byte{0}, 256)}),
		putCommand(math.MaxUint64, 1<<40, putReq{Key: []byte{0, 0xff}, Lease: -5, PrevKV: true, IgnoreValue: true, IgnoreLease: true}),
		putCommand(0, 0, putReq{Key: []byte{}, Value: bytes.Repeat([]byte("v"), 300), Lease: 1 << 33}),
		{Kind: reqDelete, Origin: 3, Seq: 4, Delete: &deleteReq{Key: []byte("a"), End: []byte{0}, PrevKV: true}},
		{Kind: reqTxn, Txn: &txnReq{
			Compare: []compareReq{{Target: uint8(CompareValue), Key: []byte("k"), Value: []byte("v")}},
			Success: []requestOp{{Put: &putReq{Key: []byte("k"), Value: []byte("w")}}, {Range: &rangeReq{Key: []byte("k")}}},
			Failure: []requestOp{{Txn: &txnReq{Success: []requestOp{{Delete: &deleteReq{Key: []byte("k")}}}}}},
		}},
		{Kind: reqCompact, Compact: 2},
		{Kind: reqNoop},
		{Kind: reqLeaseGrant, LeaseTTL: 10},
		{Kind: reqLeaseRevoke, LeaseID: 1},
		{Kind: reqLeaseRenew, LeaseID: 1 << 50},
		{Kind: reqLeaseCheckpoint, LeaseCheckpoints: []leaseCheckpoint{{ID: 1, RemainingMs: 5}}},
		{Kind: reqLeaseExpire, LeaseExpire: []leaseExpiry{{ID: 1, RenewIndex: 3}}},
		{Kind: reqPut, Origin: 1, Seq: 2, LeaseID: 7, Put: &putReq{Key: []byte("k")}},
	}
	for _, r := range seeds {
		b, err := encodeCommandReflect(cmdRequest, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range handMadeCommands() {
		f.Add(c.cmd)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		compareDecoders(t, b)
	})
}

// BenchmarkCommandReflect measures the reflective encoder and decoder that
// encodeCommand and decodeCommand used before the hand-written ones, on
// BenchmarkCommand's request, for comparison.
func BenchmarkCommandReflect(b *testing.B) {
	benchCodec(b, encodeCommandReflect, decodeCommandReflect)
}

// head returns at most the first 64 bytes of b, for messages.
func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// describe formats a request for messages, distinguishing nil from empty
// byte slices and showing at most 64 bytes of each.
func describe(r *request) string {
	if r == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("{o:%d q:%d k:%d d:%v t:%v c:%d lt:%d li:%d lc:%v le:%v", r.Origin, r.Seq, r.Kind,
		r.Delete, r.Txn, r.Compact, r.LeaseTTL, r.LeaseID, r.LeaseCheckpoints, r.LeaseExpire)
	if p := r.Put; p != nil {
		s += fmt.Sprintf(" p:{k:%s v:%s l:%d p:%v iv:%v il:%v}", describeBytes(p.Key), describeBytes(p.Value),
			p.Lease, p.PrevKV, p.IgnoreValue, p.IgnoreLease)
	}
	return s + "}"
}

// describeBytes formats b for messages: nil, empty, or up to 64 bytes in hex
// with the length.
func describeBytes(b []byte) string {
	switch {
	case b == nil:
		return "nil"
	case len(b) == 0:
		return "empty"
	}
	return fmt.Sprintf("%x(len %d)", head(b), len(b))
}

// TestFastPathKnowsEveryField fails when request or putReq gains a field:
// putFastEncodable, encodePutFast and decodeRequestFast must then learn it
// (or a new Put field would be dropped on the fast path).
func TestFastPathKnowsEveryField(t *testing.T) {
	for _, tc := range []struct {
		typ  reflect.Type
		want string
	}{
		{reflect.TypeOf(request{}), "Origin Seq Kind Put Delete Txn Compact LeaseTTL LeaseID LeaseCheckpoints LeaseExpire"},
		{reflect.TypeOf(putReq{}), "Key Value Lease PrevKV IgnoreValue IgnoreLease"},
	} {
		t.Run(tc.typ.Name(), func(t *testing.T) {
			var names []string
			for i := 0; i < tc.typ.NumField(); i++ {
				names = append(names, tc.typ.Field(i).Name)
			}
			if got := strings.Join(names, " "); got != tc.want {
				t.Errorf("fields: got %q, want %q; update command_fast.go for the change", got, tc.want)
			}
		})
	}
}
