package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
)

// Handler serves node RPC requests. It is called in its own goroutine for
// each request, concurrently with other requests of the same and of other
// connections; ctx is cancelled when the request's connection or the Mux
// closes, and carries the connection's PeerInfo (see PeerFromContext). req belongs to the handler. A returned error is sent to the
// caller as a *RemoteError (see RemoteError); a panic is recovered, logged
// and sent as an error with code CodeInternal.
type Handler func(ctx context.Context, method uint8, req []byte) (resp []byte, err error)

// ServeRPC sets the handler of RPC requests and starts serving them. RPC
// connections accepted before the first ServeRPC wait, unread, until it is
// called (their callers wait too, until their contexts end). A later call
// replaces the handler for requests read from then on. h must not be nil.
func (m *Mux) ServeRPC(h Handler) {
	if h == nil {
		panic("transport: ServeRPC with a nil Handler")
	}
	m.handler.Store(&h)
	m.handlerOnce.Do(func() { close(m.handlerReady) })
}

// serveRPCConn serves one RPC connection: it is the connection's reader,
// starting a writer and one goroutine per request. At most
// MaxConcurrentPerConn requests are in flight (read, and not yet answered
// on the wire) at once; beyond that the reader stops reading, which
// pushes back on the client through TCP flow control.
func (m *Mux) serveRPCConn(tc *trackedConn, peer PeerInfo) {
	ctx, cancel := context.WithCancel(withPeer(m.ctx, peer))
	defer cancel()
	fc := newFrameConn(tc, tc.closeRaw, m.cfg.MaxFrameBytes)
	fc.inflight = make(chan struct{}, m.cfg.MaxConcurrentPerConn)
	m.g.Go(fc.writeLoop)

	err := m.readRequests(ctx, fc)
	fc.shutdown(err)
	remote := tc.RemoteAddr().String()
	switch {
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrProtocol):
		m.log.Error("transport: closing rpc connection", "remote", remote, "error", err)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, context.Canceled):
		m.log.Debug("transport: rpc connection closed", "remote", remote, "error", err)
	default:
		m.log.Warn("transport: rpc connection failed", "remote", remote, "error", err)
	}
}

// readRequests reads requests until the connection fails or ctx ends.
func (m *Mux) readRequests(ctx context.Context, fc *frameConn) error {
	select {
	case <-m.handlerReady:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		f, err := fc.fr.read()
		if err != nil {
			return err
		}
		select {
		case fc.inflight <- struct{}{}: // freed by the writer
		case <-fc.done:
			return fc.shutdownCause()
		case <-ctx.Done():
			return ctx.Err()
		}
		h := *m.handler.Load()
		m.g.Go(func() { m.handle(ctx, fc, h, f) })
	}
}

// handle runs the handler for one request and queues its response.
func (m *Mux) handle(ctx context.Context, fc *frameConn, h Handler, f frame) {
	resp, err := m.callHandler(ctx, h, f)
	out := outFrame{id: f.id, kind: statusOK, payload: resp, release: true}
	if err == nil && frameHeaderLen+len(resp) > m.cfg.MaxFrameBytes {
		m.log.Error("transport: rpc response too large",
			"method", f.kind, "bytes", frameHeaderLen+len(resp), "limit", m.cfg.MaxFrameBytes)
		err = &RemoteError{Code: CodeInternal, Msg: fmt.Sprintf(
			"response of %d bytes exceeds the %d byte frame limit", frameHeaderLen+len(resp), m.cfg.MaxFrameBytes)}
	}
	if err != nil {
		out.kind = statusError
		out.payload = encodeError(toRemoteError(err), m.cfg.MaxFrameBytes-frameHeaderLen)
	}
	fc.enqueue(out) // dropped if the connection is gone
}

// callHandler calls h, turning a panic into an error.
func (m *Mux) callHandler(ctx context.Context, h Handler, f frame) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("transport: rpc handler panicked",
				"method", f.kind, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, &RemoteError{Code: CodeInternal, Msg: fmt.Sprintf("handler panic: %v", r)}
		}
	}()
	return h(ctx, f.kind, f.payload)
}
