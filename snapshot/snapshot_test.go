package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKind = "embedkv-test"

// encode writes a stream of records under h and returns its bytes.
func encode(tb testing.TB, h Header, records [][]byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		tb.Fatalf("NewWriter: got error %v, want nil", err)
	}
	for i, rec := range records {
		if err := w.Write(rec); err != nil {
			tb.Fatalf("Write(record %d): got error %v, want nil", i, err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatalf("Close: got error %v, want nil", err)
	}
	return buf.Bytes()
}

// decode reads a whole stream, copying each record. err is nil when the
// stream verified (Next returned io.EOF).
func decode(data []byte, wantKind string, maxRecord int) (Header, [][]byte, error) {
	r, h, err := NewReader(bytes.NewReader(data), wantKind, maxRecord)
	if err != nil {
		return Header{}, nil, err
	}
	var out [][]byte
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return h, out, nil
		}
		if err != nil {
			return h, out, err
		}
		out = append(out, bytes.Clone(rec))
	}
}

// randomRecords returns n records of random sizes below maxSize, from a
// fixed seed.
func randomRecords(n, maxSize int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	out := make([][]byte, n)
	for i := range out {
		rec := make([]byte, rng.IntN(maxSize))
		for j := range rec {
			rec[j] = byte(rng.Uint32())
		}
		out[i] = rec
	}
	return out
}

// smallStream is the stream used by the exhaustive truncation and bit-flip
// tests: a header with meta and a few records, one of them empty.
func smallStream(tb testing.TB) []byte {
	return encode(tb, Header{Kind: testKind, Version: 7, Meta: []byte("idx=42")},
		[][]byte{[]byte("alpha"), {}, []byte("a somewhat longer third record")})
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		header  Header
		records [][]byte
	}{
		{name: "no records", header: Header{Kind: testKind}},
		{name: "one record", header: Header{Kind: testKind, Version: 1}, records: [][]byte{[]byte("hello")}},
		{name: "one empty record", header: Header{Kind: testKind}, records: [][]byte{{}}},
		{name: "10000 random records", header: Header{Kind: testKind, Version: 3, Meta: []byte("m")},
			records: randomRecords(10000, 2048, 1)},
		{name: "records larger than the read chunk", header: Header{Kind: testKind},
			records: [][]byte{make([]byte, 3*readChunk+17), []byte("small"), make([]byte, 5*readChunk)}},
		{name: "maximal kind and meta", header: Header{Kind: string(bytes.Repeat([]byte("k"), MaxKind)),
			Version: 1<<32 - 1, Meta: bytes.Repeat([]byte{0xab}, MaxMeta)}, records: [][]byte{[]byte("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := encode(t, tt.header, tt.records)
			h, got, err := decode(data, tt.header.Kind, 0)
			if err != nil {
				t.Fatalf("decode: got error %v, want nil", err)
			}
			if h.Kind != tt.header.Kind || h.Version != tt.header.Version || !bytes.Equal(h.Meta, tt.header.Meta) {
				t.Errorf("header: got {%q %d %d bytes}, want {%q %d %d bytes}",
					h.Kind, h.Version, len(h.Meta), tt.header.Kind, tt.header.Version, len(tt.header.Meta))
			}
			if len(got) != len(tt.records) {
				t.Fatalf("records: got %d, want %d", len(got), len(tt.records))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.records[i]) {
					t.Fatalf("record %d: got %d bytes %.16x, want %d bytes %.16x",
						i, len(got[i]), got[i], len(tt.records[i]), tt.records[i])
				}
			}
		})
	}
}

func TestEveryTruncationIsCorrupt(t *testing.T) {
	data := smallStream(t)
	for n := range len(data) {
		t.Run(fmt.Sprintf("first %d bytes", n), func(t *testing.T) {
			_, _, err := decode(data[:n], testKind, 0)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got error %v, want one wrapping ErrCorrupt", err)
			}
		})
	}
}

func TestEveryBitFlipFails(t *testing.T) {
	data := smallStream(t)
	for i := range len(data) * 8 {
		t.Run(fmt.Sprintf("byte %d bit %d", i/8, i%8), func(t *testing.T) {
			flipped := bytes.Clone(data)
			flipped[i/8] ^= 1 << (i % 8)
			_, _, err := decode(flipped, testKind, 0)
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Errorf("got error %v, want one wrapping ErrCorrupt or ErrVersion", err)
			}
		})
	}
}

func TestNewReaderRejects(t *testing.T) {
	valid := smallStream(t)
	future := bytes.Clone(valid)
	binary.BigEndian.PutUint32(future[len(magic):], FormatVersion+1)
	tests := []struct {
		name     string
		data     []byte
		wantKind string
		want     error
	}{
		{name: "wrong kind", data: valid, wantKind: "embedkv-fsm", want: ErrKind},
		{name: "kind prefix", data: valid, wantKind: testKind[:4], want: ErrKind},
		{name: "future format version", data: future, wantKind: testKind, want: ErrVersion},
		{name: "not a snapshot", data: []byte("{\"json\": true, \"padding\": \"................\"}"), want: ErrCorrupt},
		{name: "empty input", data: nil, want: ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, err := NewReader(bytes.NewReader(tt.data), tt.wantKind, 0)
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want one wrapping %v", err, tt.want)
			}
			if r != nil {
				t.Errorf("got non-nil Reader with error %v, want nil", err)
			}
		})
	}
}

func TestAnyKindWhenWantKindEmpty(t *testing.T) {
	h, recs, err := decode(smallStream(t), "", 0)
	if err != nil || h.Kind != testKind || len(recs) != 3 {
		t.Errorf("got kind %q, %d records, error %v; want %q, 3 records, nil", h.Kind, len(recs), err, testKind)
	}
}

func TestTrailingData(t *testing.T) {
	valid := smallStream(t)
	tests := []struct {
		name string
		data []byte
	}{
		{name: "one zero byte", data: append(bytes.Clone(valid), 0)},
		{name: "second stream", data: append(bytes.Clone(valid), valid...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, recs, err := decode(tt.data, testKind, 0)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got error %v, want one wrapping ErrCorrupt", err)
			}
			if len(recs) != 3 {
				t.Errorf("records before the error: got %d, want 3", len(recs))
			}
		})
	}
}

func TestRecordLimits(t *testing.T) {
	data := encode(t, Header{Kind: testKind}, [][]byte{make([]byte, 100), make([]byte, 101)})
	tests := []struct {
		name      string
		maxRecord int
		wantRecs  int
		wantErr   error
	}{
		{name: "limit above both", maxRecord: 101, wantRecs: 2},
		{name: "limit between", maxRecord: 100, wantRecs: 1, wantErr: ErrCorrupt},
		{name: "limit below both", maxRecord: 99, wantRecs: 0, wantErr: ErrCorrupt},
		{name: "zero means MaxRecord", maxRecord: 0, wantRecs: 2},
		{name: "above MaxRecord is clamped", maxRecord: MaxRecord + 1, wantRecs: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, recs, err := decode(data, testKind, tt.maxRecord)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			}
			if len(recs) != tt.wantRecs {
				t.Errorf("records: got %d, want %d", len(recs), tt.wantRecs)
			}
		})
	}
}

// TestLyingLengthDoesNotAllocate checks that a record declaring MaxRecord
// bytes, followed by only a few, costs memory proportional to what is there.
func TestLyingLengthDoesNotAllocate(t *testing.T) {
	valid := encode(t, Header{Kind: testKind}, nil)
	trailerSize := 1 + trailerBodySize + crcSize
	data := bytes.Clone(valid[:len(valid)-trailerSize])
	data = append(data, tagRecord)
	data = binary.BigEndian.AppendUint32(data, MaxRecord)
	data = append(data, make([]byte, 1000)...)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := decode(data, testKind, 0)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("got error %v, want one wrapping ErrCorrupt", err)
	}
	const limit = 1 << 20
	if got := after.TotalAlloc - before.TotalAlloc; got > limit {
		t.Errorf("allocated %d bytes reading a 1000-byte record declared as %d, want at most %d", got, MaxRecord, limit)
	}
}

func TestNewWriterValidatesHeader(t *testing.T) {
	tests := []struct {
		name   string
		header Header
	}{
		{name: "empty kind", header: Header{}},
		{name: "kind too long", header: Header{Kind: string(make([]byte, MaxKind+1))}},
		{name: "meta too long", header: Header{Kind: testKind, Meta: make([]byte, MaxMeta+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, tt.header)
			if err == nil || w != nil {
				t.Errorf("got (%v, %v), want (nil, error)", w, err)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes, want 0", buf.Len())
			}
		})
	}
}

// failingWriter accepts limit bytes, then fails.
type failingWriter struct {
	limit  int
	closed bool
}

var errDisk = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n := f.limit
		f.limit = 0
		return n, errDisk
	}
	f.limit -= len(p)
	return len(p), nil
}

func (f *failingWriter) Close() error { f.closed = true; return nil }

func TestWriterErrorsAreSticky(t *testing.T) {
	fw := &failingWriter{limit: 10}
	w, err := NewWriter(fw, Header{Kind: testKind})
	if err != nil {
		t.Fatalf("NewWriter: got error %v, want nil (output is buffered)", err)
	}
	steps := []struct {
		name string
		call func() error
	}{
		{name: "large write reaches the writer", call: func() error { return w.Write(make([]byte, 2*bufferSize)) }},
		{name: "small write after failure", call: func() error { return w.Write([]byte("x")) }},
		{name: "close", call: w.Close},
		{name: "close again", call: w.Close},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.call(); !errors.Is(err, errDisk) {
				t.Errorf("got error %v, want one wrapping %v", err, errDisk)
			}
		})
	}
}

func TestWriterLifecycle(t *testing.T) {
	fw := &failingWriter{limit: 1 << 30}
	w, err := NewWriter(fw, Header{Kind: testKind})
	if err != nil {
		t.Fatalf("NewWriter: got error %v, want nil", err)
	}
	tooBig := make([]byte, MaxRecord+1)
	steps := []struct {
		name    string
		call    func() error
		wantErr error // nil: success; errAny: some error
	}{
		{name: "record above MaxRecord", call: func() error { return w.Write(tooBig) }, wantErr: errAny},
		{name: "writer still usable", call: func() error { return w.Write([]byte("ok")) }},
		{name: "close", call: w.Close},
		{name: "close again", call: w.Close},
		{name: "write after close", call: func() error { return w.Write([]byte("late")) }, wantErr: errClosed},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := s.call()
			switch {
			case s.wantErr == nil && err != nil:
				t.Errorf("got error %v, want nil", err)
			case s.wantErr == errAny && err == nil:
				t.Errorf("got nil error, want an error")
			case s.wantErr != nil && s.wantErr != errAny && !errors.Is(err, s.wantErr):
				t.Errorf("got error %v, want %v", err, s.wantErr)
			}
		})
	}
	if fw.closed {
		t.Errorf("underlying writer closed: got true, want false")
	}
}

var errAny = errors.New("any error")

func TestReaderIOErrorIsNotCorruption(t *testing.T) {
	data := smallStream(t)
	errNet := errors.New("connection reset")
	tests := []struct {
		name string
		r    io.Reader
	}{
		{name: "fails at once", r: iotest.ErrReader(errNet)},
		{name: "fails mid stream", r: io.MultiReader(bytes.NewReader(data[:40]), iotest.ErrReader(errNet))},
		{name: "fails after trailer", r: io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errNet))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, err := NewReader(tt.r, testKind, 0)
			for err == nil {
				_, err = r.Next()
			}
			if !errors.Is(err, errNet) || errors.Is(err, ErrCorrupt) {
				t.Errorf("got error %v, want one wrapping %v and not ErrCorrupt", err, errNet)
			}
		})
	}
}

func TestNextIsSticky(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{name: "after EOF", data: smallStream(t), want: io.EOF},
		{name: "after corruption", data: append(smallStream(t), 1), want: ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, err := NewReader(bytes.NewReader(tt.data), testKind, 0)
			if err != nil {
				t.Fatalf("NewReader: got error %v, want nil", err)
			}
			for err == nil {
				_, err = r.Next()
			}
			for i := range 3 {
				rec, again := r.Next()
				if !errors.Is(again, tt.want) || rec != nil {
					t.Errorf("call %d after the end: got (%v, %v), want (nil, %v)", i, rec, again, tt.want)
				}
			}
		})
	}
}

func TestEmptyRecordIsNonNil(t *testing.T) {
	data := encode(t, Header{Kind: testKind}, [][]byte{nil})
	r, _, err := NewReader(bytes.NewReader(data), testKind, 0)
	if err != nil {
		t.Fatalf("NewReader: got error %v, want nil", err)
	}
	rec, err := r.Next()
	if err != nil || rec == nil || len(rec) != 0 {
		t.Errorf("got (%#v, %v), want ([]byte{}, nil)", rec, err)
	}
}

// TestStreamingThroughPipe writes and reads concurrently through an io.Pipe,
// so neither side may hold the stream, and checks that the reader's buffer
// stays at the size of the largest record.
func TestStreamingThroughPipe(t *testing.T) {
	const (
		recordSize = 100 << 10
		records    = 200 // 20 MB in total
	)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		w, err := NewWriter(pw, Header{Kind: testKind})
		rec := make([]byte, recordSize)
		for i := 0; err == nil && i < records; i++ {
			binary.BigEndian.PutUint64(rec, uint64(i))
			err = w.Write(rec)
		}
		if err == nil {
			err = w.Close()
		}
		done <- err
		pw.CloseWithError(err)
	}()
	r, _, err := NewReader(pr, testKind, recordSize)
	if err != nil {
		t.Fatalf("NewReader: got error %v, want nil", err)
	}
	n := 0
	for ; ; n++ {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d records: got error %v, want nil", n, err)
		}
		if got := binary.BigEndian.Uint64(rec); got != uint64(n) || len(rec) != recordSize {
			t.Fatalf("record %d: got number %d, %d bytes; want %d, %d bytes", n, got, len(rec), n, recordSize)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("writer: got error %v, want nil", err)
	}
	if n != records {
		t.Errorf("records: got %d, want %d", n, records)
	}
	if c := cap(r.buf); c > 2*recordSize {
		t.Errorf("reader buffer capacity: got %d, want at most %d", c, 2*recordSize)
	}
}
