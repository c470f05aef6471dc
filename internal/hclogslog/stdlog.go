package hclogslog

import (
	"bytes"
	"runtime"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// stdWriter is the io.Writer returned by StandardWriter.
type stdWriter struct {
	l    *logger
	opts hclog.StandardLoggerOptions
}

// Write logs every non-blank line of p and reports all of p as written.
func (w *stdWriter) Write(p []byte) (int, error) {
	pc := uintptr(0)
	for rest := p; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		level, msg := w.levelOf(string(bytes.TrimRight(line, " \t\r")))
		if strings.TrimSpace(msg) == "" || !w.l.enabled(level) {
			continue
		}
		if pc == 0 {
			pc = writerCallerPC()
		}
		w.l.log(pc, level, msg, nil)
	}
	return len(p), nil
}

// levelOf picks the level of a line according to the options and returns
// it with the message to log.
func (w *stdWriter) levelOf(line string) (hclog.Level, string) {
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		_, msg, _ := pickLevel(line)
		return w.opts.ForceLevel, msg
	case w.opts.InferLevels:
		if w.opts.InferLevelsWithTimestamp {
			// Skip a timestamp only when a level prefix follows it, so that
			// a line such as "Timeout" is not mangled.
			if level, msg, ok := pickLevel(trimTimestamp(line)); ok {
				return level, msg
			}
		}
		level, msg, _ := pickLevel(line)
		return level, msg
	default:
		return hclog.Info, line
	}
}

// pickLevel detects a level prefix such as "[WARN]" and strips it. A line
// without one is Info, returned unchanged with ok false.
func pickLevel(line string) (level hclog.Level, msg string, ok bool) {
	prefixes := [...]struct {
		prefix string
		level  hclog.Level
	}{
		{"[TRACE]", hclog.Trace},
		{"[DEBUG]", hclog.Debug},
		{"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn},
		{"[ERROR]", hclog.Error},
		{"[ERR]", hclog.Error},
	}
	for _, p := range prefixes {
		if rest, found := strings.CutPrefix(line, p.prefix); found {
			return p.level, strings.TrimSpace(rest), true
		}
	}
	return hclog.Info, line, false
}

// trimTimestamp removes a leading run of the characters found in common
// timestamp formats ("2006/01/02 15:04:05", RFC 3339).
func trimTimestamp(line string) string {
	return strings.TrimLeft(line, "0123456789 \t:/.+-TZ")
}

// writerCallerPC returns the program counter of the code that wrote to a
// stdWriter, skipping the frames of the standard log package.
func writerCallerPC() uintptr {
	var pcs [8]uintptr
	// Skip runtime.Callers, writerCallerPC and stdWriter.Write.
	n := runtime.Callers(3, pcs[:])
	for _, pc := range pcs[:n] {
		frame, _ := runtime.CallersFrames([]uintptr{pc}).Next()
		if !strings.HasPrefix(frame.Function, "log.") {
			return pc
		}
	}
	return 0
}
