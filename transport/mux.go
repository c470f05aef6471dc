package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Mux owns a node's listener and demultiplexes its connections between
// raft (see RaftLayer) and the node RPC (see ServeRPC).
type Mux struct {
	cfg  Config
	log  *slog.Logger
	ln   net.Listener
	addr string // advertise address

	// ctx is cancelled by Close; handler contexts derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	g      group

	// pending is a semaphore bounding the connections not yet identified:
	// in their TLS handshake, waiting for their protocol byte or preamble,
	// or in Admit.
	pending chan struct{}
	layer   *streamLayer

	handler      atomic.Pointer[Handler]
	handlerReady chan struct{} // closed by the first ServeRPC
	handlerOnce  sync.Once

	// rpcConns counts the RPC connections accepted (for tests and
	// diagnostics).
	rpcConns atomic.Int64

	closeOnce sync.Once
	closeErr  error

	// mu guards conns and closed. It is a leaf lock: nothing else is
	// locked, and no goroutine is started, while it is held.
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

// Listen binds cfg.BindAddr and starts accepting connections. Close the
// returned Mux to release it.
func Listen(cfg Config) (*Mux, error) {
	cfg = cfg.withDefaults()
	if cfg.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("transport: invalid advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mux{
		cfg:          cfg,
		log:          cfg.Logger,
		ln:           ln,
		addr:         cfg.AdvertiseAddr,
		ctx:          ctx,
		cancel:       cancel,
		pending:      make(chan struct{}, maxPendingConns),
		handlerReady: make(chan struct{}),
		conns:        make(map[*trackedConn]struct{}),
	}
	if m.addr == "" {
		m.addr = ln.Addr().String()
	}
	m.layer = newStreamLayer(m)
	m.g.Go(m.acceptLoop)
	return m, nil
}

// Addr returns the advertise address: the address other nodes dial and
// the address raft knows this node by.
func (m *Mux) Addr() string { return m.addr }

// Conns returns the number of open connections the Mux accepted or dialled
// (raft's included), for monitoring and for tests that look for
// connections nobody closes.
func (m *Mux) Conns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// RaftLayer returns the raft.StreamLayer carrying this Mux's raft traffic,
// for raft.NewNetworkTransport. Every call returns the same layer; once
// closed (NetworkTransport.Close closes it) it stays closed, so a Mux
// serves one raft transport in its life.
func (m *Mux) RaftLayer() raft.StreamLayer { return m.layer }

// Close closes the listener and every connection the Mux accepted or
// dialled (raft's included), cancels the contexts of running handlers and
// waits for every goroutine the Mux started, handlers included. Close
// raft's transport first: raft's own connection goroutines end when their
// connections close. Close is idempotent; later calls return what the
// first returned.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		conns := m.conns
		m.conns = nil
		m.mu.Unlock()

		err := m.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		m.closeErr = err
		// Connections first, then contexts: a handler that returns because
		// its context ended must not get its response out, since callers
		// are told a closing server's outcome is unknown.
		for tc := range conns {
			_ = tc.raw.Close()
		}
		m.cancel()
		m.g.Wait()
	})
	return m.closeErr
}

// acceptLoop accepts connections until the listener closes. It takes a
// pending slot before accepting, so at most maxPendingConns connections
// are being identified at once; beyond that, new connections wait in the
// kernel's backlog.
func (m *Mux) acceptLoop() {
	var backoff time.Duration
	for {
		select {
		case m.pending <- struct{}{}:
		case <-m.ctx.Done():
			return
		}
		raw, err := m.ln.Accept()
		if err != nil {
			<-m.pending
			if m.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("transport: accept failed", "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-m.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		tc, ok := m.track(raw, raw)
		if !ok {
			<-m.pending
			_ = raw.Close()
			return
		}
		m.g.Go(func() { m.serveConn(tc) })
	}
}

// serveConn identifies a connection and hands it over.
func (m *Mux) serveConn(tc *trackedConn) {
	peer, ok := m.identify(tc)
	<-m.pending
	if !ok {
		_ = tc.Close()
		return
	}
	switch peer.Proto {
	case ProtoRaft:
		m.layer.deliver(tc)
	case ProtoRPC:
		m.rpcConns.Add(1)
		m.serveRPCConn(tc, peer)
	}
}

// identify completes the TLS handshake when configured, reads the
// protocol byte and the preamble (both within FirstByteTimeout) and asks
// Config.Admit. It logs why and reports false when the connection must be
// closed instead. It reads nothing past the preamble.
func (m *Mux) identify(tc *trackedConn) (PeerInfo, bool) {
	peer := PeerInfo{Remote: tc.RemoteAddr()}
	remote := peer.Remote.String()
	if m.cfg.ServerTLS != nil {
		tlsConn := tls.Server(tc.raw, m.cfg.ServerTLS)
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.HandshakeTimeout)
		err := tlsConn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			m.log.Debug("transport: dropping connection", "remote", remote, "error", fmt.Errorf("tls handshake: %w", err))
			return peer, false
		}
		tc.Conn = tlsConn
		state := tlsConn.ConnectionState()
		peer.TLS = &state
	}
	if err := tc.SetReadDeadline(time.Now().Add(m.cfg.FirstByteTimeout)); err != nil {
		m.log.Debug("transport: dropping connection", "remote", remote, "error", err)
		return peer, false
	}
	var b [1]byte
	if _, err := io.ReadFull(tc.Conn, b[:]); err != nil {
		m.log.Debug("transport: dropping connection", "remote", remote, "error", fmt.Errorf("reading protocol byte: %w", err))
		return peer, false
	}
	peer.Proto = b[0]
	if peer.Proto != ProtoRaft && peer.Proto != ProtoRPC {
		m.log.Warn("transport: unknown protocol byte, closing connection", "remote", remote, "byte", peer.Proto)
		return peer, false
	}
	h, err := readPreamble(tc.Conn)
	if err != nil {
		level := slog.LevelWarn
		if m.ctx.Err() != nil { // closed under us by Mux.Close
			level = slog.LevelDebug
		}
		m.log.Log(m.ctx, level, "transport: bad connection preamble, closing connection",
			"remote", remote, "proto", protoName(peer.Proto), "error", err)
		return peer, false
	}
	peer.Hello = h
	if err := tc.SetReadDeadline(time.Time{}); err != nil {
		m.log.Debug("transport: dropping connection", "remote", remote, "error", err)
		return peer, false
	}
	if err := m.admit(peer); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, ErrNotReady) {
			level = slog.LevelDebug
		}
		m.log.Log(context.Background(), level, "transport: connection not admitted, closing it",
			"remote", remote, "proto", protoName(peer.Proto), "node_id", peer.Hello.NodeID, "error", err)
		return peer, false
	}
	return peer, true
}

// admit calls Config.Admit, turning a panic into a rejection.
func (m *Mux) admit(peer PeerInfo) (err error) {
	if m.cfg.Admit == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("transport: Admit panicked",
				"remote", peer.Remote.String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("admit panicked: %v", r)
		}
	}()
	return m.cfg.Admit(peer)
}

// track registers a connection so that Close closes it. It reports false
// once the Mux is closed.
func (m *Mux) track(raw, conn net.Conn) (*trackedConn, bool) {
	tc := &trackedConn{Conn: conn, raw: raw, m: m}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false
	}
	m.conns[tc] = struct{}{}
	return tc, true
}

func (m *Mux) untrack(tc *trackedConn) {
	m.mu.Lock()
	delete(m.conns, tc) // no-op on the nil map after Close
	m.mu.Unlock()
}

// trackedConn is a connection registered with its Mux; closing it
// unregisters it.
type trackedConn struct {
	net.Conn          // the connection to use: raw, or TLS over raw
	raw      net.Conn // the TCP connection, closed by Mux.Close
	m        *Mux
	once     sync.Once
}

// Close unregisters the connection and closes it (with a TLS close_notify
// when it is a TLS connection).
func (tc *trackedConn) Close() error {
	err := net.ErrClosed
	tc.once.Do(func() {
		tc.m.untrack(tc)
		err = tc.Conn.Close()
	})
	return err
}

// closeRaw unregisters the connection and closes its TCP connection
// without a TLS close_notify, so it never blocks.
func (tc *trackedConn) closeRaw() error {
	err := net.ErrClosed
	tc.once.Do(func() {
		tc.m.untrack(tc)
		err = tc.raw.Close()
	})
	return err
}
