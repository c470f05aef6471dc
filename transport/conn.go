package transport

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
)

const (
	// connBufferSize is the size of each connection's read and write
	// buffers.
	connBufferSize = 64 << 10
	// maxSpareQueue bounds the write queue kept for reuse between batches.
	maxSpareQueue = 1024
)

// Call states. A call starts queued; the writer moves it to written just
// before encoding it, or a caller giving up (or a failing connection) moves
// it to abandoned, after which the writer skips it. Both end states are
// final, so whoever resolves the call knows whether it may have been sent.
const (
	callQueued uint32 = iota
	callWritten
	callAbandoned
)

// call is one client request in flight.
type call struct {
	state atomic.Uint32
	// ch receives the call's one result; buffered so the sender never
	// blocks, whether or not the caller still waits.
	ch chan callResult
}

type callResult struct {
	resp []byte
	err  error
}

// outFrame is a frame waiting in a connection's write queue.
type outFrame struct {
	id      uint64
	kind    byte
	payload []byte
	// call is set for client requests: the writer claims it (queued ->
	// written) before encoding, and skips the frame if it was abandoned.
	call *call
	// release is set for server responses: once the frame is written the
	// writer frees its request's slot in frameConn.inflight.
	release bool
}

// frameConn is the part of an RPC connection shared by client and server:
// a frame reader, and a write queue drained by one writer goroutine that
// coalesces everything queued into one flush.
type frameConn struct {
	conn      net.Conn
	closeConn func() error
	fr        *frameReader
	bw        *bufio.Writer

	// wake has capacity 1: a pending token means "the queue may be
	// non-empty".
	wake chan struct{}
	// done is closed by shutdown.
	done chan struct{}
	// inflight is the server's semaphore of requests read but not yet
	// answered on the wire (nil on the client side). The reader fills it;
	// the writer drains it as responses marked release are written.
	inflight chan struct{}

	// mu guards queue, spare, closed and cause. It is a leaf lock: nothing
	// else is locked while it is held.
	mu     sync.Mutex
	queue  []outFrame
	spare  []outFrame
	closed bool
	cause  error
}

// newFrameConn wraps conn. closeConn closes the connection (it may close
// the raw TCP connection under a TLS one, so that shutdown never waits for
// a TLS close_notify).
func newFrameConn(conn net.Conn, closeConn func() error, maxFrame int) *frameConn {
	return &frameConn{
		conn:      conn,
		closeConn: closeConn,
		fr:        newFrameReader(bufio.NewReaderSize(conn, connBufferSize), maxFrame),
		bw:        bufio.NewWriterSize(conn, connBufferSize),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
}

// enqueue queues f for the writer. It reports false if the connection is
// shut down; the frame is then dropped.
func (c *frameConn) enqueue(f outFrame) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, f)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// take removes and returns everything queued, or nil if nothing is.
func (c *frameConn) take() []outFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.queue
	if len(batch) == 0 {
		return nil
	}
	c.queue, c.spare = c.spare[:0], nil
	return batch
}

// takeAfterYield lets runnable goroutines (callers, handlers) run once
// before taking the queue: under load they queue more frames into the
// coming flush; when idle it returns at once, adding no latency.
func (c *frameConn) takeAfterYield() []outFrame {
	runtime.Gosched()
	return c.take()
}

// recycle keeps a written batch's array for the next batch.
func (c *frameConn) recycle(batch []outFrame) {
	clear(batch)
	if cap(batch) > maxSpareQueue {
		return
	}
	c.mu.Lock()
	if c.spare == nil && !c.closed {
		c.spare = batch[:0]
	}
	c.mu.Unlock()
}

// writeLoop is the connection's only writer. It drains the queue into the
// buffered writer batch after batch and flushes once the queue is empty.
func (c *frameConn) writeLoop() {
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		for batch := c.take(); batch != nil; batch = c.takeAfterYield() {
			for i := range batch {
				f := &batch[i]
				if f.call != nil && !f.call.state.CompareAndSwap(callQueued, callWritten) {
					continue // abandoned before it was written
				}
				if err := writeFrame(c.bw, f.id, f.kind, f.payload); err != nil {
					c.shutdown(fmt.Errorf("write: %w", err))
					return
				}
				if f.release {
					<-c.inflight
				}
			}
			c.recycle(batch)
		}
		if err := c.bw.Flush(); err != nil {
			c.shutdown(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// shutdown closes the connection and records cause, once; later calls do
// nothing. Queued frames are dropped: their calls stay queued, so the
// client reports them as not sent.
func (c *frameConn) shutdown(cause error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.cause = cause
	c.queue, c.spare = nil, nil
	c.mu.Unlock()
	close(c.done)
	_ = c.closeConn()
}

// shutdownCause returns the error given to the first shutdown, or nil.
func (c *frameConn) shutdownCause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}
