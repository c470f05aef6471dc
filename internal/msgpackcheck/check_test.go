package msgpackcheck

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testDepth is the maxDepth used where depth is not what is tested.
const testDepth = 64

// hostile is the input that makes msgpack/v5 v5.4.1 allocate 4 GiB.
var hostile = []byte{0x81, 0xa1, 0x76, 0xc6, 0xff, 0xff, 0xff, 0xff}

// unhex decodes hex with spaces allowed, for readable test vectors.
func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// families holds a hand-made encoding of every msgpack format family.
var families = []struct{ name, hex string }{
	{"positive fixint 0", "00"},
	{"positive fixint 127", "7f"},
	{"negative fixint -32", "e0"},
	{"negative fixint -1", "ff"},
	{"empty fixmap", "80"},
	{"fixmap", "82 a1 61 01 a1 62 c0"},
	{"empty fixarray", "90"},
	{"fixarray", "93 01 a0 c3"},
	{"empty fixstr", "a0"},
	{"fixstr 31", "bf" + strings.Repeat("61", 31)},
	{"nil", "c0"},
	{"false", "c2"},
	{"true", "c3"},
	{"bin8", "c4 02 01 02"},
	{"bin16", "c5 0001 ff"},
	{"bin32", "c6 00000001 ff"},
	{"empty bin8", "c4 00"},
	{"ext8", "c7 01 05 aa"},
	{"ext16", "c8 0002 05 aa bb"},
	{"ext32", "c9 00000001 05 aa"},
	{"empty ext8", "c7 00 05"},
	{"float32", "ca 3fc00000"},
	{"float64", "cb 400921fb54442d18"},
	{"uint8", "cc ff"},
	{"uint16", "cd ffff"},
	{"uint32", "ce ffffffff"},
	{"uint64", "cf ffffffffffffffff"},
	{"int8", "d0 80"},
	{"int16", "d1 8000"},
	{"int32", "d2 80000000"},
	{"int64", "d3 8000000000000000"},
	{"fixext1", "d4 05 aa"},
	{"fixext2", "d5 05 aabb"},
	{"fixext4", "d6 05 aabbccdd"},
	{"fixext8", "d7 05 0102030405060708"},
	{"fixext16", "d8 05 0102030405060708090a0b0c0d0e0f10"},
	{"str8", "d9 03 616263"},
	{"str16", "da 0003 616263"},
	{"str32", "db 00000003 616263"},
	{"array16", "dc 0002 01 02"},
	{"array32", "dd 00000001 c0"},
	{"map16", "de 0001 a1 6b 01"},
	{"map32", "df 00000001 a1 6b 90"},
	{"timestamp32", "d6 ff 00000001"},
	{"timestamp64", "d7 ff 00000004 00000001"},
	{"timestamp96", "c7 0c ff 3b9ac9ff 0000000400000000"},
	{"negative timestamp96", "c7 0c ff 00000000 fffffff1886e0900"},
}

// TestFamiliesCoverEveryLeadByte makes sure the families table has an
// example for every non-fix lead byte.
func TestFamiliesCoverEveryLeadByte(t *testing.T) {
	seen := make(map[byte]bool)
	for _, f := range families {
		seen[unhex(t, f.hex)[0]] = true
	}
	for c := 0xc0; c <= 0xdf; c++ {
		if c != 0xc1 && !seen[byte(c)] {
			t.Errorf("lead byte 0x%02x: got no example, want one", c)
		}
	}
}

func TestFamilies(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			b := unhex(t, f.hex)
			if err := Check(b, testDepth); err != nil {
				t.Errorf("Check(%x): got error %v, want nil", b, err)
			}
			assertTruncationsFail(t, b)
			if err := Check(append(bytes.Clone(b), 0xc0), testDepth); !errors.Is(err, ErrMalformed) {
				t.Errorf("Check with a trailing byte: got %v, want ErrMalformed", err)
			}
		})
	}
}

// assertTruncationsFail checks that every proper prefix of b fails Check.
// For long inputs it tries a sample of prefixes.
func assertTruncationsFail(t *testing.T, b []byte) {
	t.Helper()
	step := 1
	if len(b) > 4096 {
		step = 997
	}
	for n := 0; n < len(b); n += step {
		if err := Check(b[:n], testDepth); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Check(first %d of %d bytes): got %v, want ErrMalformed", n, len(b), err)
		}
	}
	for n := max(0, len(b)-64); n < len(b); n++ {
		if err := Check(b[:n], testDepth); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Check(first %d of %d bytes): got %v, want ErrMalformed", n, len(b), err)
		}
	}
}

type inner struct {
	A   int
	B   string
	C   []byte
	T   time.Time
	M   map[string]any
	Opt *int `msgpack:",omitempty"`
}

type outer struct {
	ID     uint64
	Name   string
	Tags   []string
	Inner  inner
	Ptr    *inner
	Nested [][]int
	F32    float32
	F64    float64
	I8     int8
	I16    int16
	I32    int32
	I64    int64
	U8     uint8
	U16    uint16
	U32    uint32
	Any    any
}

type asArray struct {
	_msgpack struct{} `msgpack:",as_array"`
	X, Y     int
	Label    string
}

// sampleStruct returns a struct value whose encoding is 300 bytes.
func sampleStruct() outer {
	return outer{
		ID: 1 << 40, Name: "/registry/services/endpoints/default/kubernetes", Tags: []string{"a", "bb", "ccc", "dd"},
		Inner: inner{A: -7, B: "inner", C: bytes.Repeat([]byte{0xee}, 48), T: time.Unix(1700000000, 5),
			M: map[string]any{"k": 1.5, "l": []any{nil, true, "x"}}},
		Nested: [][]int{{1, 2}, {}, {3}},
		F32:    1.5, F64: math.Pi, I8: -128, I16: -300, I32: -70000, I64: math.MinInt64,
		U8: 255, U16: 65535, U32: math.MaxUint32, Any: map[string]any{"deep": [][]string{{"z"}}},
	}
}

func manyInts(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i * 37
	}
	return out
}

func manyKeys(n int) map[string]any {
	out := make(map[string]any, n)
	for i := range n {
		out[fmt.Sprint("key", i)] = i
	}
	return out
}

func TestMarshaledValuesPass(t *testing.T) {
	seven := 7
	tests := []struct {
		name  string
		value any
	}{
		{"nil", nil},
		{"bools", []bool{true, false}},
		{"small ints", []int{0, 1, 127, 128, 255, 256, -1, -32, -33, -128, -129}},
		{"big ints", []any{uint64(math.MaxUint64), int64(math.MinInt64), int64(math.MaxInt64), uint32(math.MaxUint32)}},
		{"big.Int", new(big.Int).Lsh(big.NewInt(1), 200)},
		{"floats", []any{float32(1.5), math.Pi, math.Inf(-1), math.NaN()}},
		{"empty string", ""},
		{"string 31", strings.Repeat("s", 31)},
		{"string 32", strings.Repeat("s", 32)},
		{"string 256", strings.Repeat("s", 256)},
		{"string 65536", strings.Repeat("s", 65536)},
		{"empty bytes", []byte{}},
		{"bytes 256", bytes.Repeat([]byte{7}, 256)},
		{"bytes 65536", bytes.Repeat([]byte{7}, 65536)},
		{"zero time", time.Time{}},
		{"epoch", time.Unix(0, 0)},
		{"time with nanos", time.Unix(1700000000, 123456789)},
		{"time beyond 2514", time.Date(3000, 1, 2, 3, 4, 5, 6, time.UTC)},
		{"time before 1970", time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)},
		{"slice 16", manyInts(16)},
		{"slice 70000", manyInts(70000)},
		{"map 16", manyKeys(16)},
		{"map 70000", manyKeys(70000)},
		{"map int keys", map[int]string{1: "a", -2: "b"}},
		{"nested slices", [][][]string{{{"a"}, {}}, {{"b", "c"}}}},
		{"struct", sampleStruct()},
		{"struct pointer with optional", &inner{Opt: &seven, M: map[string]any{}}},
		{"struct as array", asArray{X: 1, Y: -2, Label: "p"}},
		{"slice of structs", []outer{sampleStruct(), {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := msgpack.Marshal(tt.value)
			if err != nil {
				t.Fatalf("Marshal: got error %v, want nil", err)
			}
			if err := Check(b, testDepth); err != nil {
				t.Errorf("Check(%d bytes %.32x): got error %v, want nil", len(b), b, err)
			}
			assertTruncationsFail(t, b)
		})
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct{ name, hex string }{
		{"empty input", ""},
		{"hostile bin32 in map", hex.EncodeToString(hostile)},
		{"str32 of 4 GiB", "db ffffffff 61"},
		{"ext32 of 4 GiB", "c9 ffffffff 05 00"},
		{"bin16 one byte short", "c5 0002 00"},
		{"array32 of 4G elements", "dd ffffffff c0 c0"},
		{"map32 of 4G entries", "df ffffffff c0 c0"},
		{"array count above bytes left", "93 01 02"},
		{"map entries need two bytes", "82 01 02 03"},
		{"counts pending in parents", "92 93 01 01 01"},
		{"reserved byte", "c1"},
		{"reserved byte nested", "81 a1 61 c1"},
		{"trailing byte", "c0 c0"},
		{"trailing byte after array", "91 01 02"},
		{"two values", "01 02"},
		{"timestamp of 2 bytes", "d5 ff 0000"},
		{"timestamp of 5 bytes", "c7 05 ff 0000000000"},
		{"timestamp64 nanos too big", "d7 ff ee6b2800 00000000"},
		{"timestamp96 nanos too big", "c7 0c ff 3b9aca00 0000000000000000"},
		{"missing ext type", "d4"},
		{"missing length", "dc 00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := unhex(t, tt.hex)
			err := Check(b, testDepth)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Check(%x): got %v, want ErrMalformed", b, err)
			}
			if !strings.Contains(err.Error(), "offset ") {
				t.Errorf("error %q: got no offset, want one", err)
			}
		})
	}
}

// nest wraps leaf in depth-1 levels of the container built by wrap.
func nest(depth int, leaf []byte, wrap func(inner []byte) []byte) []byte {
	b := leaf
	for range depth - 1 {
		b = wrap(b)
	}
	return b
}

func TestDepthLimit(t *testing.T) {
	fixarray := func(in []byte) []byte { return append([]byte{0x91}, in...) }
	fixmap := func(in []byte) []byte { return append([]byte{0x81, 0xa1, 'k'}, in...) }
	array16 := func(in []byte) []byte { return append([]byte{0xdc, 0x00, 0x02, 0x01}, in...) }
	tests := []struct {
		name  string
		value []byte
		depth int
	}{
		{"scalar", []byte{0x01}, 0},
		{"string", []byte{0xa1, 'x'}, 0},
		{"empty array", []byte{0x90}, 1},
		{"empty map", []byte{0x80}, 1},
		{"array of scalar", []byte{0x91, 0x01}, 1},
		{"deepest element first", unhex(t, "92 91 90 01"), 3},
		{"deepest element last", unhex(t, "93 01 90 91 91 c0"), 3},
		{"map value", unhex(t, "82 a1 61 01 a1 62 91 90"), 3},
		{"map key", unhex(t, "81 91 90 01"), 3},
		{"nested fixarrays 32", nest(32, []byte{0x90}, fixarray), 32},
		{"nested fixarrays 33", nest(33, []byte{0x90}, fixarray), 33},
		{"nested fixmaps 100", nest(100, []byte{0x80}, fixmap), 100},
		{"nested array16 1000", nest(1000, []byte{0x91, 0x01}, array16), 1000},
		{"struct with nested slices", mustMarshal(t, struct{ A struct{ B [][]int } }{}), 2},
		{"struct with filled nested slices", mustMarshal(t, struct{ A struct{ B [][]int } }{
			A: struct{ B [][]int }{B: [][]int{{1}}}}), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(tt.value, tt.depth); err != nil {
				t.Errorf("Check(maxDepth %d): got error %v, want nil", tt.depth, err)
			}
			if tt.depth == 0 {
				if err := Check(tt.value, -1); err != nil {
					t.Errorf("Check(maxDepth -1): got error %v, want nil (same as 0)", err)
				}
				return
			}
			err := Check(tt.value, tt.depth-1)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "nesting") {
				t.Errorf("Check(maxDepth %d): got %v, want a nesting ErrMalformed", tt.depth-1, err)
			}
		})
	}
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		tb.Fatalf("Marshal: got error %v, want nil", err)
	}
	return b
}

func TestZeroAllocations(t *testing.T) {
	tests := []struct {
		name  string
		value []byte
	}{
		{"struct", mustMarshal(t, sampleStruct())},
		{"nested 32", nest(32, []byte{0x90}, func(in []byte) []byte { return append([]byte{0x91}, in...) })},
		{"map 16", mustMarshal(t, manyKeys(16))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				if err := Check(tt.value, testDepth); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("allocations per Check: got %v, want 0", allocs)
			}
		})
	}
}

// FuzzCheck's property: whatever Check accepts, msgpack.Unmarshal into an
// interface{} decodes without panicking (an error is fine). Also, as msgpack
// is self-delimiting, an accepted value stops being accepted when a byte is
// removed from or added to its end.
func FuzzCheck(f *testing.F) {
	f.Add(hostile)
	f.Add(mustMarshal(f, sampleStruct()))
	f.Add(mustMarshal(f, []any{time.Unix(1, 2), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), []byte("b")}))
	for _, fam := range families {
		f.Add(unhex(f, fam.hex))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxDepth = 32
		err := Check(data, maxDepth)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Check: got error %v, want one wrapping ErrMalformed", err)
			}
			return
		}
		var v any
		_ = msgpack.Unmarshal(data, &v)
		if err := Check(data[:len(data)-1], maxDepth); err == nil {
			t.Fatalf("Check(input less its last byte): got nil, want an error")
		}
		if err := Check(append(data[:len(data):len(data)], 0), maxDepth); err == nil {
			t.Fatalf("Check(input plus a byte): got nil, want an error")
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	data := mustMarshal(b, sampleStruct())
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Check(data, testDepth); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "input-bytes")
}
