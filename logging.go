package store

import (
	"context"
	"log/slog"
)

// warnOnly wraps a handler and drops records below slog.LevelWarn: the
// default for a library that should stay quiet unless something is wrong.
type warnOnly struct{ h slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.h.Enabled(ctx, l)
}
func (w warnOnly) Handle(ctx context.Context, r slog.Record) error { return w.h.Handle(ctx, r) }
func (w warnOnly) WithAttrs(as []slog.Attr) slog.Handler           { return warnOnly{w.h.WithAttrs(as)} }
func (w warnOnly) WithGroup(name string) slog.Handler              { return warnOnly{w.h.WithGroup(name)} }

// raftLogs adapts raft's log levels to an application's expectations: raft
// logs routine events (an election at startup, a peer connection closed)
// as warnings and errors. Its records are lowered one step (Warn→Info,
// Error→Warn), and to Debug once the node is closing, when broken
// connections are expected.
type raftLogs struct {
	h       slog.Handler
	closing func() bool
}

func (r raftLogs) level(l slog.Level) slog.Level {
	if r.closing() {
		return slog.LevelDebug
	}
	switch {
	case l >= slog.LevelError:
		return slog.LevelWarn
	case l >= slog.LevelWarn:
		return slog.LevelInfo
	case l >= slog.LevelInfo:
		return slog.LevelDebug
	}
	return l
}

func (r raftLogs) Enabled(ctx context.Context, l slog.Level) bool {
	return r.h.Enabled(ctx, r.level(l))
}

func (r raftLogs) Handle(ctx context.Context, rec slog.Record) error {
	rec.Level = r.level(rec.Level)
	if !r.h.Enabled(ctx, rec.Level) {
		return nil
	}
	return r.h.Handle(ctx, rec)
}

func (r raftLogs) WithAttrs(as []slog.Attr) slog.Handler {
	return raftLogs{h: r.h.WithAttrs(as), closing: r.closing}
}

func (r raftLogs) WithGroup(name string) slog.Handler {
	return raftLogs{h: r.h.WithGroup(name), closing: r.closing}
}
