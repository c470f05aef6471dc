package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Reader reads the records of a stream written by a Writer, verifying every
// checksum on the way. A Reader is not safe for concurrent use.
type Reader struct {
	br        *bufio.Reader
	tab       *crc32.Table
	crc       uint32 // CRC of every byte consumed so far
	off       uint64 // bytes consumed so far
	count     uint64 // records returned
	total     uint64 // payload bytes returned
	maxRecord int
	buf       []byte // the last record; reused by the next
	err       error  // sticky: io.EOF after the trailer verified, or the failure
	// scratch and sum receive frame fields; they live in the Reader so that
	// passing them to io.ReadFull does not allocate.
	scratch [1 + trailerBodySize]byte
	sum     [crcSize]byte
}

// NewReader reads and verifies the header of the stream r: magic, format
// version (ErrVersion if unsupported), header checksum, and that the kind is
// wantKind (ErrKind otherwise; an empty wantKind accepts any kind). Records
// longer than maxRecord bytes are reported as corrupt; maxRecord <= 0 or
// above MaxRecord means MaxRecord.
//
// The Reader buffers r and reads one byte past the trailer to make sure the
// stream ends there, so r must end (return io.EOF) right after the stream.
// Errors from r other than io.EOF are returned wrapped, not as ErrCorrupt.
func NewReader(r io.Reader, wantKind string, maxRecord int) (*Reader, Header, error) {
	if r == nil {
		return nil, Header{}, errors.New("snapshot: nil io.Reader")
	}
	if maxRecord <= 0 || maxRecord > MaxRecord {
		maxRecord = MaxRecord
	}
	sr := &Reader{br: bufio.NewReaderSize(r, bufferSize), tab: castagnoli(), maxRecord: maxRecord}
	h, err := sr.readHeader(wantKind)
	if err != nil {
		return nil, Header{}, err
	}
	return sr, h, nil
}

// readHeader reads and checks the header.
func (r *Reader) readHeader(wantKind string) (Header, error) {
	var fixed [fixedHeaderSize]byte
	if err := r.read(fixed[:], "header"); err != nil {
		return Header{}, err
	}
	if string(fixed[:len(magic)]) != magic {
		return Header{}, corrupt(0, "bad magic %q", fixed[:len(magic)])
	}
	if v := binary.BigEndian.Uint32(fixed[len(magic):]); v != FormatVersion {
		return Header{}, fmt.Errorf("%w: format version %d (this package reads %d)", ErrVersion, v, FormatVersion)
	}
	var h Header
	h.Version = binary.BigEndian.Uint32(fixed[len(magic)+4:])
	kindLen := int(fixed[len(magic)+8])
	if kindLen == 0 {
		return Header{}, corrupt(r.off-1, "empty kind")
	}
	kind := make([]byte, kindLen)
	if err := r.read(kind, "header kind"); err != nil {
		return Header{}, err
	}
	var n [4]byte
	if err := r.read(n[:], "header"); err != nil {
		return Header{}, err
	}
	metaLen := binary.BigEndian.Uint32(n[:])
	if metaLen > MaxMeta {
		return Header{}, corrupt(r.off-4, "meta length %d exceeds %d", metaLen, MaxMeta)
	}
	if metaLen > 0 {
		// At most MaxMeta (64 KiB): small enough to allocate up front.
		h.Meta = make([]byte, metaLen)
		if err := r.read(h.Meta, "header meta"); err != nil {
			return Header{}, err
		}
	}
	want := r.crc
	if err := r.readNoCRC(n[:], "header checksum"); err != nil {
		return Header{}, err
	}
	if got := binary.BigEndian.Uint32(n[:]); got != want {
		return Header{}, corrupt(r.off-4, "header checksum %08x, want %08x", got, want)
	}
	// The checksum covers what precedes it; the stream checksum covers the
	// header checksum too.
	r.crc = crc32.Update(r.crc, r.tab, n[:])
	h.Kind = string(kind)
	if wantKind != "" && h.Kind != wantKind {
		return Header{}, fmt.Errorf("%w: stream holds %q, want %q", ErrKind, h.Kind, wantKind)
	}
	return h, nil
}

// Next returns the next record. After the last record it verifies the
// trailer (record count, total size, stream checksum) and that nothing
// follows it, and only then returns io.EOF. Any other error is final: later
// calls return it again.
//
// The returned slice is only valid until the next call to Next, which may
// overwrite it; copy it to keep it. An empty record is returned as a
// non-nil empty slice.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return rec, nil
}

// next reads one frame.
func (r *Reader) next() ([]byte, error) {
	start := r.off
	hdr := r.scratch[:recordHeaderSize]
	if err := r.read(hdr[:1], "frame tag (missing trailer)"); err != nil {
		return nil, err
	}
	switch hdr[0] {
	case tagRecord:
		return r.readRecord(start, hdr)
	case tagTrailer:
		return nil, r.readTrailer(start)
	default:
		return nil, corrupt(start, "unknown frame tag 0x%02x", hdr[0])
	}
}

// readRecord reads the rest of a record whose tag is in hdr[0].
func (r *Reader) readRecord(start uint64, hdr []byte) ([]byte, error) {
	if err := r.read(hdr[1:], "record length"); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(r.maxRecord) {
		return nil, corrupt(start, "record length %d exceeds limit %d", n, r.maxRecord)
	}
	rec, err := r.readPayload(int(n))
	if err != nil {
		return nil, err
	}
	want := crc32.Update(crc32.Update(0, r.tab, hdr), r.tab, rec)
	if err := r.read(r.sum[:], "record checksum"); err != nil {
		return nil, err
	}
	if got := binary.BigEndian.Uint32(r.sum[:]); got != want {
		return nil, corrupt(start, "record %d checksum %08x, want %08x", r.count, got, want)
	}
	r.count++
	r.total += uint64(n)
	if rec == nil {
		rec = []byte{}
	}
	return rec, nil
}

// readPayload reads an n-byte payload into r.buf. It trusts n only as far as
// the data actually received: when r.buf is too small it grows it by at most
// max(readChunk, bytes read so far) at a time, so a lying length costs
// memory proportional to the bytes really present, not to n.
func (r *Reader) readPayload(n int) ([]byte, error) {
	if n <= cap(r.buf) {
		b := r.buf[:n]
		if err := r.read(b, "record payload"); err != nil {
			return nil, err
		}
		return b, nil
	}
	b := r.buf[:0]
	for len(b) < n {
		step := min(n-len(b), max(len(b), readChunk))
		b = slices.Grow(b, step)
		if err := r.read(b[len(b):len(b)+step], "record payload"); err != nil {
			r.buf = b[:0]
			return nil, err
		}
		b = b[:len(b)+step]
	}
	r.buf = b
	return b, nil
}

// readTrailer reads the rest of the trailer and checks it and the end of the
// stream. It returns io.EOF when everything verifies.
func (r *Reader) readTrailer(start uint64) error {
	body := r.scratch[1 : 1+trailerBodySize]
	if err := r.read(body, "trailer"); err != nil {
		return err
	}
	want := r.crc
	if err := r.readNoCRC(r.sum[:], "trailer checksum"); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(r.sum[:]); got != want {
		return corrupt(start, "stream checksum %08x, want %08x", got, want)
	}
	if count := binary.BigEndian.Uint64(body); count != r.count {
		return corrupt(start, "trailer counts %d records, read %d", count, r.count)
	}
	if total := binary.BigEndian.Uint64(body[8:]); total != r.total {
		return corrupt(start, "trailer counts %d payload bytes, read %d", total, r.total)
	}
	switch _, err := r.br.ReadByte(); {
	case err == nil:
		return corrupt(r.off, "data after trailer")
	case errors.Is(err, io.EOF):
		return io.EOF
	default:
		return fmt.Errorf("snapshot: read at offset %d: %w", r.off, err)
	}
}

// read fills p from the stream and adds it to the stream checksum. Running
// out of data is corruption (truncation); what is wanted names the field.
func (r *Reader) read(p []byte, what string) error {
	if err := r.readNoCRC(p, what); err != nil {
		return err
	}
	r.crc = crc32.Update(r.crc, r.tab, p)
	return nil
}

// readNoCRC is read without updating the stream checksum.
func (r *Reader) readNoCRC(p []byte, what string) error {
	n, err := io.ReadFull(r.br, p)
	r.off += uint64(n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return corrupt(r.off, "truncated in %s", what)
	default:
		return fmt.Errorf("snapshot: read at offset %d: %w", r.off, err)
	}
}

// corrupt returns an error wrapping ErrCorrupt that locates the problem.
func corrupt(off uint64, format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrCorrupt, off, fmt.Sprintf(format, args...))
}
