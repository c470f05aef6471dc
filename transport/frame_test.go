package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// encodeFrame returns the wire form of one frame.
func encodeFrame(t testing.TB, id uint64, kind byte, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := writeFrame(w, id, kind, payload); err != nil {
		t.Fatalf("writeFrame: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return buf.Bytes()
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		id      uint64
		kind    byte
		payload []byte
	}{
		{"empty payload", 1, 0, nil},
		{"max id", ^uint64(0), 255, []byte("x")},
		{"exactly one chunk", 7, 3, bytes.Repeat([]byte{0xAB}, readChunk)},
		{"several chunks", 8, 4, bytes.Repeat([]byte{0xCD}, 3*readChunk+17)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := encodeFrame(t, tt.id, tt.kind, tt.payload)
			if got, want := len(wire), wireHeaderLen+len(tt.payload); got != want {
				t.Fatalf("encoded length: got %d, want %d", got, want)
			}
			fr := newFrameReader(bufio.NewReader(bytes.NewReader(wire)), DefaultMaxFrameBytes)
			f, err := fr.read()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if f.id != tt.id || f.kind != tt.kind || !bytes.Equal(f.payload, tt.payload) {
				t.Errorf("frame: got id %d kind %d %d bytes, want id %d kind %d %d bytes",
					f.id, f.kind, len(f.payload), tt.id, tt.kind, len(tt.payload))
			}
			if _, err := fr.read(); err != io.EOF {
				t.Errorf("read at end: got %v, want io.EOF", err)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	const limit = 100
	full := encodeFrame(t, 1, 2, []byte("payload"))
	lenOnly := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty stream", nil, io.EOF},
		{"partial length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"length below header", lenOnly(frameHeaderLen - 1), ErrProtocol},
		{"length over limit", lenOnly(limit + 1), ErrFrameTooLarge},
		{"max length", lenOnly(^uint32(0)), ErrFrameTooLarge},
		{"truncated header", full[:8], io.ErrUnexpectedEOF},
		{"truncated payload", full[:len(full)-1], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := newFrameReader(bufio.NewReader(bytes.NewReader(tt.data)), limit)
			_, err := fr.read()
			if !errors.Is(err, tt.want) {
				t.Errorf("read: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestErrorPayloadRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		in         RemoteError
		maxPayload int
		want       RemoteError
	}{
		{"plain", RemoteError{Code: 7, Msg: "nope"}, 100, RemoteError{Code: 7, Msg: "nope"}},
		{"truncated message", RemoteError{Code: 9, Msg: "abcdef"}, 5, RemoteError{Code: 9, Msg: "abc"}},
		{"no room for message", RemoteError{Code: 9, Msg: "abcdef"}, 2, RemoteError{Code: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeError(encodeError(&tt.in, tt.maxPayload))
			if err != nil {
				t.Fatalf("decodeError: %v", err)
			}
			if *got != tt.want {
				t.Errorf("decoded: got %+v, want %+v", *got, tt.want)
			}
		})
	}
	if _, err := decodeError([]byte{1}); !errors.Is(err, ErrProtocol) {
		t.Errorf("decodeError of 1 byte: got %v, want ErrProtocol", err)
	}
}

// TestReadFrameMemoryFollowsData checks that a frame declaring the maximum
// length but carrying few bytes does not allocate the declared length.
func TestReadFrameMemoryFollowsData(t *testing.T) {
	const declared = DefaultMaxFrameBytes
	wire := binary.BigEndian.AppendUint32(nil, declared)
	wire = append(wire, make([]byte, frameHeaderLen+100)...)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fr := newFrameReader(bufio.NewReader(bytes.NewReader(wire)), DefaultMaxFrameBytes)
	_, err := fr.read()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read: got %v, want io.ErrUnexpectedEOF", err)
	}
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(1<<20); got > limit {
		t.Errorf("allocated %d bytes for a truncated %d byte frame, want at most %d", got, declared, limit)
	}
}

func FuzzReadFrame(f *testing.F) {
	const limit = 4096
	f.Add([]byte{})
	f.Add(encodeFrame(f, 1, statusOK, []byte("hello")))
	f.Add(encodeFrame(f, 2, statusError, encodeError(&RemoteError{Code: 3, Msg: "bad"}, limit)))
	f.Add(append(encodeFrame(f, 3, 9, nil), encodeFrame(f, 4, 10, []byte{1, 2, 3})...))
	f.Add(binary.BigEndian.AppendUint32(nil, limit+1))
	f.Add(binary.BigEndian.AppendUint32(nil, 3))
	f.Add(append(binary.BigEndian.AppendUint32(nil, limit), make([]byte, 20)...))

	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bufio.NewReader(bytes.NewReader(data)), limit)
		consumed := 0
		for {
			fm, err := fr.read()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrProtocol) {
					t.Fatalf("read: unexpected error %v", err)
				}
				break
			}
			if cap(fm.payload) > limit-frameHeaderLen {
				t.Fatalf("payload capacity %d over the limit %d", cap(fm.payload), limit-frameHeaderLen)
			}
			// Re-encoding yields exactly the bytes consumed.
			wire := encodeFrame(t, fm.id, fm.kind, fm.payload)
			if !bytes.Equal(wire, data[consumed:consumed+len(wire)]) {
				t.Fatalf("re-encoded frame differs from its input")
			}
			consumed += len(wire)
			if fm.kind == statusError {
				if re, err := decodeError(fm.payload); err == nil {
					if back := encodeError(re, limit); !bytes.Equal(back, fm.payload) {
						t.Fatalf("error payload does not round-trip")
					}
				} else if !errors.Is(err, ErrProtocol) {
					t.Fatalf("decodeError: unexpected error %v", err)
				}
			}
		}
	})
}
