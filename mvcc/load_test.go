package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// Record-crafting helpers: rec(tag, parts...) where a part is u (uvarint),
// sv (signed varint), bs (length-prefixed bytes) or raw (verbatim bytes).
type (
	u   uint64
	sv  int64
	bs  string
	raw []byte
)

func rec(tag byte, parts ...any) []byte {
	r := []byte{tag}
	for _, p := range parts {
		switch p := p.(type) {
		case u:
			r = binary.AppendUvarint(r, uint64(p))
		case sv:
			r = binary.AppendVarint(r, int64(p))
		case bs:
			r = binary.AppendUvarint(r, uint64(len(p)))
			r = append(r, p...)
		case raw:
			r = append(r, p...)
		default:
			panic("bad part")
		}
	}
	return r
}

func crcOf(recs [][]byte) uint32 {
	h := crc32.New(crcTable)
	for _, r := range recs {
		h.Write(binary.AppendUvarint(nil, uint64(len(r))))
		h.Write(r)
	}
	return h.Sum32()
}

// seal appends a trailer with the given counts and a correct checksum.
func seal(recs [][]byte, nbase, nbatch, nev uint64) [][]byte {
	t := rec(tagTrailer, u(nbase), u(nbatch), u(nev))
	t = binary.LittleEndian.AppendUint32(t, crcOf(recs))
	return append(recs, t)
}

// reseal fixes the checksum of a final trailer record, if there is one, so
// that mutated input reaches the semantic checks.
func reseal(recs [][]byte) [][]byte {
	n := len(recs)
	if n == 0 || len(recs[n-1]) < 5 || recs[n-1][0] != tagTrailer {
		return recs
	}
	t := append([]byte(nil), recs[n-1]...)
	binary.LittleEndian.PutUint32(t[len(t)-4:], crcOf(recs[:n-1]))
	return append(recs[:n-1:n-1], t)
}

func hdr(rev, c int64) []byte { return rec(tagHeader, u(formatVersion), u(rev), u(c)) }

func TestLoadCrafted(t *testing.T) {
	put := func(key, val string) []any { return []any{u(0), bs(key), bs(val), sv(0)} }
	delete := func(key string) []any { return []any{u(flagDelete), bs(key)} }
	batch := func(rev int64, evs ...[]any) []any {
		parts := []any{u(rev), u(len(evs))}
		for _, e := range evs {
			parts = append(parts, e...)
		}
		return parts
	}
	cat := func(parts ...[]any) []any {
		var out []any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// full-form events of the batch at the compaction revision
	fput := func(key, val string, kind int) []any {
		return []any{raw{byte(kind << prevShift)}, bs(key), bs(val), sv(0)}
	}
	fdel := func(key string, kind int) []any {
		return []any{raw{byte(flagDelete | kind<<prevShift)}, bs(key)}
	}
	base := func(key, val string, create, mod, ver int64) []any {
		return []any{bs(key), bs(val), u(create), u(mod), u(ver), sv(0)}
	}
	valid := [][]byte{hdr(3, 0), rec(tagEvents, cat(batch(2, put("a", "1")), batch(3, delete("a")))...)}
	tests := []struct {
		name string
		recs [][]byte
		want string // substring of the error; "" = loads fine
	}{
		{"valid", seal(valid, 0, 2, 2), ""},
		{"valid compacted", seal([][]byte{hdr(3, 2), rec(tagBase, base("a", "1", 2, 2, 1)...),
			rec(tagEvents, cat(batch(2, fput("a", "1", prevNone)), batch(3, put("a", "2")))...)}, 1, 2, 2), ""},
		{"no records", nil, "no trailer"},
		{"no trailer", valid, "no trailer"},
		{"empty record", [][]byte{hdr(1, 0), {}}, "empty record"},
		{"first not header", seal([][]byte{rec(tagEvents)}, 0, 0, 0), "not a header"},
		{"bad version", seal([][]byte{rec(tagHeader, u(2), u(1), u(0))}, 0, 0, 0), "format version"},
		{"header trailing bytes", seal([][]byte{rec(tagHeader, u(1), u(1), u(0), u(0))}, 0, 0, 0), "trailing bytes"},
		{"revision zero", seal([][]byte{hdr(0, 0)}, 0, 0, 0), "revision 0"},
		{"revision out of range", seal([][]byte{rec(tagHeader, u(1), u(1<<63), u(0))}, 0, 0, 0), "out of range"},
		{"compaction above revision", seal([][]byte{hdr(3, 4)}, 0, 0, 0), "above revision"},
		{"second header", seal([][]byte{hdr(1, 0), hdr(1, 0)}, 0, 0, 0), "second header"},
		{"unknown tag", seal([][]byte{hdr(1, 0), rec('Z')}, 0, 0, 0), "unknown record tag"},
		{"batch above stated revision", seal([][]byte{hdr(2, 0), valid[1]}, 0, 2, 2), "above the stated revision"},
		{"revision regression", seal([][]byte{hdr(3, 0), rec(tagEvents, cat(batch(2, put("a", "1")), batch(2, put("a", "1")))...)}, 0, 2, 2), "want 3"},
		{"revision gap", seal([][]byte{hdr(4, 0), rec(tagEvents, cat(batch(2, put("a", "1")), batch(4, put("a", "1")))...)}, 0, 2, 2), "want 3"},
		{"events end early", seal([][]byte{hdr(4, 0), valid[1]}, 0, 2, 2), "events end at revision 3"},
		{"empty batch", seal([][]byte{hdr(2, 0), rec(tagEvents, batch(2)...)}, 0, 1, 0), "empty event batch"},
		{"delete of absent key", seal([][]byte{hdr(2, 0), rec(tagEvents, batch(2, delete("x"))...)}, 0, 1, 1), "deletes absent key"},
		{"bad event flags", seal([][]byte{hdr(2, 0), rec(tagEvents, batch(2, []any{u(6), bs("a")})...)}, 0, 1, 1), "bad event flags"},
		{"length exceeds record", seal([][]byte{hdr(2, 0), rec(tagEvents, u(2), u(1), u(0), u(1000), raw("ab"))}, 0, 1, 1), "exceeds"},
		{"huge event count", seal([][]byte{hdr(2, 0), rec(tagEvents, cat([]any{u(2), u(1 << 60)}, put("a", "1"))...)}, 0, 1, 1), "more than a revision can"},
		{"event count beyond the input", seal([][]byte{hdr(2, 0), rec(tagEvents, cat([]any{u(2), u(1 << 20)}, put("a", "1"))...)}, 0, 1, 1), "truncated"},
		{"bad varint", seal([][]byte{hdr(2, 0), rec(tagEvents, raw(bytes.Repeat([]byte{0xff}, 11)))}, 0, 0, 0), "varint"},
		{"base after events", seal([][]byte{hdr(3, 0), valid[1], rec(tagBase)}, 0, 2, 2), "base record after events"},
		{"base out of order", seal([][]byte{hdr(2, 2), rec(tagBase, cat(base("b", "1", 2, 2, 1), base("a", "1", 2, 2, 1))...)}, 2, 0, 0), "not after"},
		{"base duplicate key", seal([][]byte{hdr(2, 2), rec(tagBase, cat(base("a", "1", 2, 2, 1), base("a", "1", 2, 2, 1))...)}, 2, 0, 0), "not after"},
		{"base newer than compaction", seal([][]byte{hdr(3, 2), rec(tagBase, base("a", "1", 2, 3, 1)...)}, 1, 0, 0), "bad create/mod/version"},
		{"base version 1 not created at mod", seal([][]byte{hdr(3, 3), rec(tagBase, base("a", "1", 2, 3, 1)...)}, 1, 0, 0), "bad create/mod/version"},
		{"base without compaction", seal([][]byte{hdr(3, 1), rec(tagBase, base("a", "1", 2, 2, 1)...)}, 1, 0, 0), "bad create/mod/version"},
		{"batch at compaction disagrees with base", seal([][]byte{hdr(2, 2), rec(tagBase, base("a", "1", 2, 2, 1)...),
			rec(tagEvents, batch(2, fput("a", "2", prevNone))...)}, 1, 1, 1), "disagrees"},
		{"base key modified at compaction missing from batch", seal([][]byte{hdr(2, 2),
			rec(tagBase, cat(base("a", "1", 2, 2, 1), base("b", "1", 2, 2, 1))...),
			rec(tagEvents, batch(2, fput("a", "1", prevNone))...)}, 2, 1, 1), "base state has 2 keys"},
		{"deleted at compaction but live in base", seal([][]byte{hdr(2, 2), rec(tagBase, base("a", "1", 2, 2, 1)...),
			rec(tagEvents, batch(2, fput("a", "1", prevNone), fdel("a", prevInBatch))...)}, 1, 1, 2), "deleted at compaction revision"},
		{"prev kind inconsistent in batch", seal([][]byte{hdr(2, 2), rec(tagBase, base("a", "2", 2, 2, 2)...),
			rec(tagEvents, batch(2, fput("a", "1", prevNone), fput("a", "2", prevNone))...)}, 1, 1, 2), "inconsistent within the batch"},
		{"prev in batch for untouched key", seal([][]byte{hdr(2, 2), rec(tagBase, base("a", "1", 2, 2, 1)...),
			rec(tagEvents, batch(2, fput("a", "1", prevInBatch))...)}, 1, 1, 1), "previous-value kind"},
		{"inline prev not older than compaction", seal([][]byte{hdr(2, 2), rec(tagBase, base("a", "1", 2, 2, 2)...),
			rec(tagEvents, batch(2, cat(fput("a", "1", prevInline), []any{bs("0"), u(2), u(2), u(1), sv(0)}))...)}, 1, 1, 1), "bad previous version"},
		{"delete without prev at compaction", seal([][]byte{hdr(2, 2),
			rec(tagEvents, batch(2, fdel("a", prevNone))...)}, 0, 1, 1), "deletes absent key"},
		{"missing batch at compaction", seal([][]byte{hdr(3, 2), rec(tagEvents, batch(3, put("a", "1"))...)}, 0, 1, 1), "want 2"},
		{"trailer counts", seal(valid, 0, 2, 3), "trailer counts"},
		{"trailer short checksum", append(valid, rec(tagTrailer, u(0), u(2), u(2), raw{1, 2})), "checksum bytes"},
		{"checksum mismatch", append(valid, binary.LittleEndian.AppendUint32(rec(tagTrailer, u(0), u(2), u(2)), 12345)), "checksum mismatch"},
		{"data after trailer", append(seal(valid, 0, 2, 2), []byte("x")), "after the trailer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadRecords(tt.recs)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				checkInvariants(t, s)
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error %v, want ErrCorrupt containing %q", err, tt.want)
			}
			if s != nil {
				t.Errorf("Load returned a store with an error")
			}
		})
	}
}

func TestLoadNextErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	tests := []struct {
		name        string
		err         error
		wantCorrupt bool
	}{
		{"other error passes through", boom, false},
		{"unexpected EOF is corruption", io.ErrUnexpectedEOF, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			_, err := Load(func() ([]byte, error) {
				if n++; n == 1 {
					return hdr(1, 0), nil
				}
				return nil, tt.err
			})
			if !errors.Is(err, tt.err) || errors.Is(err, ErrCorrupt) != tt.wantCorrupt {
				t.Errorf("got %v, want wrapping %v (corrupt: %v)", err, tt.err, tt.wantCorrupt)
			}
		})
	}
}

// corruptionBase returns the records of a small store with some history and
// a batch at its compaction revision.
func corruptionBase(t testing.TB) [][]byte {
	s := edgeStores(t)["batch at compaction"]
	g := gen{rand.New(rand.NewSource(5)), 6, 0}
	for range 20 {
		randomOp(g, s)
	}
	return dumpRecords(t, s.View())
}

func TestLoadTruncatedAndFlipped(t *testing.T) {
	mustCorrupt := func(t *testing.T, what string, recs [][]byte) {
		t.Helper()
		if _, err := loadRecords(recs); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: got %v, want ErrCorrupt", what, err)
		}
	}
	bases := map[string][][]byte{
		"history":          corruptionBase(t),
		"multi-record":     dumpRecords(t, edgeStores(t)["compacted at rev"].View()),
		"compacted at one": dumpRecords(t, edgeStores(t)["compacted at 1"].View()),
	}
	for name, recs := range bases {
		t.Run(name, func(t *testing.T) {
			if _, err := loadRecords(recs); err != nil {
				t.Fatalf("intact dump: %v", err)
			}
			testCorruptions(t, recs, mustCorrupt)
		})
	}
	t.Run("garbage", func(t *testing.T) {
		rng := rand.New(rand.NewSource(9))
		for range 200 {
			var c [][]byte
			for range 1 + rng.Intn(4) {
				r := make([]byte, rng.Intn(64))
				rng.Read(r)
				c = append(c, r)
			}
			if rng.Intn(2) == 0 {
				c[0] = hdr(rng.Int63n(10), rng.Int63n(10))
			}
			mustCorrupt(t, "garbage", reseal(c))
		}
	})
}

// testCorruptions drops, truncates and flips parts of recs.
func testCorruptions(t *testing.T, recs [][]byte, mustCorrupt func(*testing.T, string, [][]byte)) {
	t.Run("records dropped", func(t *testing.T) {
		for n := range recs {
			mustCorrupt(t, "first records only", recs[:n])
			mustCorrupt(t, "one record missing", append(append([][]byte{}, recs[:n]...), recs[n+1:]...))
		}
	})
	t.Run("record truncated", func(t *testing.T) {
		for i, r := range recs {
			for cut := 0; cut < len(r); cut += 1 + len(r)/97 {
				c := append([][]byte{}, recs...)
				c[i] = r[:cut]
				mustCorrupt(t, "truncated record", c)
			}
		}
	})
	t.Run("byte flipped", func(t *testing.T) {
		for i, r := range recs {
			for pos := 0; pos < len(r); pos += 1 + len(r)/211 {
				for _, x := range []byte{0x01, 0x80, 0xff} {
					c := append([][]byte{}, recs...)
					c[i] = append([]byte(nil), r...)
					c[i][pos] ^= x
					mustCorrupt(t, "flipped byte", c)
				}
			}
		}
	})
}

// frame and unframe convert between record lists and fuzz inputs: each
// record is a uvarint length and its bytes; a malformed length makes the
// rest of the input the last record.
func frame(recs [][]byte) []byte {
	var out []byte
	for _, r := range recs {
		out = binary.AppendUvarint(out, uint64(len(r)))
		out = append(out, r...)
	}
	return out
}

func unframe(data []byte) [][]byte {
	var recs [][]byte
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			return append(recs, data)
		}
		recs = append(recs, data[k:k+int(n)])
		data = data[k+int(n):]
	}
	return recs
}

// FuzzLoad feeds arbitrary records to Load. The first input byte selects
// whether the trailer checksum is fixed up first (so that mutations reach
// the semantic checks). Load must never panic and must fail only with
// ErrCorrupt; whatever it accepts must be internally consistent and
// survive another Dump/Load round trip unchanged.
func FuzzLoad(f *testing.F) {
	for _, s := range edgeStores(f) {
		fr := frame(dumpRecords(f, s.View()))
		if len(fr) > 4096 {
			continue // big seeds make minimisation crawl
		}
		f.Add(append([]byte{0}, fr...))
		f.Add(append([]byte{1}, fr...))
	}
	f.Add(append([]byte{1}, frame(corruptionBase(f))...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs [][]byte
		if len(data) > 0 {
			recs = unframe(data[1:])
			if data[0]&1 == 1 {
				recs = reseal(recs)
			}
		}
		s, err := loadRecords(recs)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		checkInvariants(t, s)
		again, err := loadRecords(dumpRecords(t, s.View()))
		if err != nil {
			t.Fatalf("reloading an accepted snapshot: %v", err)
		}
		sameViews(t, again.View(), s.View())
	})
}
