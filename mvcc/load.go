package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
)

// decoder reads the fields of one record, failing (with an error wrapping
// ErrCorrupt) on anything malformed. After a failure every read returns a
// zero value, so callers check d.err once per entry.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated record")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad or truncated varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad or truncated varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// rev reads a revision-like number, bounded so that later arithmetic
// (rev+1 and the like) cannot overflow.
func (d *decoder) rev() int64 {
	v := d.uvarint()
	if v > maxRevLoadable {
		d.fail("revision %d out of range", v)
		return 0
	}
	return int64(v)
}

// bytes reads a length-prefixed byte string. The result aliases the record
// and must be copied before the record is released.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d exceeds the %d bytes left in the record", n, len(d.b))
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// loader holds the state of one Load.
type loader struct {
	next    func() ([]byte, error)
	crc     hash.Hash32
	s       *Store
	rev, c  int64  // stated revision and compaction revision
	nextRev int64  // revision the next event batch must have
	inEvs   bool   // an events record has been seen
	lastKey []byte // last base key, for the ordering check
	nbase   uint64
	baseAtC uint64 // base entries whose ModRevision == c
	nbatch  uint64
	nev     uint64
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Load rebuilds a Store from the records written by View.Dump. next returns
// the records in order and io.EOF after the last one; Load copies what it
// keeps, so next may reuse its buffer. Load validates everything: truncated,
// oversized, reordered, malformed or inconsistent input (revision gaps or
// regressions, events above the stated revision, a delete of an absent key,
// a base state that disagrees with the events, a bad checksum, data after
// the trailer, ...) yields an error wrapping ErrCorrupt, never a panic, and
// no allocation is sized by an unchecked length. An error from next other
// than io.EOF is returned wrapped (and also wraps ErrCorrupt if it is
// io.ErrUnexpectedEOF).
//
// The loaded store answers every Range at every uncompacted revision and
// every Events call exactly like the dumped View. Later history is rebuilt
// by replaying the events through WriteTxns, so a put event's Kv is the
// same KeyValue as the history item and PrevKv the previous one.
func Load(next func() ([]byte, error)) (*Store, error) {
	l := &loader{next: next, crc: crc32.New(crcTable)}
	s, err := l.load()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// record returns the next record, which must exist.
func (l *loader) record() ([]byte, error) {
	rec, err := l.next()
	switch {
	case errors.Is(err, io.EOF):
		return nil, corrupt("truncated: no trailer record")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("mvcc: reading snapshot record: %w", err)
	case len(rec) == 0:
		return nil, corrupt("empty record")
	}
	return rec, nil
}

func (l *loader) sum(rec []byte) {
	var b [binary.MaxVarintLen64]byte
	l.crc.Write(b[:binary.PutUvarint(b[:], uint64(len(rec)))])
	l.crc.Write(rec)
}

func (l *loader) load() (*Store, error) {
	rec, err := l.record()
	if err != nil {
		return nil, err
	}
	if err := l.header(rec); err != nil {
		return nil, err
	}
	l.sum(rec)
	for {
		rec, err := l.record()
		if err != nil {
			return nil, err
		}
		d := &decoder{b: rec[1:]}
		switch rec[0] {
		case tagBase:
			if l.inEvs {
				return nil, corrupt("base record after events")
			}
			for d.err == nil && len(d.b) > 0 {
				l.baseEntry(d)
			}
		case tagEvents:
			l.inEvs = true
			for d.err == nil && len(d.b) > 0 {
				l.batch(d)
			}
		case tagHeader:
			return nil, corrupt("second header record")
		case tagTrailer:
			if err := l.trailer(d); err != nil {
				return nil, err
			}
			return l.s, l.end()
		default:
			return nil, corrupt("unknown record tag %#x", rec[0])
		}
		if d.err != nil {
			return nil, d.err
		}
		l.sum(rec)
	}
}

func (l *loader) header(rec []byte) error {
	if rec[0] != tagHeader {
		return corrupt("first record is not a header (tag %#x)", rec[0])
	}
	d := &decoder{b: rec[1:]}
	version := d.uvarint()
	l.rev = d.rev()
	l.c = d.rev()
	switch {
	case d.err != nil:
		return d.err
	case version != formatVersion:
		return corrupt("unsupported format version %d", version)
	case len(d.b) != 0:
		return corrupt("%d trailing bytes in header", len(d.b))
	case l.rev < 1:
		return corrupt("revision %d < 1", l.rev)
	case l.c > l.rev:
		return corrupt("compaction revision %d above revision %d", l.c, l.rev)
	}
	l.s = New()
	l.s.compactRev = l.c
	// Revision 1 is the empty store; the first write is at 2. The batch at
	// c (if c >= 2) is the first in the log and is not replayed.
	l.nextRev = max(l.c, 2)
	l.s.rev = l.nextRev - 1
	return nil
}

// validVersion checks the fields of a live version last modified at or
// before limit.
func validVersion(create, mod, version, limit int64) bool {
	return create >= 2 && create <= mod && mod <= limit && version >= 1 &&
		(version > 1 || create == mod)
}

func (l *loader) baseEntry(d *decoder) {
	key, value := d.bytes(), d.bytes()
	create, mod, version := d.rev(), d.rev(), d.rev()
	lease := d.varint()
	switch {
	case d.err != nil:
		return
	case l.nbase > 0 && bytes.Compare(key, l.lastKey) <= 0:
		d.fail("base key %q not after %q", key, l.lastKey)
		return
	case !validVersion(create, mod, version, l.c):
		d.fail("base key %q: bad create/mod/version %d/%d/%d at compaction revision %d",
			key, create, mod, version, l.c)
		return
	}
	kv := &KeyValue{CreateRevision: create, ModRevision: mod, Version: version, Lease: lease}
	setKV(kv, key, value)
	// Keys arrive sorted with one version each: bulk-load both trees.
	l.s.latest.Load(liveItem{key: kv.Key, kv: kv})
	l.s.hist.Load(mkHist(kv, mod, 0))
	l.lastKey = kv.Key
	l.nbase++
	if mod == l.c {
		l.baseAtC++
	}
}

func (l *loader) batch(d *decoder) {
	rev := d.rev()
	n := d.uvarint()
	switch {
	case d.err != nil:
		return
	case rev > l.rev:
		d.fail("event batch at revision %d above the stated revision %d", rev, l.rev)
		return
	case rev != l.nextRev:
		d.fail("event batch at revision %d, want %d", rev, l.nextRev)
		return
	case n == 0:
		d.fail("empty event batch at revision %d", rev)
		return
	case n > math.MaxInt32:
		d.fail("event batch at revision %d holds %d events, more than a revision can", rev, n)
		return
	}
	if rev == l.c {
		l.compactBatch(d, n)
	} else {
		l.replayBatch(d, n)
	}
	l.nextRev++
	l.nbatch++
	l.nev += n
}

// replayBatch applies a batch above the compaction revision through a
// WriteTxn, exactly as the original writes were applied. n is untrusted:
// every event consumes input, so a bogus n fails on truncation.
func (l *loader) replayBatch(d *decoder, n uint64) {
	t := l.s.Write()
	for i := uint64(0); i < n && d.err == nil; i++ {
		flags := d.byte()
		key := d.bytes()
		switch {
		case d.err != nil:
		case flags == 0:
			value := d.bytes()
			lease := d.varint()
			if d.err == nil {
				t.Put(key, value, lease)
			}
		case flags == flagDelete:
			if t.DeleteRange(key, nil) == nil {
				d.fail("revision %d deletes absent key %q", t.rev, key)
			}
		default:
			d.fail("bad event flags %#x", flags)
		}
	}
	if d.err != nil {
		return // the store is discarded; the open txn does not matter
	}
	t.End()
}

// compactBatch loads the batch at the compaction revision c. Its effects are
// already in the base state, so it is decoded in full (with the PrevKvs
// that predate c), checked event by event, and finally checked against the
// base: every key it touches must end up exactly as the base has it, and
// the base may hold no other key modified at c.
func (l *loader) compactBatch(d *decoder, n uint64) {
	c := l.c
	state := make(map[string]*KeyValue) // key -> version after the events so far; nil once deleted
	var evs []*Event
	for i := uint64(0); i < n && d.err == nil; i++ {
		flags := d.byte()
		key := d.bytes()
		del := flags&flagDelete != 0
		kind := (flags & prevMask) >> prevShift
		var value []byte
		var lease int64
		if !del {
			value = d.bytes()
			lease = d.varint()
		}
		if d.err != nil {
			return
		}
		if flags&^(flagDelete|prevMask) != 0 {
			d.fail("bad event flags %#x", flags)
			return
		}
		var prev *KeyValue
		if cur, touched := state[string(key)]; touched {
			want := byte(prevNone)
			if cur != nil {
				want = prevInBatch
			}
			if kind != want {
				d.fail("revision %d: previous value of %q inconsistent within the batch", c, key)
				return
			}
			prev = cur
		} else {
			switch kind {
			case prevNone:
			case prevInline:
				pv := d.bytes()
				pc, pm, pver := d.rev(), d.rev(), d.rev()
				pl := d.varint()
				if d.err != nil {
					return
				}
				if !validVersion(pc, pm, pver, c-1) {
					d.fail("revision %d: bad previous version of %q", c, key)
					return
				}
				prev = &KeyValue{CreateRevision: pc, ModRevision: pm, Version: pver, Lease: pl}
				setKV(prev, key, pv)
			default:
				d.fail("revision %d: bad previous-value kind %d for %q", c, kind, key)
				return
			}
		}
		ev := &Event{PrevKv: prev}
		if del {
			if prev == nil {
				d.fail("revision %d deletes absent key %q", c, key)
				return
			}
			ev.Type = EventDelete
			ev.Kv = &KeyValue{Key: prev.Key, ModRevision: c}
			state[string(key)] = nil
		} else {
			kv := &KeyValue{ModRevision: c, Lease: lease, CreateRevision: c, Version: 1}
			setKV(kv, key, value)
			if prev != nil {
				kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
			}
			ev.Type, ev.Kv = EventPut, kv
			state[string(key)] = kv
		}
		evs = append(evs, ev)
	}
	if d.err != nil {
		return
	}
	var finalPuts uint64
	for _, ev := range evs {
		final := state[string(ev.Kv.Key)]
		base, inBase := l.s.latest.Get(liveItem{key: ev.Kv.Key})
		switch {
		case final == nil && inBase:
			d.fail("key %q deleted at compaction revision %d but live in the base state", ev.Kv.Key, c)
			return
		case final == ev.Kv: // the key's last event in the batch, a put
			if !inBase || !sameKV(base.kv, final) {
				d.fail("key %q at compaction revision %d disagrees with the base state", ev.Kv.Key, c)
				return
			}
			ev.Kv = base.kv // share the history item
			finalPuts++
		}
	}
	if finalPuts != l.baseAtC {
		d.fail("base state has %d keys modified at compaction revision %d, its events %d",
			l.baseAtC, c, finalPuts)
		return
	}
	l.s.events.Set(evBatch{rev: c, evs: evs})
	l.s.rev = c
}

func sameKV(a, b *KeyValue) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.CreateRevision == b.CreateRevision && a.ModRevision == b.ModRevision &&
		a.Version == b.Version && a.Lease == b.Lease
}

func (l *loader) trailer(d *decoder) error {
	nbase, nbatch, nev := d.uvarint(), d.uvarint(), d.uvarint()
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 4 {
		return corrupt("trailer has %d checksum bytes, want 4", len(d.b))
	}
	sum := binary.LittleEndian.Uint32(d.b)
	switch {
	case nbase != l.nbase || nbatch != l.nbatch || nev != l.nev:
		return corrupt("trailer counts %d/%d/%d, read %d/%d/%d (base/batches/events)",
			nbase, nbatch, nev, l.nbase, l.nbatch, l.nev)
	case l.s.rev != l.rev:
		return corrupt("events end at revision %d, stated revision %d", l.s.rev, l.rev)
	case sum != l.crc.Sum32():
		return corrupt("checksum mismatch")
	}
	return nil
}

// end checks that nothing follows the trailer.
func (l *loader) end() error {
	rec, err := l.next()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("mvcc: reading snapshot record: %w", err)
	}
	return corrupt("%d bytes of data after the trailer", len(rec))
}
