package mvcc

import (
	"encoding/binary"
	"hash"
	"hash/crc32"
	"math"
)

// Snapshot format, version 1.
//
// Dump writes the state as a sequence of records; every record starts with
// a tag byte. Integers are unsigned varints (binary.AppendUvarint) except
// leases, which are signed (binary.AppendVarint); byte strings are a uvarint
// length followed by the bytes.
//
//	'H' header:  formatVersion=1, rev, compactRev
//	'B' base:    entries until the end of the record:
//	             key, value, createRev, modRev, version, lease
//	'E' events:  batches until the end of the record:
//	             rev, n, then n events
//	'T' trailer: baseCount, batchCount, eventCount, crc32c (4 bytes LE)
//
// Records come in that order (any number of B and E records, B before E).
// The base entries are the live keys at compactRev (the state every
// retained history item builds on), in strictly increasing key order. The
// event batches are every revision of the event log, consecutive and
// ending at rev; all later state is rebuilt by replaying them:
//
//   - A batch above compactRev is replayed through a WriteTxn, so its events
//     need only flags (bit 0: delete), the key, and for a put the value and
//     lease; versions, create/mod revisions and previous values are derived
//     and therefore consistent by construction.
//   - The batch at exactly compactRev (kept for watchers, but already part of
//     the base state) is stored in full: flags (bit 0: delete; bits 1-2: how
//     PrevKv is given: 0 none, 1 inline, 2 "the key's state earlier in this
//     batch"), key, for a put value and lease, and for an inline PrevKv its
//     value, createRev, modRev, version and lease. Load checks it against
//     the base state.
//
// The trailer's counts detect records lost at record boundaries; its CRC-32C
// covers every earlier record (its uvarint length, then its bytes) and
// detects corruption the structure cannot, such as a flipped value bit.
const (
	formatVersion = 1

	tagHeader  = 'H'
	tagBase    = 'B'
	tagEvents  = 'E'
	tagTrailer = 'T'

	flagDelete     = 1 << 0
	prevShift      = 1
	prevMask       = 3 << prevShift
	prevNone       = 0
	prevInline     = 1
	prevInBatch    = 2
	recordTarget   = 64 << 10 // records are flushed once they reach this size
	maxRevLoadable = math.MaxInt64 / 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// dumper accumulates records and emits them.
type dumper struct {
	emit func([]byte) error
	crc  hash.Hash32
	buf  []byte
	err  error
}

// begin starts a record with tag unless one with that tag is open.
func (d *dumper) begin(tag byte) {
	if len(d.buf) > 0 && d.buf[0] == tag {
		return
	}
	d.flush()
	d.buf = append(make([]byte, 0, 1024), tag)
}

// flush emits the open record, if any. The emitted slice is not reused.
func (d *dumper) flush() {
	if len(d.buf) == 0 || d.err != nil {
		d.buf = nil
		return
	}
	var l [binary.MaxVarintLen64]byte
	d.crc.Write(l[:binary.PutUvarint(l[:], uint64(len(d.buf)))])
	d.crc.Write(d.buf)
	d.err = d.emit(d.buf)
	d.buf = nil
}

// full flushes the open record if it reached the target size.
func (d *dumper) full() {
	if len(d.buf) >= recordTarget {
		d.flush()
	}
}

func (d *dumper) uvarint(v uint64) { d.buf = binary.AppendUvarint(d.buf, v) }
func (d *dumper) varint(v int64)   { d.buf = binary.AppendVarint(d.buf, v) }
func (d *dumper) bytes(p []byte) {
	d.uvarint(uint64(len(p)))
	d.buf = append(d.buf, p...)
}

// Dump serialises the view's whole state (revision, compaction revision,
// all retained history and all events) as a sequence of opaque records, in
// the format described above, calling emit once per record. Each record
// belongs to emit: Dump does not touch it afterwards. Dump stops at the
// first error from emit and returns it. Load rebuilds an equal Store.
//
// Dump may run concurrently with the writer and with other readers.
func (v *View) Dump(emit func(record []byte) error) error {
	d := &dumper{emit: emit, crc: crc32.New(crcTable)}
	c := v.r.compactRev

	d.begin(tagHeader)
	d.uvarint(formatVersion)
	d.uvarint(uint64(v.r.rev))
	d.uvarint(uint64(c))
	d.flush()

	// Base: the live keys at the compaction revision (none before revision
	// 2, the first that can hold a write).
	var nbase uint64
	if c >= 2 {
		all := span{open: true}
		v.r.visit(&all, c, func(kv *KeyValue) bool {
			d.begin(tagBase)
			d.bytes(kv.Key)
			d.bytes(kv.Value)
			d.uvarint(uint64(kv.CreateRevision))
			d.uvarint(uint64(kv.ModRevision))
			d.uvarint(uint64(kv.Version))
			d.varint(kv.Lease)
			nbase++
			d.full()
			return d.err == nil
		})
	}

	var nbatch, nev uint64
	it := v.events.Iter()
	for ok := it.First(); ok && d.err == nil; ok = it.Next() {
		b := it.Item()
		if b.rev < c {
			continue // never retained; defensive
		}
		d.begin(tagEvents)
		d.uvarint(uint64(b.rev))
		d.uvarint(uint64(len(b.evs)))
		for _, ev := range b.evs {
			if b.rev == c {
				d.fullEvent(ev, c)
			} else {
				d.replayEvent(ev)
			}
		}
		nbatch++
		nev += uint64(len(b.evs))
		d.full()
	}
	it.Release()

	d.flush()
	if d.err != nil {
		return d.err
	}
	d.begin(tagTrailer)
	d.uvarint(nbase)
	d.uvarint(nbatch)
	d.uvarint(nev)
	d.buf = binary.LittleEndian.AppendUint32(d.buf, d.crc.Sum32())
	if d.err = d.emit(d.buf); d.err != nil {
		return d.err
	}
	return nil
}

// replayEvent writes an event of a batch above the compaction revision.
func (d *dumper) replayEvent(ev *Event) {
	if ev.Type == EventDelete {
		d.buf = append(d.buf, flagDelete)
		d.bytes(ev.Kv.Key)
		return
	}
	d.buf = append(d.buf, 0)
	d.bytes(ev.Kv.Key)
	d.bytes(ev.Kv.Value)
	d.varint(ev.Kv.Lease)
}

// fullEvent writes an event of the batch at the compaction revision c.
func (d *dumper) fullEvent(ev *Event, c int64) {
	var flags byte
	if ev.Type == EventDelete {
		flags |= flagDelete
	}
	prev := ev.PrevKv
	switch {
	case prev == nil:
		flags |= prevNone << prevShift
	case prev.ModRevision == c:
		flags |= prevInBatch << prevShift // written earlier in this batch
	default:
		flags |= prevInline << prevShift
	}
	d.buf = append(d.buf, flags)
	d.bytes(ev.Kv.Key)
	if ev.Type != EventDelete {
		d.bytes(ev.Kv.Value)
		d.varint(ev.Kv.Lease)
	}
	if prev != nil && prev.ModRevision != c {
		d.bytes(prev.Value)
		d.uvarint(uint64(prev.CreateRevision))
		d.uvarint(uint64(prev.ModRevision))
		d.uvarint(uint64(prev.Version))
		d.varint(prev.Lease)
	}
}
