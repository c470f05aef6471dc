package store

import "math"

// Hand-written msgpack for the hot path: a plain Put request.
//
// The reflective msgpack encoder and decoder cost a dozen allocations and
// most of a microsecond per command. A plain Put (a request whose only
// non-zero fields are Origin, Seq, Kind = reqPut and Put) is by far the most
// common command, so it is encoded and decoded here by hand:
//
//   - encodePutFast writes exactly the bytes the reflective encoder (with
//     compact ints, fields in struct order, omitempty honoured) would write;
//     anything else is left to the reflective encoder.
//   - decodeRequestFast parses only the encodings it fully understands: a
//     fixmap of fixstr keys "o", "q", "k" and "p" (a nil or a fixmap of
//     "k", "v", "l", "p", "iv", "il"), each key at most once, with the value
//     types the reflective decoder accepts for the field. It reports !ok for
//     anything else (other keys, duplicate keys, other map or key encodings,
//     unexpected types) and the caller decodes the whole input reflectively,
//     so every input decodes to exactly what the reflective decoder gives.
//
// Both run after msgpackcheck.Check has validated the framing, but neither
// relies on it: every read is bounds-checked, and no input can make them
// panic.

// msgpack format bytes used below.
const (
	mpPosFixintMax = 0x7f
	mpFixmap       = 0x80
	mpFixstr       = 0xa0
	mpNil          = 0xc0
	mpFalse        = 0xc2
	mpTrue         = 0xc3
	mpBin8         = 0xc4
	mpBin16        = 0xc5
	mpBin32        = 0xc6
	mpUint8        = 0xcc
	mpUint16       = 0xcd
	mpUint32       = 0xce
	mpUint64       = 0xcf
	mpInt8         = 0xd0
	mpInt16        = 0xd1
	mpInt32        = 0xd2
	mpInt64        = 0xd3
	mpStr8         = 0xd9
	mpStr16        = 0xda
	mpStr32        = 0xdb
	mpNegFixintMin = 0xe0
)

// putFastEncodable reports whether req is a plain Put that encodePutFast
// handles: Kind reqPut, a non-nil Put, and every other field except Origin
// and Seq zero (empty slices count as zero, as omitempty omits them).
func putFastEncodable(req *request) bool {
	if req == nil || req.Kind != reqPut || req.Put == nil {
		return false
	}
	if req.Delete != nil || req.Txn != nil || req.Compact != 0 || req.LeaseTTL != 0 || req.LeaseID != 0 ||
		len(req.LeaseCheckpoints) != 0 || len(req.LeaseExpire) != 0 {
		return false
	}
	// Lengths beyond 32 bits cannot be framed; leave them to the
	// reflective encoder, whatever it does with them.
	return uint64(len(req.Put.Key)) <= math.MaxUint32 && uint64(len(req.Put.Value)) <= math.MaxUint32
}

// encodePutFast returns typ followed by the msgpack encoding of req, byte for
// byte what encode([]byte{typ}, req) returns, in one allocation of the exact
// size. It returns ok false, and nothing, if req is not a plain Put (see
// putFastEncodable).
func encodePutFast(typ byte, req *request) (out []byte, ok bool) {
	if !putFastEncodable(req) {
		return nil, false
	}
	p := req.Put
	out = make([]byte, 0, putCommandSize(req))
	out = append(out, typ)

	// request: fields in struct order, omitempty ones only when non-zero.
	n := byte(2) // "k" and "p" (non-nil here)
	if req.Origin != 0 {
		n++
	}
	if req.Seq != 0 {
		n++
	}
	out = append(out, mpFixmap|n)
	if req.Origin != 0 {
		out = append(out, mpFixstr|1, 'o')
		out = appendUintCompact(out, req.Origin)
	}
	if req.Seq != 0 {
		out = append(out, mpFixstr|1, 'q')
		out = appendUintCompact(out, req.Seq)
	}
	out = append(out, mpFixstr|1, 'k')
	out = appendUintCompact(out, uint64(req.Kind))
	out = append(out, mpFixstr|1, 'p')

	// putReq: Key always (nil encodes as nil), the rest when non-zero.
	n = 1
	if len(p.Value) != 0 {
		n++
	}
	if p.Lease != 0 {
		n++
	}
	if p.PrevKV {
		n++
	}
	if p.IgnoreValue {
		n++
	}
	if p.IgnoreLease {
		n++
	}
	out = append(out, mpFixmap|n)
	out = append(out, mpFixstr|1, 'k')
	out = appendBytesField(out, p.Key)
	if len(p.Value) != 0 {
		out = append(out, mpFixstr|1, 'v')
		out = appendBytesField(out, p.Value)
	}
	if p.Lease != 0 {
		out = append(out, mpFixstr|1, 'l')
		out = appendIntCompact(out, p.Lease)
	}
	if p.PrevKV {
		out = append(out, mpFixstr|1, 'p', mpTrue)
	}
	if p.IgnoreValue {
		out = append(out, mpFixstr|2, 'i', 'v', mpTrue)
	}
	if p.IgnoreLease {
		out = append(out, mpFixstr|2, 'i', 'l', mpTrue)
	}
	return out, true
}

// putCommandSize returns the length of encodePutFast's output for req, a
// plain Put.
func putCommandSize(req *request) int {
	p := req.Put
	n := 1 + 1 // type byte, request fixmap
	if req.Origin != 0 {
		n += 2 + uintCompactSize(req.Origin)
	}
	if req.Seq != 0 {
		n += 2 + uintCompactSize(req.Seq)
	}
	n += 2 + uintCompactSize(uint64(req.Kind))
	n += 2 + 1 // "p", putReq fixmap
	n += 2 + bytesFieldSize(p.Key)
	if len(p.Value) != 0 {
		n += 2 + bytesFieldSize(p.Value)
	}
	if p.Lease != 0 {
		n += 2 + intCompactSize(p.Lease)
	}
	if p.PrevKV {
		n += 3
	}
	if p.IgnoreValue {
		n += 4
	}
	if p.IgnoreLease {
		n += 4
	}
	return n
}

// appendUintCompact appends v in the shortest msgpack unsigned form, as the
// msgpack encoder's EncodeUint does.
func appendUintCompact(b []byte, v uint64) []byte {
	switch {
	case v <= mpPosFixintMax:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, mpUint8, byte(v))
	case v <= math.MaxUint16:
		return append(b, mpUint16, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(b, mpUint32, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, mpUint64, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// uintCompactSize returns how many bytes appendUintCompact appends for v.
func uintCompactSize(v uint64) int {
	switch {
	case v <= mpPosFixintMax:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	}
	return 9
}

// appendIntCompact appends v in the shortest msgpack form, as the msgpack
// encoder's EncodeInt does: non-negative values as unsigned, negative ones
// as a negative fixint or the narrowest signed int.
func appendIntCompact(b []byte, v int64) []byte {
	u := uint64(v)
	switch {
	case v >= 0:
		return appendUintCompact(b, u)
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, mpInt8, byte(v))
	case v >= math.MinInt16:
		return append(b, mpInt16, byte(u>>8), byte(u))
	case v >= math.MinInt32:
		return append(b, mpInt32, byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
	return append(b, mpInt64, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32),
		byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
}

// intCompactSize returns how many bytes appendIntCompact appends for v.
func intCompactSize(v int64) int {
	switch {
	case v >= 0:
		return uintCompactSize(uint64(v))
	case v >= -32:
		return 1
	case v >= math.MinInt8:
		return 2
	case v >= math.MinInt16:
		return 3
	case v >= math.MinInt32:
		return 5
	}
	return 9
}

// appendBytesField appends v as the msgpack encoder encodes a []byte: nil
// as nil, anything else (empty included) as the narrowest bin. len(v) must
// fit in 32 bits.
func appendBytesField(b []byte, v []byte) []byte {
	if v == nil {
		return append(b, mpNil)
	}
	l := uint64(len(v))
	switch {
	case l <= math.MaxUint8:
		b = append(b, mpBin8, byte(l))
	case l <= math.MaxUint16:
		b = append(b, mpBin16, byte(l>>8), byte(l))
	default:
		b = append(b, mpBin32, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
	return append(b, v...)
}

// bytesFieldSize returns how many bytes appendBytesField appends for v.
func bytesFieldSize(v []byte) int {
	l := len(v)
	switch {
	case v == nil:
		return 1
	case l <= math.MaxUint8:
		return 2 + l
	case l <= math.MaxUint16:
		return 3 + l
	}
	return 5 + l
}

// Keys decodeRequestFast has seen, to refuse duplicates (the reflective
// decoder merges a repeated "p" into the same putReq; that is left to it).
const (
	seenOrigin uint16 = 1 << iota
	seenSeq
	seenKind
	seenPut
	seenPutKey
	seenPutValue
	seenPutLease
	seenPutPrevKV
	seenPutIgnoreValue
	seenPutIgnoreLease
)

// span is a str or bin value of the input: b[start:end], or a msgpack nil.
type span struct {
	start, end int
	isNil      bool
}

// parsedRequest is what decodeRequestFast read, before it allocates the
// result. Byte fields are spans of the input.
type parsedRequest struct {
	origin, seq uint64
	kind        reqKind
	hasPut      bool // "p" was a map, not nil or absent
	key, value  span // nil spans when absent
	lease       int64
	prevKV      bool
	ignoreValue bool
	ignoreLease bool
}

// putRequestBlock holds a decoded request and its putReq in one allocation.
type putRequestBlock struct {
	req request
	put putReq
}

// decodeRequestFast decodes body, the msgpack body of a cmdRequest command
// that msgpackcheck.Check accepted, if it is in the subset described at the
// top of this file. ok false means nothing was decoded and the caller must
// decode body reflectively. Key and Value alias body (see decodeCommand).
func decodeRequestFast(body []byte) (req *request, ok bool) {
	var pr parsedRequest
	pr.key.isNil, pr.value.isNil = true, true
	pos, ok := parseRequestMap(body, &pr)
	if !ok || pos != len(body) {
		return nil, false
	}
	return pr.build(body), true
}

// parseRequestMap parses the top-level request fixmap of b into pr and
// returns the position after it.
func parseRequestMap(b []byte, pr *parsedRequest) (int, bool) {
	if len(b) == 0 || b[0]&0xf0 != mpFixmap {
		return 0, false
	}
	return walkFixmap(b, 1, int(b[0]&0x0f), func(key []byte, pos int) (bit uint16, next int, ok bool) {
		var v int64
		switch string(key) {
		case "o":
			v, next, ok = readInteger(b, pos)
			pr.origin = uint64(v)
			return seenOrigin, next, ok
		case "q":
			v, next, ok = readInteger(b, pos)
			pr.seq = uint64(v)
			return seenSeq, next, ok
		case "k":
			v, next, ok = readInteger(b, pos)
			pr.kind = reqKind(v) // truncated, as reflect's SetUint does
			return seenKind, next, ok
		case "p":
			next, ok = parsePutMap(b, pos, pr)
			return seenPut, next, ok
		}
		return 0, 0, false
	})
}

// parsePutMap parses the value of the "p" key at b[pos:], a nil or a putReq
// fixmap, into pr and returns the position after it.
func parsePutMap(b []byte, pos int, pr *parsedRequest) (int, bool) {
	if pos >= len(b) {
		return 0, false
	}
	c := b[pos]
	pos++
	if c == mpNil {
		return pos, true
	}
	if c&0xf0 != mpFixmap {
		return 0, false
	}
	pr.hasPut = true
	return walkFixmap(b, pos, int(c&0x0f), func(key []byte, pos int) (bit uint16, next int, ok bool) {
		switch string(key) {
		case "k":
			pr.key, next, ok = readBytes(b, pos)
			return seenPutKey, next, ok
		case "v":
			pr.value, next, ok = readBytes(b, pos)
			return seenPutValue, next, ok
		case "l":
			pr.lease, next, ok = readInteger(b, pos)
			return seenPutLease, next, ok
		case "p":
			pr.prevKV, next, ok = readBool(b, pos)
			return seenPutPrevKV, next, ok
		case "iv":
			pr.ignoreValue, next, ok = readBool(b, pos)
			return seenPutIgnoreValue, next, ok
		case "il":
			pr.ignoreLease, next, ok = readBool(b, pos)
			return seenPutIgnoreLease, next, ok
		}
		return 0, 0, false
	})
}

// walkFixmap reads the n entries of a fixmap whose body starts at b[pos:]:
// each key must be a fixstr that field knows (it returns the key's bit, 0
// for an unknown key) and that appears once; field parses the value at pos
// and returns the position after it. It returns the position after the
// map.
func walkFixmap(b []byte, pos, n int, field func(key []byte, pos int) (bit uint16, next int, ok bool)) (int, bool) {
	var seen uint16
	for range n {
		key, next, ok := readFixstr(b, pos)
		if !ok {
			return 0, false
		}
		var bit uint16
		if bit, pos, ok = field(key, next); !ok || bit == 0 || seen&bit != 0 {
			return 0, false
		}
		seen |= bit
	}
	return pos, true
}

// build allocates the request pr describes: a Put with its request in one
// block. Key and Value are sub-slices of body, capacity-limited so that an
// append cannot write into body. Like the reflective decoder it gives a nil
// slice for a msgpack nil or an absent field and a non-nil empty one for an
// empty str or bin.
func (pr *parsedRequest) build(body []byte) *request {
	if !pr.hasPut {
		return &request{Origin: pr.origin, Seq: pr.seq, Kind: pr.kind}
	}
	blk := &putRequestBlock{
		req: request{Origin: pr.origin, Seq: pr.seq, Kind: pr.kind},
		put: putReq{Lease: pr.lease, PrevKV: pr.prevKV, IgnoreValue: pr.ignoreValue, IgnoreLease: pr.ignoreLease},
	}
	blk.req.Put = &blk.put
	if !pr.key.isNil {
		blk.put.Key = body[pr.key.start:pr.key.end:pr.key.end]
	}
	if !pr.value.isNil {
		blk.put.Value = body[pr.value.start:pr.value.end:pr.value.end]
	}
	return &blk.req
}

// readFixstr reads a fixstr at b[pos:] and returns its bytes (a sub-slice
// of b) and the position after it. Map keys in any other encoding are left
// to the reflective decoder.
func readFixstr(b []byte, pos int) ([]byte, int, bool) {
	if pos >= len(b) || b[pos]&0xe0 != mpFixstr {
		return nil, 0, false
	}
	l := int(b[pos] & 0x1f)
	pos++
	if l > len(b)-pos {
		return nil, 0, false
	}
	return b[pos : pos+l], pos + l, true
}

// readBytes reads a []byte field at b[pos:] as the reflective decoder does:
// nil, or a str or bin of any width. It returns the value's span and the
// position after it.
func readBytes(b []byte, pos int) (span, int, bool) {
	if pos >= len(b) {
		return span{}, 0, false
	}
	c := b[pos]
	pos++
	var l uint64
	switch {
	case c == mpNil:
		return span{isNil: true}, pos, true
	case c&0xe0 == mpFixstr:
		l = uint64(c & 0x1f)
	default:
		var width int
		switch c {
		case mpBin8, mpStr8:
			width = 1
		case mpBin16, mpStr16:
			width = 2
		case mpBin32, mpStr32:
			width = 4
		default:
			return span{}, 0, false
		}
		var ok bool
		if l, pos, ok = readBE(b, pos, width); !ok {
			return span{}, 0, false
		}
	}
	if l > uint64(len(b)-pos) {
		return span{}, 0, false
	}
	end := pos + int(l)
	return span{start: pos, end: end}, end, true
}

// readInteger reads nil (as 0) or a msgpack integer of any width at b[pos:]
// and returns its two's-complement value and the position after it. The
// msgpack decoder's uint64 and int64 readers agree bit for bit on every
// encoding (signed ones sign-extended, a uint64 above MaxInt64 wrapping),
// so unsigned fields take the value converted.
func readInteger(b []byte, pos int) (int64, int, bool) {
	if pos >= len(b) {
		return 0, 0, false
	}
	c := b[pos]
	pos++
	switch {
	case c <= mpPosFixintMax || c >= mpNegFixintMin:
		return int64(int8(c)), pos, true
	case c == mpNil:
		return 0, pos, true
	case c >= mpUint8 && c <= mpUint64:
		v, p, ok := readBE(b, pos, 1<<(c-mpUint8))
		return int64(v), p, ok
	case c >= mpInt8 && c <= mpInt64:
		size := 1 << (c - mpInt8)
		v, p, ok := readBE(b, pos, size)
		if !ok {
			return 0, 0, false
		}
		shift := 64 - 8*size // sign-extend from size bytes
		return int64(v<<shift) >> shift, p, true
	}
	return 0, 0, false
}

// readBool reads a bool field at b[pos:] as the reflective decoder does:
// nil is false.
func readBool(b []byte, pos int) (bool, int, bool) {
	if pos >= len(b) {
		return false, 0, false
	}
	switch b[pos] {
	case mpNil, mpFalse:
		return false, pos + 1, true
	case mpTrue:
		return true, pos + 1, true
	}
	return false, 0, false
}

// readBE reads a size-byte big-endian unsigned integer at b[pos:] and
// returns it and the position after it.
func readBE(b []byte, pos, size int) (uint64, int, bool) {
	if size > len(b)-pos {
		return 0, 0, false
	}
	var v uint64
	for _, x := range b[pos : pos+size] {
		v = v<<8 | uint64(x)
	}
	return v, pos + size, true
}
