package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Client calls the Handlers of remote Muxes. It keeps one connection per
// address and multiplexes all concurrent calls to that address over it. A
// Client is safe for concurrent use.
type Client struct {
	cfg ClientConfig
	log *slog.Logger
	// ctx is cancelled by Close; it aborts dials in progress.
	ctx    context.Context
	cancel context.CancelFunc
	g      group

	closeOnce sync.Once

	// mu guards conns and closed, and the fc field of every clientConn.
	// Lock order: mu may be held while starting goroutines, never while
	// taking a clientConn.mu or a frameConn.mu.
	mu     sync.Mutex
	conns  map[string]*clientConn
	closed bool
}

// clientConn is the pooled connection to one address.
type clientConn struct {
	c    *Client
	addr string
	// ready is closed when the dial has finished; then exactly one of fc
	// and dialErr is set, and neither changes again.
	ready   chan struct{}
	fc      *frameConn
	dialErr error
	nextID  atomic.Uint64

	// mu guards pending and broken. It is a leaf lock.
	mu      sync.Mutex
	pending map[uint64]*call
	broken  error // why the connection failed; nil while it works
}

// NewClient returns a Client. Close it to release its connections and
// goroutines.
func NewClient(cfg ClientConfig) *Client {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg:    cfg,
		log:    cfg.Logger,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[string]*clientConn),
	}
}

// Call sends req to the Handler of the Mux at addr with the given method
// and waits for its response.
//
// A handler error is returned as a *RemoteError. Any other error matches
// exactly one of ErrNotSent (the request certainly did not leave this
// process: retrying is safe) and ErrUnknown (the request may have been
// written: the handler may or may not have run), and wraps the cause; when
// ctx ended it also matches ctx.Err(). Calls after Close fail with an
// error matching both ErrNotSent and ErrClosed. req must not be modified
// until Call returns.
func (c *Client) Call(ctx context.Context, addr string, method uint8, req []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	if frameHeaderLen+len(req) > c.cfg.MaxFrameBytes {
		return nil, fmt.Errorf("%w: %w: request of %d bytes, limit %d",
			ErrNotSent, ErrFrameTooLarge, frameHeaderLen+len(req), c.cfg.MaxFrameBytes)
	}
	cc, err := c.conn(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	select {
	case <-cc.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: dialling %s: %w", ErrNotSent, addr, ctx.Err())
	}
	if cc.dialErr != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrNotSent, addr, cc.dialErr)
	}

	cl := &call{ch: make(chan callResult, 1)}
	id := cc.nextID.Add(1)
	if err := cc.register(id, cl); err != nil {
		return nil, fmt.Errorf("%w: connection to %s already broken: %w", ErrNotSent, addr, err)
	}
	// If the connection is shut down, enqueue fails and the reader's
	// cc.fail resolves the registered call: nothing more to do here.
	cc.fc.enqueue(outFrame{id: id, kind: method, payload: req, call: cl})

	select {
	case r := <-cl.ch:
		return r.resp, r.err
	case <-ctx.Done():
	}
	cc.unregister(id)
	select {
	case r := <-cl.ch: // resolved while ctx ended: report what happened
		return r.resp, r.err
	default:
	}
	if cl.state.CompareAndSwap(callQueued, callAbandoned) || cl.state.Load() == callAbandoned {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, ctx.Err())
	}
	return nil, fmt.Errorf("%w: waiting for %s: %w", ErrUnknown, addr, ctx.Err())
}

// Close fails every pending call, closes every connection and waits for
// the Client's goroutines. It is idempotent and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		var fcs []*frameConn
		for _, cc := range c.conns {
			if cc.fc != nil {
				fcs = append(fcs, cc.fc)
			}
		}
		c.conns = nil
		c.mu.Unlock()

		c.cancel() // aborts dials; they see closed when they finish
		for _, fc := range fcs {
			fc.shutdown(ErrClosed)
		}
		c.g.Wait()
	})
	return nil
}

// conn returns the pooled connection to addr, starting a dial if there is
// none. Concurrent callers share one dial.
func (c *Client) conn(addr string) (*clientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc := c.conns[addr]; cc != nil {
		return cc, nil
	}
	cc := &clientConn{
		c:       c,
		addr:    addr,
		ready:   make(chan struct{}),
		pending: make(map[uint64]*call),
	}
	c.conns[addr] = cc
	// Started under mu with closed false: Close's Wait cannot have begun.
	c.g.Go(func() { c.dialAndRead(cc) })
	return cc, nil
}

// drop removes cc from the pool so that the next call redials.
func (c *Client) drop(cc *clientConn) {
	c.mu.Lock()
	if c.conns[cc.addr] == cc {
		delete(c.conns, cc.addr)
	}
	c.mu.Unlock()
}

// dialAndRead dials cc, starts its writer and then runs its reader until
// the connection fails.
func (c *Client) dialAndRead(cc *clientConn) {
	header, err := appendPreamble([]byte{ProtoRPC}, hello(c.cfg.Hello))
	var raw, conn net.Conn
	if err == nil {
		raw, conn, err = dial(c.ctx, cc.addr, c.cfg.TLS, c.cfg.DialTimeout)
	}
	if err != nil {
		if c.ctx.Err() != nil {
			err = ErrClosed
		}
		c.log.Debug("transport: rpc dial failed", "addr", cc.addr, "error", err)
		c.drop(cc)
		cc.dialErr = err
		close(cc.ready)
		return
	}
	fc := newFrameConn(conn, raw.Close, c.cfg.MaxFrameBytes)
	_, _ = fc.bw.Write(header) // sent with the first batch

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = raw.Close()
		cc.dialErr = ErrClosed
		close(cc.ready)
		return
	}
	cc.fc = fc
	c.mu.Unlock()

	c.g.Go(fc.writeLoop)
	close(cc.ready)
	cc.readLoop()
}

// readLoop delivers responses until the connection fails, then fails the
// connection's pending calls.
func (cc *clientConn) readLoop() {
	var err error
	for {
		var f frame
		if f, err = cc.fc.fr.read(); err != nil {
			break
		}
		if err = cc.deliver(f); err != nil {
			break
		}
	}
	cc.fc.shutdown(err)
	cause := cc.fc.shutdownCause()
	if !errors.Is(cause, ErrClosed) && !errors.Is(cause, io.EOF) {
		cc.c.log.Warn("transport: rpc connection failed", "addr", cc.addr, "error", cause)
	}
	cc.fail(cause)
}

// deliver hands a response to its call. Responses to abandoned calls are
// dropped.
func (cc *clientConn) deliver(f frame) error {
	cc.mu.Lock()
	cl := cc.pending[f.id]
	delete(cc.pending, f.id)
	cc.mu.Unlock()

	var res callResult
	var err error
	switch f.kind {
	case statusOK:
		res.resp = f.payload
	case statusError:
		var re *RemoteError
		if re, err = decodeError(f.payload); err == nil {
			res.err = re
		}
	default:
		err = fmt.Errorf("%w: response status %d", ErrProtocol, f.kind)
	}
	if err != nil {
		res.err = fmt.Errorf("%w: bad response from %s: %w", ErrUnknown, cc.addr, err)
	}
	if cl != nil {
		cl.ch <- res
	}
	return err
}

func (cc *clientConn) register(id uint64, cl *call) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.broken != nil {
		return cc.broken
	}
	cc.pending[id] = cl
	return nil
}

func (cc *clientConn) unregister(id uint64) {
	cc.mu.Lock()
	delete(cc.pending, id)
	cc.mu.Unlock()
}

// fail marks the connection broken, drops it from the pool and resolves
// every pending call: ErrNotSent for calls the writer never claimed,
// ErrUnknown for the others.
func (cc *clientConn) fail(cause error) {
	if cause == nil {
		cause = ErrClosed
	}
	cc.mu.Lock()
	cc.broken = cause
	pending := cc.pending
	cc.pending = nil
	cc.mu.Unlock()

	cc.c.drop(cc)
	for _, cl := range pending {
		if cl.state.CompareAndSwap(callQueued, callAbandoned) || cl.state.Load() == callAbandoned {
			cl.ch <- callResult{err: fmt.Errorf("%w: connection to %s failed before the request was written: %w", ErrNotSent, cc.addr, cause)}
		} else {
			cl.ch <- callResult{err: fmt.Errorf("%w: connection to %s failed: %w", ErrUnknown, cc.addr, cause)}
		}
	}
}

// dial connects to addr over TCP within timeout (or until ctx ends), with
// TLS when tlsFor is set: tlsFor(addr) gives the configuration, and the
// handshake counts against the same timeout. raw is the TCP connection,
// conn the one to use.
func dial(ctx context.Context, addr string, tlsFor func(string) (*tls.Config, error), timeout time.Duration) (raw, conn net.Conn, err error) {
	var cfg *tls.Config
	if tlsFor != nil {
		if cfg, err = tlsFor(addr); err != nil {
			return nil, nil, fmt.Errorf("tls config for %s: %w", addr, err)
		}
		if cfg == nil {
			return nil, nil, fmt.Errorf("tls config for %s: the TLS function returned no configuration", addr)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	raw, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if cfg == nil {
		return raw, raw, nil
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	return raw, tc, nil
}
