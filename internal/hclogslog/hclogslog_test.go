package hclogslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// entry is one record seen by the capture handler.
type entry struct {
	level slog.Level
	msg   string
	attrs []string // "key=value", handler attributes first
	file  string   // base name of the source file of the record's PC
}

// sink collects entries; it is shared by a capture handler and the handlers
// derived from it.
type sink struct {
	mu      sync.Mutex
	entries []entry
}

func (s *sink) all() []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.entries)
}

// capture is a slog.Handler that records everything at or above min.
type capture struct {
	sink  *sink
	min   slog.Level
	attrs []string
}

func newCapture(min slog.Level) (*capture, *sink) {
	s := &sink{}
	return &capture{sink: s, min: min}, s
}

func (c *capture) Enabled(_ context.Context, l slog.Level) bool { return l >= c.min }

func (c *capture) Handle(_ context.Context, r slog.Record) error {
	e := entry{level: r.Level, msg: r.Message, attrs: slices.Clone(c.attrs)}
	r.Attrs(func(a slog.Attr) bool {
		e.attrs = append(e.attrs, fmt.Sprintf("%s=%v", a.Key, a.Value.Any()))
		return true
	})
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		e.file = filepath.Base(f.File)
	}
	c.sink.mu.Lock()
	defer c.sink.mu.Unlock()
	c.sink.entries = append(c.sink.entries, e)
	return nil
}

func (c *capture) WithAttrs(attrs []slog.Attr) slog.Handler {
	d := *c
	d.attrs = slices.Clone(c.attrs)
	for _, a := range attrs {
		d.attrs = append(d.attrs, fmt.Sprintf("%s=%v", a.Key, a.Value.Any()))
	}
	return &d
}

func (c *capture) WithGroup(string) slog.Handler { return c }

// newTest returns a logger named name on a capture handler with minimum
// level min, and the sink of its records.
func newTest(min slog.Level, name string) (hclog.Logger, *sink) {
	h, s := newCapture(min)
	return New(slog.New(h), name), s
}

// only returns the single entry of s, failing the test otherwise.
func only(t *testing.T, s *sink) entry {
	t.Helper()
	es := s.all()
	if len(es) != 1 {
		t.Fatalf("records: got %d %+v, want 1", len(es), es)
	}
	return es[0]
}

func TestLevels(t *testing.T) {
	tests := []struct {
		name string
		log  func(l hclog.Logger)
		want slog.Level
	}{
		{"Trace", func(l hclog.Logger) { l.Trace("m") }, slog.LevelDebug - 4},
		{"Debug", func(l hclog.Logger) { l.Debug("m") }, slog.LevelDebug},
		{"Info", func(l hclog.Logger) { l.Info("m") }, slog.LevelInfo},
		{"Warn", func(l hclog.Logger) { l.Warn("m") }, slog.LevelWarn},
		{"Error", func(l hclog.Logger) { l.Error("m") }, slog.LevelError},
		{"Log Trace", func(l hclog.Logger) { l.Log(hclog.Trace, "m") }, LevelTrace},
		{"Log Warn", func(l hclog.Logger) { l.Log(hclog.Warn, "m") }, slog.LevelWarn},
		{"Log NoLevel is Info", func(l hclog.Logger) { l.Log(hclog.NoLevel, "m") }, slog.LevelInfo},
		{"Log unknown level is Info", func(l hclog.Logger) { l.Log(hclog.Level(42), "m") }, slog.LevelInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, s := newTest(slog.Level(-100), "")
			tt.log(l)
			e := only(t, s)
			if e.level != tt.want || e.msg != "m" {
				t.Errorf("got level %v msg %q, want level %v msg %q", e.level, e.msg, tt.want, "m")
			}
			if e.file != "hclogslog_test.go" {
				t.Errorf("source file: got %q, want %q", e.file, "hclogslog_test.go")
			}
		})
	}
}

func TestLogOffIsDropped(t *testing.T) {
	l, s := newTest(slog.Level(-100), "")
	l.Log(hclog.Off, "never")
	if got := len(s.all()); got != 0 {
		t.Errorf("records: got %d, want 0", got)
	}
}

func TestArgs(t *testing.T) {
	stack := hclog.CapturedStacktrace("goroutine 1 [running]")
	tests := []struct {
		name string
		args []any
		want []string
	}{
		{"none", nil, nil},
		{"pairs", []any{"a", 1, "b", "two"}, []string{"a=1", "b=two"}},
		{"odd value", []any{"a", 1, "stray"}, []string{"a=1", "EXTRA_VALUE_AT_END=stray"}},
		{"only a stray value", []any{3.5}, []string{"EXTRA_VALUE_AT_END=3.5"}},
		{"int key", []any{7, "v"}, []string{"7=v"}},
		{"nil key", []any{nil, "v"}, []string{"<nil>=v"}},
		{"error value", []any{"error", errors.New("boom")}, []string{"error=boom"}},
		{"hclog wrappers", []any{"h", hclog.Hex(255), "o", hclog.Octal(8), "b", hclog.Binary(5), "q", hclog.Quote("a\nb")},
			[]string{"h=0xff", "o=010", "b=0b101", "q=a\nb"}},
		{"hclog.Fmt", []any{"f", hclog.Fmt("%d-%s", 1, "x")}, []string{"f=1-x"}},
		{"malformed hclog.Format", []any{"f", hclog.Format{1, 2}, "g", hclog.Format{}}, []string{"f=1 2", "g="}},
		{"stack trace", []any{"a", 1, stack}, []string{"a=1", "stacktrace=goroutine 1 [running]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, s := newTest(slog.LevelInfo, "")
			l.Info("m", tt.args...)
			if e := only(t, s); !slices.Equal(e.attrs, tt.want) {
				t.Errorf("attrs: got %q, want %q", e.attrs, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		name     string
		logger   func(l hclog.Logger) hclog.Logger
		wantName string
		want     []string
	}{
		{"root", func(l hclog.Logger) hclog.Logger { return l }, "raft", []string{"logger=raft"}},
		{"Named", func(l hclog.Logger) hclog.Logger { return l.Named("fsm") }, "raft.fsm", []string{"logger=raft.fsm"}},
		{"Named twice", func(l hclog.Logger) hclog.Logger { return l.Named("a").Named("b") }, "raft.a.b", []string{"logger=raft.a.b"}},
		{"ResetNamed", func(l hclog.Logger) hclog.Logger { return l.Named("a").ResetNamed("other") }, "other", []string{"logger=other"}},
		{"ResetNamed empty", func(l hclog.Logger) hclog.Logger { return l.ResetNamed("") }, "", nil},
		{"Named keeps With", func(l hclog.Logger) hclog.Logger { return l.With("k", 1).Named("n") }, "raft.n", []string{"logger=raft.n", "k=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, s := newTest(slog.LevelInfo, "raft")
			l := tt.logger(root)
			l.Info("m")
			if got := l.Name(); got != tt.wantName {
				t.Errorf("Name: got %q, want %q", got, tt.wantName)
			}
			if e := only(t, s); !slices.Equal(e.attrs, tt.want) {
				t.Errorf("attrs: got %q, want %q", e.attrs, tt.want)
			}
		})
	}
}

func TestNamedOnUnnamed(t *testing.T) {
	l, _ := newTest(slog.LevelInfo, "")
	if got := l.Named("fsm").Name(); got != "fsm" {
		t.Errorf("Name: got %q, want %q", got, "fsm")
	}
}

func TestWith(t *testing.T) {
	tests := []struct {
		name        string
		logger      func(l hclog.Logger) hclog.Logger
		wantImplied []any
		wantAttrs   []string
	}{
		{"none", func(l hclog.Logger) hclog.Logger { return l }, nil, nil},
		{"one pair", func(l hclog.Logger) hclog.Logger { return l.With("a", 1) }, []any{"a", 1}, []string{"a=1"}},
		{"later value wins", func(l hclog.Logger) hclog.Logger { return l.With("a", 1, "b", 2).With("a", 3) },
			[]any{"a", 3, "b", 2}, []string{"a=3", "b=2"}},
		{"odd args", func(l hclog.Logger) hclog.Logger { return l.With("a", 1, "stray") },
			[]any{"a", 1, "EXTRA_VALUE_AT_END", "stray"}, []string{"a=1", "EXTRA_VALUE_AT_END=stray"}},
		{"non-string key", func(l hclog.Logger) hclog.Logger { return l.With(1, "one") }, []any{"1", "one"}, []string{"1=one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, s := newTest(slog.LevelInfo, "")
			l := tt.logger(root)
			l.Info("m", "call", true)
			if got := l.ImpliedArgs(); !slices.Equal(got, tt.wantImplied) {
				t.Errorf("ImpliedArgs: got %v, want %v", got, tt.wantImplied)
			}
			want := append(slices.Clone(tt.wantAttrs), "call=true")
			if e := only(t, s); !slices.Equal(e.attrs, want) {
				t.Errorf("attrs: got %q, want %q", e.attrs, want)
			}
			if got := root.ImpliedArgs(); len(got) != 0 {
				t.Errorf("root ImpliedArgs after With: got %v, want none", got)
			}
		})
	}
}

func TestImpliedArgsIsACopy(t *testing.T) {
	l, s := newTest(slog.LevelInfo, "")
	l = l.With("a", 1)
	l.ImpliedArgs()[1] = "changed"
	l.Info("m")
	if e := only(t, s); !slices.Equal(e.attrs, []string{"a=1"}) {
		t.Errorf("attrs: got %q, want %q", e.attrs, []string{"a=1"})
	}
}

func TestEnabledAndGetLevel(t *testing.T) {
	tests := []struct {
		name      string
		handler   slog.Level
		set       hclog.Level
		wantIs    [5]bool // Trace, Debug, Info, Warn, Error
		wantLevel hclog.Level
	}{
		{"handler trace", LevelTrace, hclog.NoLevel, [5]bool{true, true, true, true, true}, hclog.Trace},
		{"handler info", slog.LevelInfo, hclog.NoLevel, [5]bool{false, false, true, true, true}, hclog.Info},
		{"handler error", slog.LevelError, hclog.NoLevel, [5]bool{false, false, false, false, true}, hclog.Error},
		{"handler above error", slog.LevelError + 1, hclog.NoLevel, [5]bool{}, hclog.Off},
		{"SetLevel above handler", slog.LevelDebug, hclog.Warn, [5]bool{false, false, false, true, true}, hclog.Warn},
		{"SetLevel below handler", slog.LevelWarn, hclog.Trace, [5]bool{false, false, false, true, true}, hclog.Warn},
		{"SetLevel Off", LevelTrace, hclog.Off, [5]bool{}, hclog.Off},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, s := newTest(tt.handler, "")
			l.SetLevel(tt.set)
			got := [5]bool{l.IsTrace(), l.IsDebug(), l.IsInfo(), l.IsWarn(), l.IsError()}
			if got != tt.wantIs {
				t.Errorf("IsTrace..IsError: got %v, want %v", got, tt.wantIs)
			}
			if lvl := l.GetLevel(); lvl != tt.wantLevel {
				t.Errorf("GetLevel: got %v, want %v", lvl, tt.wantLevel)
			}
			l.Trace("t")
			l.Debug("d")
			l.Info("i")
			l.Warn("w")
			l.Error("e")
			var emitted [5]bool
			for _, e := range s.all() {
				emitted[strings.Index("tdiwe", e.msg)] = true
			}
			if emitted != tt.wantIs {
				t.Errorf("emitted Trace..Error: got %v, want %v", emitted, tt.wantIs)
			}
		})
	}
}

func TestSetLevelIsSharedByTheTree(t *testing.T) {
	root, s := newTest(LevelTrace, "r")
	child := root.Named("c").With("k", 1)
	other, _ := newTest(LevelTrace, "other")
	steps := []struct {
		name      string
		set       hclog.Logger
		level     hclog.Level
		wantRoot  hclog.Level
		wantChild hclog.Level
	}{
		{"child sets Warn", child, hclog.Warn, hclog.Warn, hclog.Warn},
		{"root sets Debug", root, hclog.Debug, hclog.Debug, hclog.Debug},
		{"NoLevel clears", child, hclog.NoLevel, hclog.Trace, hclog.Trace},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.set.SetLevel(st.level)
			if got := root.GetLevel(); got != st.wantRoot {
				t.Errorf("root GetLevel: got %v, want %v", got, st.wantRoot)
			}
			if got := child.GetLevel(); got != st.wantChild {
				t.Errorf("child GetLevel: got %v, want %v", got, st.wantChild)
			}
			if got := other.GetLevel(); got != hclog.Trace {
				t.Errorf("unrelated logger GetLevel: got %v, want %v", got, hclog.Trace)
			}
		})
	}
	if n := len(s.all()); n != 0 {
		t.Errorf("records: got %d, want 0", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	root, s := newTest(slog.LevelInfo, "r")
	const workers, perWorker = 4, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := root.Named(fmt.Sprint("w", w)).With("worker", w)
			for i := range perWorker {
				l.SetLevel([]hclog.Level{hclog.Info, hclog.NoLevel}[i%2])
				l.Error("e", "i", i)
				_ = l.IsDebug()
			}
		}()
	}
	wg.Wait()
	if got := len(s.all()); got != workers*perWorker {
		t.Errorf("records: got %d, want %d", got, workers*perWorker)
	}
}

func TestNilLoggerDiscards(t *testing.T) {
	l := New(nil, "x")
	l.Error("dropped", "k", "v")
	l.Named("y").With("a").StandardLogger(nil).Print("dropped")
	if l.IsError() || l.GetLevel() != hclog.Off {
		t.Errorf("IsError, GetLevel: got %v, %v, want false, Off", l.IsError(), l.GetLevel())
	}
}

func TestStandardLogger(t *testing.T) {
	type rec struct {
		level slog.Level
		msg   string
	}
	tests := []struct {
		name  string
		opts  *hclog.StandardLoggerOptions
		lines []string
		want  []rec
	}{
		{"nil options log at Info verbatim", nil, []string{"[WARN] kept as is"},
			[]rec{{slog.LevelInfo, "[WARN] kept as is"}}},
		{"infer levels", &hclog.StandardLoggerOptions{InferLevels: true},
			[]string{"[TRACE] t", "[DEBUG] d", "[INFO] i", "[WARN] w", "[ERR] e1", "[ERROR] e2", "plain"},
			[]rec{{LevelTrace, "t"}, {slog.LevelDebug, "d"}, {slog.LevelInfo, "i"}, {slog.LevelWarn, "w"},
				{slog.LevelError, "e1"}, {slog.LevelError, "e2"}, {slog.LevelInfo, "plain"}}},
		{"infer levels after timestamp", &hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			[]string{"2024/01/02 03:04:05 [WARN] w", "2024-01-02T03:04:05.000Z [ERROR] e", "Timeout reached"},
			[]rec{{slog.LevelWarn, "w"}, {slog.LevelError, "e"}, {slog.LevelInfo, "Timeout reached"}}},
		{"force level strips prefix", &hclog.StandardLoggerOptions{ForceLevel: hclog.Error, InferLevels: true},
			[]string{"[DEBUG] d", "plain"}, []rec{{slog.LevelError, "d"}, {slog.LevelError, "plain"}}},
		{"multi-line message logs each line", &hclog.StandardLoggerOptions{InferLevels: true},
			[]string{"[WARN] first\n[ERR] second\n\n"}, []rec{{slog.LevelWarn, "first"}, {slog.LevelError, "second"}}},
		{"blank lines dropped", nil, []string{"", "   "}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, s := newTest(LevelTrace, "std")
			std := l.StandardLogger(tt.opts)
			for _, line := range tt.lines {
				std.Print(line)
			}
			var got []rec
			for _, e := range s.all() {
				got = append(got, rec{e.level, e.msg})
				if !slices.Equal(e.attrs, []string{"logger=std"}) {
					t.Errorf("attrs: got %q, want %q", e.attrs, []string{"logger=std"})
				}
				if e.file != "hclogslog_test.go" {
					t.Errorf("source file: got %q, want %q", e.file, "hclogslog_test.go")
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("records: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStandardWriter(t *testing.T) {
	tests := []struct {
		name    string
		handler slog.Level
		input   string
		wantN   int
		wantRec int
	}{
		{"logged", slog.LevelInfo, "[INFO] a\n[WARN] b\n", 18, 2},
		{"filtered by the handler", slog.LevelError, "[INFO] a\n[WARN] b\n", 18, 0},
		{"no trailing newline", slog.LevelInfo, "[INFO] a", 8, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, s := newTest(tt.handler, "")
			n, err := l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}).Write([]byte(tt.input))
			if n != tt.wantN || err != nil {
				t.Errorf("Write: got (%d, %v), want (%d, nil)", n, err, tt.wantN)
			}
			if got := len(s.all()); got != tt.wantRec {
				t.Errorf("records: got %d, want %d", got, tt.wantRec)
			}
		})
	}
}
