// Package msgpackcheck validates the framing of MessagePack bytes before they
// are handed to a decoder.
//
// Decoders trust declared lengths: vmihailenco/msgpack/v5 v5.4.1 dies with a
// fatal out-of-memory error on the 8 bytes 81 a1 76 c6 ff ff ff ff (a map
// whose value is a bin32 declaring 4 GiB), and deep nesting can exhaust the
// goroutine stack. embedkv runs [Check] on every msgpack value that comes
// from the Raft log, a snapshot, the network or a backup before decoding it,
// so that whatever version of the decoder an application links, every length
// it reads is backed by real bytes and nesting is bounded.
package msgpackcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every error Check returns.
var ErrMalformed = errors.New("msgpack: malformed or hostile input")

// inlineDepth is how many levels of nesting Check tracks without allocating.
const inlineDepth = 32

// Check walks exactly one msgpack value that must span all of b, and
// returns nil if its framing is sound. Otherwise it returns an error that
// wraps ErrMalformed and gives the offset of the offending byte. It fails if
//
//   - b ends before the value does (truncation at any byte);
//   - a str, bin or ext declares more bytes than remain in b;
//   - an array or map declares more elements than could fit in the bytes
//     remaining: every element needs at least one byte, a map entry two;
//     this is checked against all elements still pending in enclosing
//     containers too, so the sum of declared counts never exceeds len(b);
//   - the value nests deeper than maxDepth;
//   - the reserved byte 0xc1 appears where a value should start;
//   - a timestamp (ext type -1) is not 4, 8 or 12 bytes long, or its
//     nanoseconds exceed 999999999;
//   - bytes remain after the value.
//
// Depth counts containers: a scalar (nil, bool, number, str, bin, ext) has
// depth 0, and an array or map has depth 1 plus the largest depth of its
// elements, so an empty array has depth 1 and [[1]] has depth 2. A value of
// depth d passes with maxDepth >= d and fails with maxDepth < d. A negative
// maxDepth is treated as 0. Ext payloads are opaque and do not count.
//
// Check is iterative, runs in O(len(b)) time and does not allocate unless
// the value nests deeper than 32 levels or is malformed.
func Check(b []byte, maxDepth int) error {
	maxDepth = max(maxDepth, 0)
	// stack[i] is the number of elements still to start in the container
	// at nesting level i+1.
	var inline [inlineDepth]uint64
	stack := inline[:0]
	// pending is the number of values still to start: the top-level one,
	// then all elements declared by open containers and not yet begun.
	pending := uint64(1)
	pos := 0
	for pending > 0 {
		if pos >= len(b) {
			return malformed(pos, "unexpected end of input")
		}
		start := pos
		c := b[pos]
		pos++
		pending--
		if len(stack) > 0 {
			stack[len(stack)-1]--
		}

		var (
			container bool
			children  uint64 // elements of a container; 2 per map entry
			skip      uint64 // payload bytes following the header
			err       error
		)
		switch {
		case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		case c <= 0x8f: // fixmap
			container, children = true, 2*uint64(c&0x0f)
		case c <= 0x9f: // fixarray
			container, children = true, uint64(c&0x0f)
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		case c == 0xc0, c == 0xc2, c == 0xc3: // nil, false, true
		case c == 0xc1:
			return malformed(start, "reserved byte 0xc1")
		case c == 0xc4, c == 0xd9: // bin8, str8
			skip, pos, err = length(b, pos, 1)
		case c == 0xc5, c == 0xda: // bin16, str16
			skip, pos, err = length(b, pos, 2)
		case c == 0xc6, c == 0xdb: // bin32, str32
			skip, pos, err = length(b, pos, 4)
		case c >= 0xc7 && c <= 0xc9: // ext8, ext16, ext32: length, type, data
			skip, pos, err = length(b, pos, 1<<(c-0xc7))
			if err == nil {
				pos, err = extType(b, pos, skip)
			}
		case c == 0xca: // float32
			skip = 4
		case c == 0xcb: // float64
			skip = 8
		case c >= 0xcc && c <= 0xcf: // uint8..uint64
			skip = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3: // int8..int64
			skip = 1 << (c - 0xd0)
		case c >= 0xd4 && c <= 0xd8: // fixext1..fixext16: type, data
			skip = 1 << (c - 0xd4)
			pos, err = extType(b, pos, skip)
		case c == 0xdc: // array16
			children, pos, err = length(b, pos, 2)
			container = true
		case c == 0xdd: // array32
			children, pos, err = length(b, pos, 4)
			container = true
		case c == 0xde: // map16
			children, pos, err = length(b, pos, 2)
			container, children = true, 2*children
		default: // 0xdf, map32
			children, pos, err = length(b, pos, 4)
			container, children = true, 2*children
		}
		if err != nil {
			return err
		}
		left := uint64(len(b) - pos)

		if !container {
			if skip > left {
				return malformed(start, fmt.Sprintf("0x%02x declares %d bytes, %d remain", c, skip, left))
			}
			pos += int(skip)
		} else {
			if len(stack)+1 > maxDepth {
				return malformed(start, fmt.Sprintf("nesting deeper than maxDepth %d", maxDepth))
			}
			// Each pending value needs at least one byte.
			if pending+children > left {
				return malformed(start, fmt.Sprintf("0x%02x declares %d elements, %d bytes remain for %d pending values",
					c, children, left, pending+children))
			}
			if children > 0 {
				stack = append(stack, children)
				pending += children
			}
		}
		// Close every container whose last element just ended.
		for len(stack) > 0 && stack[len(stack)-1] == 0 {
			stack = stack[:len(stack)-1]
		}
	}
	if pos != len(b) {
		return malformed(pos, fmt.Sprintf("%d bytes after the value", len(b)-pos))
	}
	return nil
}

// length reads a size-byte big-endian length at pos and returns it and the
// position after it.
func length(b []byte, pos, size int) (uint64, int, error) {
	if len(b)-pos < size {
		return 0, pos, malformed(pos, "truncated length")
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(b[pos])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b[pos:]))
	default:
		n = uint64(binary.BigEndian.Uint32(b[pos:]))
	}
	return n, pos + size, nil
}

// timestampType is the ext type of msgpack timestamps.
const timestampType = -1

// extType reads the type byte of an ext whose data is n bytes long and
// starts after it, validates a timestamp's data, and returns the position
// after the type byte. The data length itself is checked by the caller.
func extType(b []byte, pos int, n uint64) (int, error) {
	if pos >= len(b) {
		return pos, malformed(pos, "truncated ext type")
	}
	if int8(b[pos]) != timestampType {
		return pos + 1, nil
	}
	data := b[pos+1:]
	if uint64(len(data)) < n {
		return pos, malformed(pos, fmt.Sprintf("timestamp declares %d bytes, %d remain", n, len(data)))
	}
	var nsec uint64
	switch n {
	case 4: // seconds in 32 bits
	case 8: // nanoseconds in 30 bits, seconds in 34
		nsec = binary.BigEndian.Uint64(data) >> 34
	case 12: // nanoseconds in 32 bits, seconds in 64
		nsec = uint64(binary.BigEndian.Uint32(data))
	default:
		return pos, malformed(pos, fmt.Sprintf("timestamp of %d bytes, want 4, 8 or 12", n))
	}
	if nsec > 999_999_999 {
		return pos, malformed(pos, fmt.Sprintf("timestamp nanoseconds %d out of range", nsec))
	}
	return pos + 1, nil
}

// malformed returns an error wrapping ErrMalformed at offset off. It is only
// called on failure, so its allocations never touch the common path.
func malformed(off int, why string) error {
	return fmt.Errorf("%w: offset %d: %s", ErrMalformed, off, why)
}
