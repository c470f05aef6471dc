package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/embedkv/store/internal/testlog"
)

// connHeader returns what a dialer writes first: the protocol byte and the
// preamble announcing h.
func connHeader(t testing.TB, proto byte, h Hello) []byte {
	t.Helper()
	b, err := appendPreamble([]byte{proto}, h)
	if err != nil {
		t.Fatalf("appendPreamble: %v", err)
	}
	return b
}

func clusterID(s string) (id [16]byte) {
	copy(id[:], s)
	return id
}

// helloVar is a Hello that tests change between dials.
type helloVar struct{ v atomic.Pointer[Hello] }

func newHelloVar(h Hello) *helloVar {
	hv := &helloVar{}
	hv.set(h)
	return hv
}

func (hv *helloVar) set(h Hello) { hv.v.Store(&h) }
func (hv *helloVar) get() Hello  { return *hv.v.Load() }

// admitLog is an Admit function that records its calls and rejects the
// node IDs listed in reject.
type admitLog struct {
	reject map[string]bool
	mu     sync.Mutex
	peers  []PeerInfo
}

func (a *admitLog) admit(p PeerInfo) error {
	a.mu.Lock()
	a.peers = append(a.peers, p)
	a.mu.Unlock()
	if a.reject[p.Hello.NodeID] {
		return fmt.Errorf("node %q is not a member", p.Hello.NodeID)
	}
	return nil
}

func (a *admitLog) calls() []PeerInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]PeerInfo(nil), a.peers...)
}

func TestPreambleEncoding(t *testing.T) {
	id := clusterID("0123456789abcdef")
	tests := []struct {
		name  string
		hello Hello
		want  []byte // nil when encoding must fail
	}{
		{"zero hello", Hello{}, append([]byte{1}, make([]byte, 17)...)},
		{"cluster and node", Hello{ClusterID: id, NodeID: "n1"},
			append(append([]byte{1}, id[:]...), 2, 'n', '1')},
		{"255-byte node ID", Hello{NodeID: strings.Repeat("x", 255)},
			append(append([]byte{1}, make([]byte, 16)...), append([]byte{255}, strings.Repeat("x", 255)...)...)},
		{"256-byte node ID", Hello{NodeID: strings.Repeat("x", 256)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendPreamble([]byte("prefix"), tt.hello)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("appendPreamble: got nil error, want one")
				}
				if string(got) != "prefix" {
					t.Errorf("appendPreamble on error: got %q, want the input unchanged", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("appendPreamble: %v", err)
			}
			if want := append([]byte("prefix"), tt.want...); !bytes.Equal(got, want) {
				t.Fatalf("appendPreamble: got %x, want %x", got, want)
			}
			// Decoding reads the preamble and nothing after it.
			r := bytes.NewReader(append(got[len("prefix"):], "raft bytes"...))
			h, err := readPreamble(r)
			if err != nil {
				t.Fatalf("readPreamble: %v", err)
			}
			if h != tt.hello {
				t.Errorf("readPreamble: got %+v, want %+v", h, tt.hello)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "raft bytes" {
				t.Errorf("bytes left after the preamble: got %q, want %q", rest, "raft bytes")
			}
		})
	}
}

func TestReadPreambleErrors(t *testing.T) {
	zeros := make([]byte, 16)
	tests := []struct {
		name     string
		in       []byte
		want     error
		consumed int
	}{
		{"empty", nil, io.ErrUnexpectedEOF, 0},
		{"version 0", []byte{0, 1, 2, 3}, ErrProtocol, 1},
		{"version 2", []byte{2}, ErrProtocol, 1},
		{"truncated cluster ID", []byte{1, 1, 2, 3}, io.ErrUnexpectedEOF, 4},
		{"no node ID length", append([]byte{1}, zeros...), io.ErrUnexpectedEOF, 17},
		{"node ID shorter than n", append(append([]byte{1}, zeros...), 255, 'a', 'b'), io.ErrUnexpectedEOF, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			_, err := readPreamble(r)
			if !errors.Is(err, tt.want) {
				t.Errorf("readPreamble: got %v, want %v", err, tt.want)
			}
			if got := len(tt.in) - r.Len(); got != tt.consumed {
				t.Errorf("bytes consumed: got %d, want %d", got, tt.consumed)
			}
		})
	}
}

func TestPeerFromContext(t *testing.T) {
	if _, ok := PeerFromContext(context.Background()); ok {
		t.Errorf("PeerFromContext(Background): got ok, want !ok")
	}
	tests := []struct {
		name string
		tls  bool
	}{
		{"plain", false},
		{"tls", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := Hello{ClusterID: clusterID("cluster-1"), NodeID: "node-7"}
			var cfg Config
			var cc ClientConfig
			var clientTLS *tls.Config
			if tt.tls {
				cfg.ServerTLS, clientTLS = testTLS(t)
				cc.TLS = staticTLS(clientTLS)
			}
			admits := &admitLog{}
			cfg.Admit = admits.admit
			cc.Hello = func() Hello { return hello }
			m := newMux(t, cfg)
			peers := make(chan PeerInfo, 1)
			m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
				p, ok := PeerFromContext(ctx)
				if !ok {
					return nil, errors.New("no PeerInfo in the handler's context")
				}
				peers <- p
				return echo(ctx, method, req)
			})
			if _, err := newClient(t, cc).Call(callCtx(t), m.Addr(), 1, nil); err != nil {
				t.Fatalf("Call: %v", err)
			}
			got := <-peers
			if got.Proto != ProtoRPC {
				t.Errorf("Proto: got %q, want %q", got.Proto, ProtoRPC)
			}
			if got.Hello != hello {
				t.Errorf("Hello: got %+v, want %+v", got.Hello, hello)
			}
			if host, _, _ := net.SplitHostPort(fmt.Sprint(got.Remote)); host != "127.0.0.1" {
				t.Errorf("Remote: got %v, want an address on 127.0.0.1", got.Remote)
			}
			switch {
			case !tt.tls && got.TLS != nil:
				t.Errorf("TLS: got %+v, want nil on plain TCP", got.TLS)
			case tt.tls && got.TLS == nil:
				t.Errorf("TLS: got nil, want the connection state")
			case tt.tls:
				if !got.TLS.HandshakeComplete {
					t.Errorf("TLS.HandshakeComplete: got false, want true")
				}
				want := clientTLS.Certificates[0].Leaf
				if n := len(got.TLS.PeerCertificates); n == 0 || !got.TLS.PeerCertificates[0].Equal(want) {
					t.Errorf("TLS.PeerCertificates: got %d certificates, want the client's first", n)
				}
			}
			// Admit saw the same connection.
			calls := admits.calls()
			if len(calls) != 1 {
				t.Fatalf("Admit calls: got %d, want 1", len(calls))
			}
			if a := calls[0]; a.Proto != got.Proto || a.Hello != got.Hello || a.Remote.String() != got.Remote.String() || (a.TLS == nil) != (got.TLS == nil) {
				t.Errorf("Admit's PeerInfo: got %+v, want the handler's %+v", a, got)
			}
		})
	}
}

func TestAdmitRaft(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
	}{
		{"plain", false},
		{"tls", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := clusterID("cluster-1")
			hv := newHelloVar(Hello{ClusterID: id, NodeID: "intruder"})
			admits := &admitLog{reject: map[string]bool{"intruder": true}}
			var logs testlog.Buffer
			dialCfg := Config{Hello: hv.get}
			acceptCfg := Config{Admit: admits.admit, Logger: logs.Logger(slog.LevelDebug)}
			if tt.tls {
				serverTLS, clientTLS := testTLS(t)
				dialCfg.ClientTLS = staticTLS(clientTLS)
				acceptCfg.ServerTLS = serverTLS
			}
			a := newMux(t, dialCfg)
			b := newMux(t, acceptCfg)

			// Rejected: the dial itself succeeds, then b closes the stream.
			bad := dialRaft(t, a, b.Addr(), "rejected")
			expectClosed(t, bad, testTimeout)
			eventually(t, "the rejection log", func() bool {
				return logs.Contains("connection not admitted") && logs.Contains("proto=raft") &&
					logs.Contains(`node \"intruder\" is not a member`)
			})

			// Admitted: Accept returns this one, never the rejected one.
			hv.set(Hello{ClusterID: id, NodeID: "node-a"})
			dialRaft(t, a, b.Addr(), "admitted")
			got, err := acceptRaft(t, b, len("admitted"))
			if err != nil {
				t.Fatalf("ReadFull: %v", err)
			}
			if string(got) != "admitted" {
				t.Errorf("accepted stream: got %q, want %q", got, "admitted")
			}

			calls := admits.calls()
			var gotIDs []string
			for _, p := range calls {
				gotIDs = append(gotIDs, p.Hello.NodeID)
				if p.Proto != ProtoRaft || p.Hello.ClusterID != id || (p.TLS != nil) != tt.tls {
					t.Errorf("Admit's PeerInfo: got proto %q, cluster %x, TLS %v; want %q, %x, %v",
						p.Proto, p.Hello.ClusterID, p.TLS != nil, ProtoRaft, id, tt.tls)
				}
			}
			if want := []string{"intruder", "node-a"}; fmt.Sprint(gotIDs) != fmt.Sprint(want) {
				t.Errorf("Admit calls: got node IDs %q, want %q", gotIDs, want)
			}
		})
	}
}

func TestAdmitRejectsRPC(t *testing.T) {
	tests := []struct {
		name  string
		admit func(PeerInfo) error
		log   string
	}{
		{"error", func(PeerInfo) error { return errors.New("cluster ID mismatch") }, "cluster ID mismatch"},
		{"panic", func(PeerInfo) error { panic("admit exploded") }, "Admit panicked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs testlog.Buffer
			m := newMux(t, Config{Admit: tt.admit, Logger: logs.Logger(slog.LevelDebug)})
			var handled atomic.Int64
			m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
				handled.Add(1)
				return echo(ctx, method, req)
			})
			c := newClient(t, ClientConfig{Hello: func() Hello { return Hello{NodeID: "n2"} }})
			for i := range 2 { // a second call redials and is rejected again
				if _, err := c.Call(callCtx(t), m.Addr(), 1, nil); err == nil {
					t.Fatalf("Call #%d: got nil error, want one", i+1)
				}
			}
			eventually(t, "the rejection log", func() bool {
				return logs.Contains("connection not admitted") && logs.Contains("proto=rpc") && logs.Contains(tt.log)
			})
			if got := handled.Load(); got != 0 {
				t.Errorf("handler calls: got %d, want 0", got)
			}
			if got := m.rpcConns.Load(); got != 0 {
				t.Errorf("rpc connections served: got %d, want 0", got)
			}
		})
	}
}

func TestMalformedPreamble(t *testing.T) {
	const firstByte = 200 * time.Millisecond
	zeros := make([]byte, 16)
	tests := []struct {
		name string
		send []byte
		// closeWrite ends the stream after send; otherwise the dialer goes
		// silent and the Mux must give up after FirstByteTimeout.
		closeWrite bool
	}{
		{"bad version", append(append([]byte{ProtoRPC, 2}, zeros...), 0), false},
		{"version 0", []byte{ProtoRaft, 0}, false},
		{"protocol byte then EOF", []byte{ProtoRPC}, true},
		{"truncated then EOF", []byte{ProtoRaft, 1, 'c', 'l', 'u', 's', 't'}, true},
		{"truncated then silence", append(append([]byte{ProtoRPC, 1}, zeros...), 4, 'a', 'b'), false},
		{"n=255 with fewer bytes then EOF", append(append([]byte{ProtoRaft, 1}, zeros...), append([]byte{255}, "short"...)...), true},
		{"n=255 with fewer bytes then silence", append(append([]byte{ProtoRPC, 1}, zeros...), append([]byte{255}, "short"...)...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs testlog.Buffer
			admits := &admitLog{}
			m := newMux(t, Config{FirstByteTimeout: firstByte, Admit: admits.admit, Logger: logs.Logger(slog.LevelDebug)})
			var handled atomic.Int64
			m.ServeRPC(func(ctx context.Context, method uint8, req []byte) ([]byte, error) {
				handled.Add(1)
				return echo(ctx, method, req)
			})

			start := time.Now() // before the server can start its timer
			conn := dialRaw(t, m.Addr(), tt.send)
			if tt.closeWrite {
				if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatalf("CloseWrite: %v", err)
				}
			}
			expectClosed(t, conn, testTimeout)
			elapsed := time.Since(start)
			// An incomplete preamble waits for FirstByteTimeout, a complete
			// but wrong one is dropped at once.
			if silent := !tt.closeWrite && tt.send[1] == 1; silent && elapsed < firstByte {
				t.Errorf("closed after %v, want at least FirstByteTimeout %v", elapsed, firstByte)
			}
			eventually(t, "the preamble log", func() bool {
				return logs.Contains("bad connection preamble") && logs.Contains("level=WARN")
			})
			if got := len(admits.calls()); got != 0 {
				t.Errorf("Admit calls: got %d, want 0", got)
			}

			// Nothing reached raft: the next raft stream is the first that
			// Accept returns. Nothing reached the handler either.
			dialRaft(t, m, m.Addr(), "valid")
			if got, err := acceptRaft(t, m, len("valid")); err != nil || string(got) != "valid" {
				t.Errorf("first accepted raft stream: got %q, %v, want %q, nil", got, err, "valid")
			}
			if got := handled.Load(); got != 0 {
				t.Errorf("handler calls: got %d, want 0", got)
			}
			if got := m.rpcConns.Load(); got != 0 {
				t.Errorf("rpc connections served: got %d, want 0", got)
			}
		})
	}
}

func TestNodeIDTooLong(t *testing.T) {
	tests := []struct {
		name    string
		idLen   int
		wantErr bool
	}{
		{"255 bytes", 255, false},
		{"256 bytes", 256, true},
		{"64 KiB", 64 << 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := Hello{NodeID: strings.Repeat("n", tt.idLen)}
			admits := &admitLog{}
			m := newMux(t, Config{Admit: admits.admit, Hello: func() Hello { return hello }})
			m.ServeRPC(echo)

			t.Run("raft", func(t *testing.T) {
				conn, err := m.RaftLayer().Dial(rafAddr(m.Addr()), time.Second)
				if tt.wantErr {
					if err == nil {
						conn.Close()
						t.Fatalf("Dial: got nil error, want one")
					}
					return
				}
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer conn.Close()
				in, err := m.RaftLayer().Accept()
				if err != nil {
					t.Fatalf("Accept: %v", err)
				}
				in.Close()
			})
			t.Run("rpc", func(t *testing.T) {
				c := newClient(t, ClientConfig{Hello: func() Hello { return hello }})
				_, err := c.Call(callCtx(t), m.Addr(), 1, nil)
				if tt.wantErr {
					if !errors.Is(err, ErrNotSent) {
						t.Errorf("Call: got %v, want an ErrNotSent error", err)
					}
					return
				}
				if err != nil {
					t.Errorf("Call: %v", err)
				}
			})

			wantCalls := 2
			if tt.wantErr {
				wantCalls = 0
			}
			calls := admits.calls()
			if len(calls) != wantCalls {
				t.Fatalf("Admit calls: got %d, want %d", len(calls), wantCalls)
			}
			for _, p := range calls {
				if p.Hello != hello {
					t.Errorf("Admit's Hello: got a node ID of %d bytes, want %d", len(p.Hello.NodeID), tt.idLen)
				}
			}
		})
	}
}

func FuzzPreamble(f *testing.F) {
	valid, err := appendPreamble(nil, Hello{ClusterID: clusterID("cluster"), NodeID: "node-1"})
	if err != nil {
		f.Fatalf("appendPreamble: %v", err)
	}
	f.Add(valid)
	f.Add(append(valid, "raft bytes follow"...))
	f.Add(append([]byte{1}, make([]byte, 17)...))
	f.Add([]byte{2, 0, 0})
	f.Add(append(append([]byte{1}, make([]byte, 16)...), 255, 'x'))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := readPreamble(r)
		consumed := len(data) - r.Len()
		// Reading a byte at a time gives the same result.
		h1, err1 := readPreamble(iotest.OneByteReader(bytes.NewReader(data)))
		if h1 != h || (err1 == nil) != (err == nil) {
			t.Fatalf("byte-at-a-time read: got %+v, %v, want %+v, %v", h1, err1, h, err)
		}
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("readPreamble: unexpected error %v", err)
			}
			if h != (Hello{}) {
				t.Fatalf("readPreamble: got %+v with error %v, want the zero Hello", h, err)
			}
			return
		}
		// It consumed exactly the preamble, which re-encodes identically.
		wire, err := appendPreamble(nil, h)
		if err != nil {
			t.Fatalf("appendPreamble(%+v): %v", h, err)
		}
		if !bytes.Equal(wire, data[:consumed]) {
			t.Fatalf("re-encoded preamble %x differs from the %d bytes consumed %x", wire, consumed, data[:consumed])
		}
	})
}
