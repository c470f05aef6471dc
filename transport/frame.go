package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Wire layout of a frame:
//
//	[0:4]  uint32 big-endian length of everything after it (>= frameHeaderLen)
//	[4:12] uint64 big-endian request ID
//	[12]   kind: method (request) or status (response)
//	[13:]  payload
const (
	lenPrefixLen   = 4
	frameHeaderLen = 8 + 1 // request ID + kind, counted in the length
	wireHeaderLen  = lenPrefixLen + frameHeaderLen

	// maxFrameLimit caps any configured MaxFrameBytes.
	maxFrameLimit = 1 << 30
	// readChunk is the largest buffer allocated before the bytes to fill it
	// have arrived: a payload longer than this grows as its bytes arrive,
	// so a peer that declares a large frame and sends nothing costs little.
	readChunk = 64 << 10
)

// Response statuses, carried in the kind byte of a response frame.
const (
	statusOK    byte = 0 // payload is the handler's response
	statusError byte = 1 // payload is uint16 code + message
)

// frame is one decoded frame. payload is owned by the receiver.
type frame struct {
	id      uint64
	kind    byte
	payload []byte
}

// frameReader decodes frames from r, refusing frames longer than max.
type frameReader struct {
	r   *bufio.Reader
	max int
	hdr [frameHeaderLen]byte
}

func newFrameReader(r *bufio.Reader, max int) *frameReader {
	return &frameReader{r: r, max: frameLimit(max)}
}

// read decodes the next frame. It returns io.EOF when the stream ends
// cleanly between frames, ErrFrameTooLarge (wrapped) for a frame over the
// limit, ErrProtocol (wrapped) for a malformed one, and
// io.ErrUnexpectedEOF for a stream that ends inside a frame. After an
// error the stream is unusable.
func (fr *frameReader) read() (frame, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:lenPrefixLen]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:lenPrefixLen])
	if n < frameHeaderLen {
		return frame{}, fmt.Errorf("%w: frame length %d shorter than its header", ErrProtocol, n)
	}
	if uint64(n) > uint64(fr.max) {
		return frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:frameHeaderLen]); err != nil {
		return frame{}, unexpected(err)
	}
	f := frame{
		id:   binary.BigEndian.Uint64(fr.hdr[:8]),
		kind: fr.hdr[8],
	}
	payload, err := readPayload(fr.r, int(n)-frameHeaderLen)
	if err != nil {
		return frame{}, unexpected(err)
	}
	f.payload = payload
	return f, nil
}

// readPayload reads exactly n bytes. Up to readChunk bytes are allocated at
// once; beyond that the buffer doubles as data arrives, so memory follows
// the bytes actually received rather than the length declared.
func readPayload(r io.Reader, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if n <= readChunk {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	b := make([]byte, 0, readChunk)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), n))
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeFrame encodes one frame into w. It does not flush.
func writeFrame(w *bufio.Writer, id uint64, kind byte, payload []byte) error {
	hdr := w.AvailableBuffer()
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(frameHeaderLen+len(payload)))
	hdr = binary.BigEndian.AppendUint64(hdr, id)
	hdr = append(hdr, kind)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// encodeError builds the payload of an error response.
func encodeError(re *RemoteError, maxPayload int) []byte {
	msg := re.Msg
	if len(msg) > maxPayload-2 {
		msg = msg[:max(maxPayload-2, 0)]
	}
	b := make([]byte, 2, 2+len(msg))
	binary.BigEndian.PutUint16(b, re.Code)
	return append(b, msg...)
}

// decodeError decodes the payload of an error response.
func decodeError(payload []byte) (*RemoteError, error) {
	if len(payload) < 2 {
		return nil, fmt.Errorf("%w: error response of %d bytes", ErrProtocol, len(payload))
	}
	return &RemoteError{
		Code: binary.BigEndian.Uint16(payload),
		Msg:  string(payload[2:]),
	}, nil
}
