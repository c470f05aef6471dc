// Package hclogslog adapts a *slog.Logger to the hclog.Logger interface, so
// that libraries logging through hclog (hashicorp/raft) write to the
// application's slog handler.
//
// Levels map as follows: Trace to slog.LevelDebug-4, Debug to
// slog.LevelDebug, Info to slog.LevelInfo, Warn to slog.LevelWarn and Error
// to slog.LevelError. Whether a message is emitted is decided by the slog
// handler's Enabled method, restricted further by the minimum level set with
// SetLevel, if any.
//
// A logger's name is logged under the "logger" attribute, followed by the
// attributes given to With, then those of the call.
package hclogslog

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Attribute keys added by this package.
const (
	// NameKey is the attribute holding the logger's name.
	NameKey = "logger"
	// StacktraceKey holds an hclog.CapturedStacktrace passed as the last,
	// unpaired argument.
	StacktraceKey = "stacktrace"
)

// LevelTrace is the slog level that hclog's Trace maps to.
const LevelTrace = slog.LevelDebug - 4

// tree is the state shared by a logger and every logger derived from it.
type tree struct {
	// level is the minimum hclog.Level set by SetLevel; hclog.NoLevel when
	// none is set.
	level atomic.Int32
}

// logger implements hclog.Logger on top of a slog.Handler.
type logger struct {
	root    slog.Handler // the handler given to New
	h       slog.Handler // root with the name and implied attributes
	name    string
	implied []any // normalized With pairs: string key, value
	tree    *tree
}

var _ hclog.Logger = (*logger)(nil)

// New returns an hclog.Logger that writes to l under the given name (an
// empty name adds no "logger" attribute). A nil l gives a logger that
// discards everything.
func New(l *slog.Logger, name string) hclog.Logger {
	var root slog.Handler = slog.DiscardHandler
	if l != nil {
		root = l.Handler()
	}
	return derive(root, name, nil, &tree{})
}

// derive builds a logger on root with the given name and implied pairs.
func derive(root slog.Handler, name string, implied []any, t *tree) *logger {
	attrs := make([]slog.Attr, 0, 1+len(implied)/2)
	if name != "" {
		attrs = append(attrs, slog.String(NameKey, name))
	}
	attrs = appendArgs(attrs, implied)
	h := root
	if len(attrs) > 0 {
		h = root.WithAttrs(attrs)
	}
	return &logger{root: root, h: h, name: name, implied: implied, tree: t}
}

// slogLevel maps an hclog level to a slog level. ok is false for hclog.Off,
// which is never logged. NoLevel and unknown levels map to Info.
func slogLevel(level hclog.Level) (hclog.Level, slog.Level, bool) {
	switch level {
	case hclog.Trace:
		return level, LevelTrace, true
	case hclog.Debug:
		return level, slog.LevelDebug, true
	case hclog.Warn:
		return level, slog.LevelWarn, true
	case hclog.Error:
		return level, slog.LevelError, true
	case hclog.Off:
		return level, 0, false
	default:
		return hclog.Info, slog.LevelInfo, true
	}
}

// enabled reports whether a message at level would be emitted.
func (l *logger) enabled(level hclog.Level) bool {
	level, sl, ok := slogLevel(level)
	if !ok {
		return false
	}
	switch floor := hclog.Level(l.tree.level.Load()); {
	case floor == hclog.Off:
		return false
	case floor != hclog.NoLevel && level < floor:
		return false
	}
	return l.h.Enabled(context.Background(), sl)
}

// log emits msg at level with args, attributing it to the code at pc.
func (l *logger) log(pc uintptr, level hclog.Level, msg string, args []any) {
	if !l.enabled(level) {
		return
	}
	_, sl, _ := slogLevel(level)
	r := slog.NewRecord(time.Now(), sl, msg, pc)
	var buf [8]slog.Attr
	r.AddAttrs(appendArgs(buf[:0], args)...)
	_ = l.h.Handle(context.Background(), r)
}

// callerPC returns the program counter of the caller of the exported
// method that called it.
func callerPC() uintptr {
	var pcs [1]uintptr
	// Skip runtime.Callers, callerPC and the exported method.
	runtime.Callers(3, pcs[:])
	return pcs[0]
}

// Log emits msg at level; NoLevel is treated as Info and Off is dropped.
func (l *logger) Log(level hclog.Level, msg string, args ...any) {
	l.log(callerPC(), level, msg, args)
}

// Trace emits msg at slog.LevelDebug-4.
func (l *logger) Trace(msg string, args ...any) { l.log(callerPC(), hclog.Trace, msg, args) }

// Debug emits msg at slog.LevelDebug.
func (l *logger) Debug(msg string, args ...any) { l.log(callerPC(), hclog.Debug, msg, args) }

// Info emits msg at slog.LevelInfo.
func (l *logger) Info(msg string, args ...any) { l.log(callerPC(), hclog.Info, msg, args) }

// Warn emits msg at slog.LevelWarn.
func (l *logger) Warn(msg string, args ...any) { l.log(callerPC(), hclog.Warn, msg, args) }

// Error emits msg at slog.LevelError.
func (l *logger) Error(msg string, args ...any) { l.log(callerPC(), hclog.Error, msg, args) }

// IsTrace reports whether Trace messages would be emitted.
func (l *logger) IsTrace() bool { return l.enabled(hclog.Trace) }

// IsDebug reports whether Debug messages would be emitted.
func (l *logger) IsDebug() bool { return l.enabled(hclog.Debug) }

// IsInfo reports whether Info messages would be emitted.
func (l *logger) IsInfo() bool { return l.enabled(hclog.Info) }

// IsWarn reports whether Warn messages would be emitted.
func (l *logger) IsWarn() bool { return l.enabled(hclog.Warn) }

// IsError reports whether Error messages would be emitted.
func (l *logger) IsError() bool { return l.enabled(hclog.Error) }

// ImpliedArgs returns a copy of the key/value pairs added by With, with
// keys as strings, later values of a key replacing earlier ones, and an
// unpaired last argument under hclog.MissingKey.
func (l *logger) ImpliedArgs() []any {
	return append([]any(nil), l.implied...)
}

// With returns a logger that adds the given key/value pairs to every
// message. It shares its level with l.
func (l *logger) With(args ...any) hclog.Logger {
	implied := append([]any(nil), l.implied...)
	for _, kv := range pairs(args) {
		replaced := false
		for i := 0; i < len(implied); i += 2 {
			if implied[i] == kv.key {
				implied[i+1], replaced = kv.value, true
				break
			}
		}
		if !replaced {
			implied = append(implied, kv.key, kv.value)
		}
	}
	return derive(l.root, l.name, implied, l.tree)
}

// Name returns the logger's name.
func (l *logger) Name() string { return l.name }

// Named returns a logger named name, or l's name, a dot and name if l is
// named. It shares its level and implied arguments with l.
func (l *logger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return derive(l.root, name, l.implied, l.tree)
}

// ResetNamed returns a logger named name, whatever l's name. It shares its
// level and implied arguments with l.
func (l *logger) ResetNamed(name string) hclog.Logger {
	return derive(l.root, name, l.implied, l.tree)
}

// SetLevel sets the minimum level of l and of every logger derived from the
// same New call: messages below it are dropped even if the slog handler
// would take them. hclog.NoLevel removes the minimum (the handler alone
// decides) and hclog.Off silences the loggers. It is safe for concurrent
// use.
func (l *logger) SetLevel(level hclog.Level) { l.tree.level.Store(int32(level)) }

// GetLevel returns the lowest level that would be emitted, combining the
// level set by SetLevel with the handler's Enabled; hclog.Off if none.
func (l *logger) GetLevel() hclog.Level {
	for _, level := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if l.enabled(level) {
			return level
		}
	}
	return hclog.Off
}

// StandardLogger returns a *log.Logger, without prefix or flags, whose
// output goes through StandardWriter(opts).
func (l *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns an io.Writer that logs each line written to it.
// The level is opts.ForceLevel if set (a level prefix such as "[WARN]" is
// then stripped); otherwise, with opts.InferLevels, the one named by a
// "[TRACE]", "[DEBUG]", "[INFO]", "[WARN]", "[ERR]" or "[ERROR]" prefix,
// which is stripped, or Info when there is none (with
// opts.InferLevelsWithTimestamp, a leading timestamp is skipped first);
// otherwise Info. Blank lines are dropped. Each Write should hold whole
// lines, as a *log.Logger's do: a line is not joined across writes. A nil
// opts means the zero options.
func (l *logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdWriter{l: l}
	if opts != nil {
		w.opts = *opts
	}
	return w
}

// pair is one normalized key/value argument.
type pair struct {
	key   string
	value any
}

// pairs normalizes hclog arguments: keys that are not strings are
// formatted with fmt.Sprint, and an unpaired last argument is put under
// hclog.MissingKey, or StacktraceKey if it is an hclog.CapturedStacktrace.
func pairs(args []any) []pair {
	out := make([]pair, 0, (len(args)+1)/2)
	for i := 0; i < len(args); i += 2 {
		if i == len(args)-1 {
			if st, ok := args[i].(hclog.CapturedStacktrace); ok {
				out = append(out, pair{StacktraceKey, st})
			} else {
				out = append(out, pair{hclog.MissingKey, args[i]})
			}
			break
		}
		out = append(out, pair{keyString(args[i]), args[i+1]})
	}
	return out
}

// appendArgs appends hclog key/value arguments to attrs as slog attributes.
func appendArgs(attrs []slog.Attr, args []any) []slog.Attr {
	for i := 0; i < len(args); i += 2 {
		if i == len(args)-1 {
			if st, ok := args[i].(hclog.CapturedStacktrace); ok {
				return append(attrs, slog.String(StacktraceKey, string(st)))
			}
			return append(attrs, attr(hclog.MissingKey, args[i]))
		}
		attrs = append(attrs, attr(keyString(args[i]), args[i+1]))
	}
	return attrs
}

// keyString turns an hclog key into a string.
func keyString(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	return fmt.Sprint(k)
}

// attr converts one hclog value, rendering hclog's formatting wrappers as
// hclog itself does.
func attr(key string, v any) slog.Attr {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) > 0 {
			if format, ok := v[0].(string); ok {
				return slog.String(key, fmt.Sprintf(format, v[1:]...))
			}
		}
		return slog.String(key, fmt.Sprint(v...))
	case hclog.Hex:
		return slog.String(key, "0x"+strconv.FormatUint(uint64(v), 16))
	case hclog.Octal:
		return slog.String(key, "0"+strconv.FormatUint(uint64(v), 8))
	case hclog.Binary:
		return slog.String(key, "0b"+strconv.FormatUint(uint64(v), 2))
	case hclog.Quote:
		return slog.String(key, string(v))
	case hclog.CapturedStacktrace:
		return slog.String(key, string(v))
	default:
		return slog.Any(key, v)
	}
}
