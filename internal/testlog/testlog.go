// Package testlog is a log sink for tests: a buffer that collects what an
// slog.Logger writes, safe for concurrent writers, with helpers to look
// for lines in it.
package testlog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// Buffer collects log output. The zero value is ready to use.
type Buffer struct {
	// mu guards b. Lock order: leaf.
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether anything logged so far contains s.
func (l *Buffer) Contains(s string) bool { return strings.Contains(l.String(), s) }

// Count returns how many lines logged so far contain s.
func (l *Buffer) Count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// Logger returns a text logger writing to l at level and above.
func (l *Buffer) Logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: level}))
}
