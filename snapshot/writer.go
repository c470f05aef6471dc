package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// errClosed is returned by Writer.Write after Close.
var errClosed = errors.New("snapshot: write after Close")

// Writer writes a stream: the header (by NewWriter), records (by Write) and
// the trailer (by Close). Output is buffered; nothing is guaranteed to have
// reached the underlying writer before Close returns nil.
//
// A Writer is not safe for concurrent use. After an error from the
// underlying writer every later call returns that error.
type Writer struct {
	bw    *bufio.Writer
	tab   *crc32.Table
	crc   uint32 // CRC of every byte written so far
	count uint64 // records written
	total uint64 // payload bytes written
	err   error  // sticky error of the underlying writer
	done  bool   // Close was called
	// scratch and sum hold the frame fields being encoded; they live in the
	// Writer so that passing them to the bufio.Writer does not allocate.
	scratch [1 + trailerBodySize]byte
	sum     [crcSize]byte
}

// NewWriter validates h, then starts a stream on w by writing its header.
// h.Kind must be 1 to MaxKind bytes long and h.Meta at most MaxMeta bytes.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if w == nil {
		return nil, errors.New("snapshot: nil io.Writer")
	}
	if len(h.Kind) == 0 || len(h.Kind) > MaxKind {
		return nil, fmt.Errorf("snapshot: kind must be 1 to %d bytes, got %d", MaxKind, len(h.Kind))
	}
	if len(h.Meta) > MaxMeta {
		return nil, fmt.Errorf("snapshot: meta must be at most %d bytes, got %d", MaxMeta, len(h.Meta))
	}
	sw := &Writer{bw: bufio.NewWriterSize(w, bufferSize), tab: castagnoli()}

	var fixed [fixedHeaderSize]byte
	copy(fixed[:], magic)
	binary.BigEndian.PutUint32(fixed[len(magic):], FormatVersion)
	binary.BigEndian.PutUint32(fixed[len(magic)+4:], h.Version)
	fixed[len(magic)+8] = byte(len(h.Kind))
	sw.put(fixed[:])
	sw.put([]byte(h.Kind))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(h.Meta)))
	sw.put(n[:])
	sw.put(h.Meta)
	// The header checksum covers exactly the bytes written so far.
	binary.BigEndian.PutUint32(n[:], sw.crc)
	sw.put(n[:])
	if sw.err != nil {
		return nil, sw.err
	}
	return sw, nil
}

// Write appends one record, which may be empty and may be at most MaxRecord
// bytes long. The Writer does not retain record after Write returns.
func (w *Writer) Write(record []byte) error {
	if w.done {
		return errClosed
	}
	if w.err != nil {
		return w.err
	}
	if len(record) > MaxRecord {
		return fmt.Errorf("snapshot: record of %d bytes exceeds MaxRecord (%d)", len(record), MaxRecord)
	}
	hdr := w.scratch[:recordHeaderSize]
	hdr[0] = tagRecord
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(record)))
	sum := crc32.Update(0, w.tab, hdr)
	sum = crc32.Update(sum, w.tab, record)
	w.put(hdr)
	w.put(record)
	binary.BigEndian.PutUint32(w.sum[:], sum)
	w.put(w.sum[:])
	if w.err != nil {
		return w.err
	}
	w.count++
	w.total += uint64(len(record))
	return nil
}

// Close ends the stream: it writes the trailer (record count, total payload
// bytes, CRC-32C of everything before it) and flushes the buffer. It does not
// close the underlying writer. Calling Close again returns the result of the
// first call; Write after Close fails.
func (w *Writer) Close() error {
	if w.done {
		return w.err
	}
	w.done = true
	if w.err != nil {
		return w.err
	}
	t := w.scratch[:1+trailerBodySize]
	t[0] = tagTrailer
	binary.BigEndian.PutUint64(t[1:], w.count)
	binary.BigEndian.PutUint64(t[9:], w.total)
	w.put(t)
	binary.BigEndian.PutUint32(w.sum[:], w.crc)
	w.put(w.sum[:])
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("snapshot: flush: %w", err)
	}
	return w.err
}

// put writes p to the buffer and adds it to the stream checksum.
func (w *Writer) put(p []byte) {
	if w.err != nil {
		return
	}
	w.crc = crc32.Update(w.crc, w.tab, p)
	if _, err := w.bw.Write(p); err != nil {
		w.err = fmt.Errorf("snapshot: write: %w", err)
	}
}
