package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testlog"
	"go.uber.org/goleak"
)

func TestCallRoundTrip(t *testing.T) {
	m := newMux(t, Config{})
	m.ServeRPC(echo)
	c := newClient(t, ClientConfig{})

	tests := []struct {
		name   string
		method uint8
		req    []byte
	}{
		{"empty", 0, nil},
		{"small", 7, []byte("hello")},
		{"max method", 255, []byte{0}},
		{"1 MiB", 3, bytes.Repeat([]byte("abcdefgh"), 128<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Call(callCtx(t), m.Addr(), tt.method, tt.req)
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			want := append([]byte{tt.method}, tt.req...)
			if !bytes.Equal(got, want) {
				t.Errorf("response: got %d bytes, want %d bytes (method %d + request)", len(got), len(want), tt.method)
			}
		})
	}
	if got, want := m.rpcConns.Load(), int64(1); got != want {
		t.Errorf("rpc connections accepted: got %d, want %d", got, want)
	}
}

func TestConcurrentCallsShareOneConnection(t *testing.T) {
	const calls = 2000
	m := newMux(t, Config{})
	// Each handler waits until many requests are in flight at once, proving
	// they are handled concurrently rather than one by one.
	var (
		mu      sync.Mutex
		running int
		peak    int
	)
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
		time.Sleep(time.Millisecond) // hold the slot so that calls overlap
		return echo(ctx, method, req)
	})
	c := newClient(t, ClientConfig{})
	ctx := callCtx(t)

	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := binary.BigEndian.AppendUint32(nil, uint32(i))
			got, err := c.Call(ctx, m.Addr(), uint8(i), req)
			if err != nil {
				errs <- fmt.Errorf("call %d: %w", i, err)
				return
			}
			if want := append([]byte{uint8(i)}, req...); !bytes.Equal(got, want) {
				errs <- fmt.Errorf("call %d: got response %x, want %x", i, got, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := m.rpcConns.Load(), int64(1); got != want {
		t.Errorf("rpc connections accepted: got %d, want %d", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak < 10 {
		t.Errorf("peak concurrent handlers: got %d, want at least 10", peak)
	}
}

func TestRemoteError(t *testing.T) {
	re := &RemoteError{Code: 42, Msg: "key not found"}
	tests := []struct {
		name    string
		err     error
		want    RemoteError
		wantStr string
	}{
		{"remote error", re, *re, "transport: remote error 42: key not found"},
		{"wrapped remote error", fmt.Errorf("lookup: %w", re), *re, "transport: remote error 42: key not found"},
		{"plain error", errors.New("boom"), RemoteError{Code: CodeInternal, Msg: "boom"}, "transport: remote error 65535: boom"},
		{"empty message", &RemoteError{Code: 1}, RemoteError{Code: 1}, "transport: remote error 1: "},
	}
	m := newMux(t, Config{})
	m.ServeRPC(func(_ context.Context, method uint8, _ []byte) ([]byte, error) {
		return nil, tests[method].err
	})
	c := newClient(t, ClientConfig{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Call(callCtx(t), m.Addr(), uint8(i), nil)
			var got *RemoteError
			if !errors.As(err, &got) {
				t.Fatalf("error: got %v (%T), want a *RemoteError", err, err)
			}
			if *got != tt.want {
				t.Errorf("remote error: got %+v, want %+v", *got, tt.want)
			}
			if got.Error() != tt.wantStr {
				t.Errorf("Error(): got %q, want %q", got.Error(), tt.wantStr)
			}
			if errors.Is(err, ErrNotSent) || errors.Is(err, ErrUnknown) {
				t.Errorf("error %v matches ErrNotSent or ErrUnknown, want neither", err)
			}
		})
	}
}

func TestHandlerPanic(t *testing.T) {
	var logs testlog.Buffer
	m := newMux(t, Config{Logger: logs.Logger(slog.LevelDebug)})
	m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
		if method == 1 {
			panic("handler exploded")
		}
		return echo(ctx, method, req)
	})
	c := newClient(t, ClientConfig{})
	for i := range 3 { // the server keeps serving after each panic
		t.Run(fmt.Sprintf("round %d", i), func(t *testing.T) {
			_, err := c.Call(callCtx(t), m.Addr(), 1, nil)
			var re *RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("panicking call: got %v, want a *RemoteError", err)
			}
			if want := (RemoteError{Code: CodeInternal, Msg: "handler panic: handler exploded"}); *re != want {
				t.Errorf("remote error: got %+v, want %+v", *re, want)
			}
			got, err := c.Call(callCtx(t), m.Addr(), 2, []byte("ok"))
			if err != nil || string(got) != "\x02ok" {
				t.Errorf("call after panic: got %q, %v, want %q, nil", got, err, "\x02ok")
			}
		})
	}
	if !logs.Contains("rpc handler panicked") {
		t.Errorf("logs: got no panic entry, want one")
	}
	if got, want := m.rpcConns.Load(), int64(1); got != want {
		t.Errorf("rpc connections accepted: got %d, want %d (a panic must not break the connection)", got, want)
	}
}

func TestServeRPCLate(t *testing.T) {
	m := newMux(t, Config{})
	c := newClient(t, ClientConfig{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(callCtx(t), m.Addr(), 1, nil)
		done <- err
	}()
	eventually(t, "the rpc connection", func() bool { return m.rpcConns.Load() == 1 })
	select {
	case err := <-done:
		t.Fatalf("call returned %v before ServeRPC, want it to wait", err)
	default:
	}
	m.ServeRPC(echo)
	if err := <-done; err != nil {
		t.Errorf("call: got %v, want nil", err)
	}
}

func TestCallErrors(t *testing.T) {
	closedAddr := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	block := func(ctx context.Context, _ uint8, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}

	tests := []struct {
		name string
		// run performs the failing call and returns its error.
		run  func(t *testing.T) error
		want []error
		not  []error
	}{
		{
			name: "dial to closed port",
			run: func(t *testing.T) error {
				_, err := newClient(t, ClientConfig{}).Call(callCtx(t), closedAddr(t), 1, nil)
				return err
			},
			want: []error{ErrNotSent},
			not:  []error{ErrUnknown},
		},
		{
			name: "context already cancelled",
			run: func(t *testing.T) error {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_, err := newClient(t, ClientConfig{}).Call(ctx, closedAddr(t), 1, nil)
				return err
			},
			want: []error{ErrNotSent, context.Canceled},
			not:  []error{ErrUnknown},
		},
		{
			name: "context cancelled after sending",
			run: func(t *testing.T) error {
				m := newMux(t, Config{})
				started := make(chan struct{}, 1)
				m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
					started <- struct{}{}
					return block(ctx, method, req)
				})
				ctx, cancel := context.WithCancel(context.Background())
				go func() { <-started; cancel() }()
				_, err := newClient(t, ClientConfig{}).Call(ctx, m.Addr(), 1, nil)
				return err
			},
			want: []error{ErrUnknown, context.Canceled},
			not:  []error{ErrNotSent},
		},
		{
			name: "deadline exceeded while the server holds the call",
			run: func(t *testing.T) error {
				m := newMux(t, Config{})
				m.ServeRPC(block)
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_, err := newClient(t, ClientConfig{}).Call(ctx, m.Addr(), 1, nil)
				return err
			},
			want: []error{ErrUnknown, context.DeadlineExceeded},
			not:  []error{ErrNotSent},
		},
		{
			name: "server closes mid-call",
			run: func(t *testing.T) error {
				m := newMux(t, Config{})
				started := make(chan struct{}, 1)
				m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
					started <- struct{}{}
					return block(ctx, method, req)
				})
				go func() { <-started; m.Close() }()
				_, err := newClient(t, ClientConfig{}).Call(callCtx(t), m.Addr(), 1, nil)
				return err
			},
			want: []error{ErrUnknown},
			not:  []error{ErrNotSent},
		},
		{
			name: "call after client close",
			run: func(t *testing.T) error {
				c := newClient(t, ClientConfig{})
				c.Close()
				_, err := c.Call(callCtx(t), closedAddr(t), 1, nil)
				return err
			},
			want: []error{ErrClosed, ErrNotSent},
			not:  []error{ErrUnknown},
		},
		{
			name: "client closed mid-call",
			run: func(t *testing.T) error {
				m := newMux(t, Config{})
				started := make(chan struct{}, 1)
				m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
					started <- struct{}{}
					return block(ctx, method, req)
				})
				c := newClient(t, ClientConfig{})
				go func() { <-started; c.Close() }()
				_, err := c.Call(callCtx(t), m.Addr(), 1, nil)
				return err
			},
			want: []error{ErrUnknown, ErrClosed},
			not:  []error{ErrNotSent},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(t)
			if err == nil {
				t.Fatalf("error: got nil, want one matching %v", tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q: got errors.Is(err, %v) false, want true", err, w)
				}
			}
			for _, n := range tt.not {
				if errors.Is(err, n) {
					t.Errorf("error %q: got errors.Is(err, %v) true, want false", err, n)
				}
			}
		})
	}
}

func TestBrokenConnectionIsRedialled(t *testing.T) {
	m := newMux(t, Config{})
	m.ServeRPC(echo)
	addr := m.Addr()
	c := newClient(t, ClientConfig{})
	if _, err := c.Call(callCtx(t), addr, 1, nil); err != nil {
		t.Fatalf("first call: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The client notices the broken connection and drops it.
	eventually(t, "the broken connection to leave the pool", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.conns) == 0
	})

	m2 := newMux(t, Config{BindAddr: addr})
	m2.ServeRPC(echo)
	got, err := c.Call(callCtx(t), addr, 2, []byte("again"))
	if err != nil || string(got) != "\x02again" {
		t.Errorf("call after restart: got %q, %v, want %q, nil", got, err, "\x02again")
	}
}

func TestCloseIsIdempotentAndLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t)

	m, err := Listen(Config{})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	started := make(chan struct{}, 1)
	m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
		if method == 1 {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return echo(ctx, method, req)
	})
	c := NewClient(ClientConfig{})
	if _, err := c.Call(context.Background(), m.Addr(), 2, nil); err != nil {
		t.Fatalf("Call: %v", err)
	}
	// Leave a call in progress, an idle raw connection and a raft stream.
	callDone := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), m.Addr(), 1, nil)
		callDone <- err
	}()
	<-started
	idle, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer idle.Close()
	raftConn, err := m.RaftLayer().Dial(rafAddr(m.Addr()), time.Second)
	if err != nil {
		t.Fatalf("raft Dial: %v", err)
	}
	defer raftConn.Close()

	for i := range 3 {
		if err := m.Close(); err != nil {
			t.Errorf("Mux.Close #%d: got %v, want nil", i+1, err)
		}
	}
	if err := <-callDone; !errors.Is(err, ErrUnknown) {
		t.Errorf("in-flight call: got %v, want ErrUnknown", err)
	}
	for i := range 3 {
		if err := c.Close(); err != nil {
			t.Errorf("Client.Close #%d: got %v, want nil", i+1, err)
		}
	}
	if _, err := m.RaftLayer().Accept(); err == nil {
		t.Errorf("Accept after Close: got nil error, want one")
	}
	if _, err := m.RaftLayer().Dial(rafAddr(m.Addr()), time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("raft Dial after Close: got %v, want ErrClosed", err)
	}
}
