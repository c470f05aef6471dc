// Package snapshot implements a framed, checksummed stream of opaque records.
//
// It is the container format of embedkv's Raft FSM snapshots (written to a
// raft.SnapshotSink, read back in FSM.Restore, possibly shipped to a follower
// over the network) and of user backups. The package knows nothing about the
// content of the records: it only guarantees that a stream is read back
// exactly as written, or that reading it fails.
//
// # Format
//
// All integers are big-endian. CRC means CRC-32C (Castagnoli).
//
//	stream  = header *record trailer
//	header  = magic[8] formatVersion:u32 version:u32
//	          kindLen:u8 kind[kindLen] metaLen:u32 meta[metaLen]
//	          headerCRC:u32                 ; CRC of the header bytes before it
//	record  = 'R' len:u32 payload[len] recordCRC:u32
//	                                        ; CRC of 'R', len and payload
//	trailer = 'T' count:u64 total:u64 streamCRC:u32
//	                                        ; count = number of records,
//	                                        ; total = sum of payload lengths,
//	                                        ; CRC of every stream byte before it
//
// The magic is "\x89EKVSNAP" and formatVersion is [FormatVersion]. Nothing may
// follow the trailer. The encoding is canonical: a stream that reads back
// without error is byte for byte what a [Writer] produces for the same header
// and records.
//
// Every record carries its own checksum, so [Reader.Next] never hands out a
// damaged record; the trailer proves that no record was lost, added or
// reordered and that the stream was not cut short. A [Reader] holds one
// record at a time, so streams of any total size (the count and total are
// 64-bit) are read in memory proportional to the largest record.
package snapshot

import (
	"errors"
	"hash/crc32"
)

// Errors reported by [NewReader] and [Reader.Next]. Match them with errors.Is:
// they are wrapped with detail (what was wrong, at which offset).
var (
	// ErrCorrupt is wrapped by every failure to decode a stream: bad magic,
	// checksum mismatch, an impossible length, truncation at any byte, a
	// missing or inconsistent trailer, trailing data after the trailer.
	ErrCorrupt = errors.New("snapshot: corrupt or truncated data")
	// ErrVersion is returned by NewReader when the stream's format version is
	// not one this package can read.
	ErrVersion = errors.New("snapshot: unsupported format version")
	// ErrKind is returned by NewReader when the stream's (valid) header names
	// a different kind than the one asked for.
	ErrKind = errors.New("snapshot: unexpected kind")
)

// Limits of the format.
const (
	// FormatVersion is the version of the framing written by this package and
	// the only one NewReader accepts. It is independent of Header.Version.
	FormatVersion uint32 = 1
	// MaxRecord is the largest record, in bytes, that a Writer accepts and a
	// Reader can be asked to read.
	MaxRecord = 64 << 20
	// MaxKind is the longest Header.Kind, in bytes.
	MaxKind = 255
	// MaxMeta is the largest Header.Meta, in bytes.
	MaxMeta = 64 << 10
)

// Header describes a stream. It is written once, at the start, by NewWriter
// and returned by NewReader.
type Header struct {
	// Kind names what the records contain, e.g. "embedkv-fsm". It must be
	// 1 to MaxKind bytes long. NewReader checks it against the kind expected.
	Kind string
	// Version is the version of the records' content, defined by whoever
	// owns Kind. This package stores it and does not interpret it.
	Version uint32
	// Meta is small opaque data (at most MaxMeta bytes) stored in the header,
	// e.g. the Raft index and term of a snapshot. An empty Meta reads back
	// as nil.
	Meta []byte
}

// Frame layout.
const (
	magic           = "\x89EKVSNAP"
	tagRecord  byte = 'R'
	tagTrailer byte = 'T'

	// fixedHeaderSize is magic, formatVersion, version and kindLen.
	fixedHeaderSize = len(magic) + 4 + 4 + 1
	// recordHeaderSize is tag and len.
	recordHeaderSize = 1 + 4
	// trailerBodySize is count and total.
	trailerBodySize = 8 + 8
	crcSize         = 4

	// bufferSize is the size of the bufio buffers of Writer and Reader.
	bufferSize = 64 << 10
	// readChunk is the most a Reader allocates ahead of the bytes it has
	// actually received when a record is larger than its current buffer.
	readChunk = 64 << 10
)

// castagnoli returns the CRC-32C table. crc32.MakeTable caches the
// Castagnoli table internally, so this does not allocate after first use.
func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }
