// Package transport carries all of a node's network traffic over one TCP
// port.
//
// A Mux owns the listener. Every accepted connection announces what it
// carries with its first byte:
//
//   - ProtoRaft ('R'): a hashicorp/raft NetworkTransport stream. These
//     connections are handed, protocol byte and preamble consumed, to the
//     raft.StreamLayer returned by Mux.RaftLayer.
//   - ProtoRPC ('N'): the multiplexed node RPC protocol used by followers to
//     forward writes and read-index requests to the leader. They are served
//     by the Handler given to Mux.ServeRPC.
//
// Any other first byte closes the connection.
//
// # Preamble and admission
//
// Right after the protocol byte, every dialer (the raft stream layer's
// Dial and the Client) announces itself with a preamble carrying a Hello:
//
//	uint8  version, 1
//	[16]byte cluster ID
//	uint8  n, the length of the node ID (0 to 255)
//	[n]byte node ID
//
// The protocol's own bytes follow immediately. Dialers take their Hello
// from Config.Hello and ClientConfig.Hello at every dial; a node ID over
// MaxNodeIDLen bytes fails the dial.
//
// The Mux reads the protocol byte and the preamble (and never a byte more)
// within Config.FirstByteTimeout, after the TLS handshake when
// Config.ServerTLS is set, which must itself finish within
// Config.HandshakeTimeout. It then calls Config.Admit with a PeerInfo:
// the protocol, the Hello, the remote address and, with TLS, the
// connection state (the client's verified certificates, with mutual TLS).
// A connection that Admit rejects, or whose preamble is malformed (wrong
// version, truncated, late), is closed and logged at Warn level; it never
// reaches raft nor the Handler. Dialers are not told why: a rejected raft
// stream reads EOF, and calls on a rejected RPC connection fail, usually
// with ErrUnknown (their requests went out with the preamble, before the
// Mux closed the connection), even though no Handler ran. The Hello is only a claim: over plain TCP
// any peer can announce any cluster and node ID, so Admit must check it
// against the certificate when identity matters. Handlers find the
// PeerInfo of their request's connection with PeerFromContext.
//
// At most 256 connections may be in their TLS handshake, waiting for their
// protocol byte or preamble, or in Admit at once, so a flood of idle
// connections cannot exhaust memory: the accept loop stops accepting
// until one of them finishes.
//
// With Config.ClientTLS and ClientConfig.TLS, dialers use TLS: these
// functions return the TLS configuration for each address dialled, so
// that the expected server identity can be pinned per address.
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
