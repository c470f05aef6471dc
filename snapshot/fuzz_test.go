package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the Reader. Properties: no panic; every
// failure wraps ErrCorrupt or ErrVersion (the input is in memory, so there are
// no I/O errors, and any kind is accepted); and a stream that verifies is
// canonical: re-encoding its header and records gives back the input.
func FuzzReader(f *testing.F) {
	f.Add(encode(f, Header{Kind: testKind, Version: 7, Meta: []byte("idx=42")},
		[][]byte{[]byte("alpha"), {}, []byte("a somewhat longer third record")}))
	f.Add([]byte{})
	f.Add(encode(f, Header{Kind: "k"}, nil))
	f.Add(encode(f, Header{Kind: "embedkv-fsm", Meta: make([]byte, 300)}, randomRecords(20, 64, 7)))

	f.Fuzz(func(t *testing.T, data []byte) {
		const maxRecord = 1 << 16
		r, h, err := NewReader(bytes.NewReader(data), "", maxRecord)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("NewReader: got error %v, want one wrapping ErrCorrupt or ErrVersion", err)
			}
			return
		}
		var records [][]byte
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Next: got error %v, want one wrapping ErrCorrupt", err)
				}
				return
			}
			if len(rec) > maxRecord {
				t.Fatalf("Next: got a %d-byte record, want at most %d", len(rec), maxRecord)
			}
			records = append(records, bytes.Clone(rec))
		}
		if again := encode(t, h, records); !bytes.Equal(again, data) {
			t.Fatalf("verified stream is not canonical: re-encoded %d bytes %x, input %d bytes %x",
				len(again), again, len(data), data)
		}
	})
}

// BenchmarkWriteRead writes then reads back 100k 300-byte records.
func BenchmarkWriteRead(b *testing.B) {
	const (
		records    = 100_000
		recordSize = 300
	)
	rec := bytes.Repeat([]byte{0x5a}, recordSize)
	var buf bytes.Buffer
	b.ReportAllocs()
	b.SetBytes(records * recordSize)
	for b.Loop() {
		buf.Reset()
		w, err := NewWriter(&buf, Header{Kind: testKind})
		if err != nil {
			b.Fatal(err)
		}
		for range records {
			if err := w.Write(rec); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		r, _, err := NewReader(bytes.NewReader(buf.Bytes()), testKind, 0)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != records {
			b.Fatalf("read %d records, want %d", n, records)
		}
	}
}
