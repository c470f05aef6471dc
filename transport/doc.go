// Package transport carries all of a node's network traffic over one TCP
// port.
//
// A Mux owns the listener. Every accepted connection announces what it
// carries with its first byte:
//
//   - ProtoRaft ('R'): a hashicorp/raft NetworkTransport stream. These
//     connections are handed, first byte consumed, to the raft.StreamLayer
//     returned by Mux.RaftLayer.
//   - ProtoRPC ('N'): the multiplexed node RPC protocol used by followers to
//     forward writes and read-index requests to the leader. They are served
//     by the Handler given to Mux.ServeRPC.
//
// Any other first byte closes the connection. The first byte must arrive
// within Config.FirstByteTimeout (after the TLS handshake when
// Config.ServerTLS is set, which must itself finish within
// Config.HandshakeTimeout); at most 256 connections may be
// waiting for their first byte at once, so a flood of idle connections
// cannot exhaust memory: the accept loop stops accepting until one of them
// finishes.
//
// # Node RPC
//
// A Client keeps one connection per remote address and multiplexes every
// concurrent Call to that address over it: requests and responses
// interleave and are matched by a request ID, so a thousand concurrent
// forwarded writes reach the leader concurrently and raft can batch them.
// Each connection has one writer goroutine that coalesces queued frames
// into a single buffered flush: it flushes when its queue is empty, after
// yielding the processor once so that goroutines about to queue a frame
// can join the flush. Frames are batched under load (a 256-caller
// benchmark is ten times faster per call than one caller) without adding
// latency when idle.
//
// Every frame is
//
//	uint32 length (big-endian, of everything after it)
//	uint64 request ID
//	uint8  kind: the method in a request, the status in a response
//	payload
//
// A response with status ok carries the handler's response as its
// payload; a response with status error carries a uint16 error code
// followed by the error message. The length may not exceed
// Config.MaxFrameBytes: a larger frame from the network closes the
// connection.
//
// Calls report whether the request may have reached the server, so that
// writes are never retried blindly: ErrNotSent means it certainly did not
// leave this process (safe to retry), ErrUnknown means it may have been
// written (the outcome is unknown).
//
// # Shutdown order
//
// The owner shuts raft down first (raft.Raft.Shutdown, then
// NetworkTransport.Close, which closes only the stream layer), then closes
// the Mux, which closes the listener and every connection it accepted or
// dialled, cancels handler contexts and waits for all its goroutines.
package transport

// Protocol bytes: the first byte of every connection to a Mux.
const (
	// ProtoRaft marks a connection carrying hashicorp/raft traffic.
	ProtoRaft byte = 'R'
	// ProtoRPC marks a connection carrying the multiplexed node RPC.
	ProtoRPC byte = 'N'
)
