package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testlog"
)

func TestBadFramesCloseConnection(t *testing.T) {
	const limit = 1024
	header := func(length uint32) []byte {
		b := connHeader(t, ProtoRPC, Hello{})
		b = binary.BigEndian.AppendUint32(b, length)
		return binary.BigEndian.AppendUint64(b, 1)
	}
	tests := []struct {
		name    string
		send    []byte
		wantLog string
	}{
		{"oversize frame", header(limit + 1), "frame too large"},
		{"huge frame", header(0xFFFFFFFF), "frame too large"},
		{"frame shorter than header", header(3), "protocol error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs testlog.Buffer
			m := newMux(t, Config{MaxFrameBytes: limit, Logger: logs.Logger(slog.LevelDebug)})
			m.ServeRPC(echo)
			c := newClient(t, ClientConfig{})

			conn := dialRaw(t, m.Addr(), tt.send)
			expectClosed(t, conn, testTimeout)
			eventually(t, "the error log", func() bool { return logs.Contains(tt.wantLog) })

			got, err := c.Call(callCtx(t), m.Addr(), 9, []byte("still serving"))
			if err != nil || string(got) != "\x09still serving" {
				t.Errorf("call after bad frame: got %q, %v, want %q, nil", got, err, "\x09still serving")
			}
		})
	}
}

func TestRequestTooLarge(t *testing.T) {
	m := newMux(t, Config{})
	m.ServeRPC(echo)
	c := newClient(t, ClientConfig{MaxFrameBytes: 100})
	_, err := c.Call(callCtx(t), m.Addr(), 1, make([]byte, 100))
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("error: got %v, want ErrNotSent and ErrFrameTooLarge", err)
	}
	if got := m.rpcConns.Load(); got != 0 {
		t.Errorf("rpc connections accepted: got %d, want 0", got)
	}
}

func TestResponseTooLarge(t *testing.T) {
	m := newMux(t, Config{MaxFrameBytes: 100})
	m.ServeRPC(func(context.Context, uint8, []byte) ([]byte, error) { return make([]byte, 200), nil })
	c := newClient(t, ClientConfig{MaxFrameBytes: 100})
	_, err := c.Call(callCtx(t), m.Addr(), 1, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeInternal {
		t.Errorf("error: got %v, want a *RemoteError with code %d", err, CodeInternal)
	}
}

func TestFirstByte(t *testing.T) {
	tests := []struct {
		name string
		send []byte
	}{
		{"garbage byte", []byte("X")},
		{"HTTP request", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"nothing sent", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const firstByte = 100 * time.Millisecond
			m := newMux(t, Config{FirstByteTimeout: firstByte})
			m.ServeRPC(echo)
			start := time.Now() // before the server can start its timer
			conn := dialRaw(t, m.Addr(), tt.send)
			expectClosed(t, conn, testTimeout)
			if elapsed := time.Since(start); len(tt.send) == 0 && elapsed < firstByte {
				t.Errorf("closed after %v, want at least FirstByteTimeout %v", elapsed, firstByte)
			}
			if got := m.rpcConns.Load(); got != 0 {
				t.Errorf("rpc connections accepted: got %d, want 0", got)
			}
		})
	}
}

func TestMaxConcurrentPerConn(t *testing.T) {
	const limit, calls = 2, 6
	m := newMux(t, Config{MaxConcurrentPerConn: limit})
	var (
		mu      sync.Mutex
		running int
		peak    int
	)
	release := make(chan struct{})
	m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return echo(ctx, method, req)
	})
	c := newClient(t, ClientConfig{})
	ctx := callCtx(t)
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := c.Call(ctx, m.Addr(), uint8(i), nil)
			errs <- err
		}()
	}
	current := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return running, peak
	}
	eventually(t, "the first handlers to run", func() bool { r, _ := current(); return r == limit })
	// Watch for a while: the reader must not start more handlers.
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		if _, p := current(); p > limit {
			t.Fatalf("concurrent handlers: got %d, want at most %d", p, limit)
		}
		runtime.Gosched()
	}
	close(release)
	for range calls {
		if err := <-errs; err != nil {
			t.Errorf("Call: %v", err)
		}
	}
	if _, p := current(); p != limit {
		t.Errorf("peak concurrent handlers: got %d, want %d", p, limit)
	}
}

func TestPendingConnectionsBounded(t *testing.T) {
	m := newMux(t, Config{FirstByteTimeout: time.Minute})
	m.ServeRPC(echo)
	idle := make([]net.Conn, 0, maxPendingConns)
	defer func() {
		for _, conn := range idle {
			conn.Close()
		}
	}()
	for range maxPendingConns {
		conn, err := net.Dial("tcp", m.Addr())
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		idle = append(idle, conn)
	}
	eventually(t, "every pending slot to be taken", func() bool { return len(m.pending) == maxPendingConns })

	c := newClient(t, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, m.Addr(), 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call while the pending slots are full: got %v, want a deadline error", err)
	}

	idle[0].Close() // frees a slot: the waiting connection gets served
	got, err := c.Call(callCtx(t), m.Addr(), 1, []byte("in"))
	if err != nil || string(got) != "\x01in" {
		t.Errorf("call after a slot freed: got %q, %v, want %q, nil", got, err, "\x01in")
	}
}
