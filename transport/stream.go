package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is the raft.StreamLayer of a Mux.
type streamLayer struct {
	m *Mux
	// conns carries sniffed raft connections to Accept.
	conns chan net.Conn
	// done is closed by Close.
	done      chan struct{}
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(m *Mux) *streamLayer {
	return &streamLayer{
		m:     m,
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
	}
}

// deliver hands an accepted raft connection to Accept, or closes it if the
// layer or the Mux closes first.
func (l *streamLayer) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	case <-l.m.ctx.Done():
		_ = c.Close()
	}
}

// Accept returns the next admitted raft connection, its protocol byte and
// preamble consumed. It fails once the layer or the Mux is closed.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, fmt.Errorf("transport: raft stream layer: %w", net.ErrClosed)
	case <-l.m.ctx.Done():
		return nil, fmt.Errorf("transport: raft stream layer: %w", net.ErrClosed)
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("transport: raft stream layer: %w", net.ErrClosed)
	case <-l.m.ctx.Done():
		return nil, fmt.Errorf("transport: raft stream layer: %w", net.ErrClosed)
	}
}

// Close makes Accept fail from now on. It does not close the Mux nor any
// connection. It is idempotent.
func (l *streamLayer) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr returns the Mux's advertise address, which raft uses as this
// node's address.
func (l *streamLayer) Addr() net.Addr { return tcpAddr(l.m.addr) }

// Dial connects to the Mux at address (with TLS when Config.ClientTLS is
// set) within timeout, announces a raft stream with the preamble of
// Config.Hello and returns the connection. It does not wait for the
// remote Mux to admit the connection: a rejected connection is closed by
// the remote end. The Mux tracks the connection: Mux.Close closes it if
// raft has not.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	m := l.m
	if m.ctx.Err() != nil {
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, ErrClosed)
	}
	header, err := appendPreamble([]byte{ProtoRaft}, hello(m.cfg.Hello))
	if err != nil {
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, err)
	}
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	raw, conn, err := dial(ctx, string(address), m.cfg.ClientTLS, timeout)
	if err != nil {
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, err)
	}
	tc, ok := m.track(raw, conn)
	if !ok {
		_ = raw.Close()
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, ErrClosed)
	}
	deadline, _ := ctx.Deadline()
	if err := tc.SetWriteDeadline(deadline); err != nil {
		_ = tc.closeRaw()
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, err)
	}
	if _, err := tc.Write(header); err != nil {
		_ = tc.closeRaw()
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, err)
	}
	if err := tc.SetWriteDeadline(time.Time{}); err != nil {
		_ = tc.closeRaw()
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, err)
	}
	return tc, nil
}

// tcpAddr is a net.Addr for an address string, as advertised.
type tcpAddr string

// Network implements net.Addr.
func (a tcpAddr) Network() string { return "tcp" }

// String implements net.Addr.
func (a tcpAddr) String() string { return string(a) }
