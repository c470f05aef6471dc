package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in the tests.
const testTimeout = 10 * time.Second

// newMux starts a Mux on 127.0.0.1 and closes it when the test ends.
func newMux(t testing.TB, cfg Config) *Mux {
	t.Helper()
	m, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Mux.Close: %v", err)
		}
	})
	return m
}

// newClient returns a Client closed when the test ends.
func newClient(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	c := NewClient(cfg)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// echo answers every request with method byte + request.
func echo(_ context.Context, method uint8, req []byte) ([]byte, error) {
	return append([]byte{method}, req...), nil
}

// callCtx returns a context bounded by testTimeout.
func callCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or testTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", testTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectClosed waits until the peer closes conn, failing the test if data
// arrives or nothing happens within limit.
func expectClosed(t testing.TB, conn net.Conn, limit time.Duration) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(limit)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	var buf [64]byte
	n, err := conn.Read(buf[:])
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("read %d bytes (%q), want the connection closed", n, buf[:n])
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open after %v, want it closed", limit)
	}
}

// dialRaw opens a plain TCP connection to addr and writes send to it, if
// send is not empty. The connection is closed when the test ends.
func dialRaw(t testing.TB, addr string, send []byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	return conn
}

// dialRaft opens a raft stream from one Mux to addr and writes msg to it.
// The stream is closed when the test ends.
func dialRaft(t testing.TB, from *Mux, addr, msg string) net.Conn {
	t.Helper()
	conn, err := from.RaftLayer().Dial(rafAddr(addr), time.Second)
	if err != nil {
		t.Fatalf("raft Dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return conn
}

// acceptRaft accepts the next raft stream on m and reads n bytes from it,
// returning them with the read's error. The stream is closed when the test
// ends.
func acceptRaft(t testing.TB, m *Mux, n int) ([]byte, error) {
	t.Helper()
	in, err := m.RaftLayer().Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	t.Cleanup(func() { in.Close() })
	got := make([]byte, n)
	_, err = io.ReadFull(in, got)
	return got, err
}
