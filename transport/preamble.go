package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
)

// Wire layout of the preamble, which follows the protocol byte on every
// connection:
//
//	[0]        version, preambleVersion
//	[1:17]     cluster ID
//	[17]       n, the length of the node ID (0 to 255)
//	[18:18+n]  node ID
const (
	preambleVersion byte = 1
	clusterIDLen         = 16
)

// MaxNodeIDLen is the longest node ID, in bytes, that a Hello can carry:
// its length travels in one byte.
const MaxNodeIDLen = 255

// Hello is what a dialer announces about itself in the preamble of every
// connection it opens: the cluster it belongs to and its node ID. Nothing
// authenticates it: over plain TCP any peer can claim anything, and over
// TLS it is only as trustworthy as the Admit function that checks it
// against the peer's certificate.
type Hello struct {
	// ClusterID identifies the cluster the dialer belongs to.
	ClusterID [16]byte
	// NodeID is the dialer's node ID, at most MaxNodeIDLen bytes.
	NodeID string
}

// PeerInfo describes an accepted connection. Config.Admit receives it
// before the connection is handed over, and every RPC Handler finds it in
// its context (see PeerFromContext).
type PeerInfo struct {
	// Proto is the connection's protocol byte: ProtoRaft or ProtoRPC.
	Proto byte
	// Hello is what the dialer announced in its preamble. It is not
	// authenticated unless Admit checks it against TLS.
	Hello Hello
	// Remote is the dialer's network address.
	Remote net.Addr
	// TLS is the state of the connection's TLS session: nil on plain TCP;
	// with Config.ServerTLS it is set once the handshake is complete, with
	// PeerCertificates holding the certificates the dialer presented (set
	// ClientAuth to require and verify them). It is shared: do not modify
	// it.
	TLS *tls.ConnectionState
}

// peerKey is the context key of a handler's PeerInfo.
type peerKey struct{}

// PeerFromContext returns the PeerInfo of the connection that carried an
// RPC request; ctx is the context given to the Handler. It reports false
// for a context that does not come from a Mux.
func PeerFromContext(ctx context.Context) (PeerInfo, bool) {
	p, ok := ctx.Value(peerKey{}).(PeerInfo)
	return p, ok
}

// withPeer returns ctx carrying p for PeerFromContext.
func withPeer(ctx context.Context, p PeerInfo) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// appendPreamble appends the preamble announcing h to b. It fails, without
// appending, if h's node ID is too long.
func appendPreamble(b []byte, h Hello) ([]byte, error) {
	if len(h.NodeID) > MaxNodeIDLen {
		return b, fmt.Errorf("transport: node ID of %d bytes exceeds the limit of %d", len(h.NodeID), MaxNodeIDLen)
	}
	b = append(b, preambleVersion)
	b = append(b, h.ClusterID[:]...)
	b = append(b, byte(len(h.NodeID)))
	return append(b, h.NodeID...), nil
}

// readPreamble reads one preamble from r and returns the Hello it carries.
// It reads exactly the preamble's bytes and nothing after them, so that
// the protocol's own bytes stay in r. A wrong version fails with
// ErrProtocol (wrapped, without reading further); a stream that ends
// inside the preamble with io.ErrUnexpectedEOF (wrapped); other read
// errors are returned wrapped.
func readPreamble(r io.Reader) (Hello, error) {
	var h Hello
	var hdr [1 + clusterIDLen + 1]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return h, fmt.Errorf("reading preamble version: %w", unexpected(err))
	}
	if hdr[0] != preambleVersion {
		return h, fmt.Errorf("%w: preamble version %d, want %d", ErrProtocol, hdr[0], preambleVersion)
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		return h, fmt.Errorf("reading preamble: %w", unexpected(err))
	}
	copy(h.ClusterID[:], hdr[1:1+clusterIDLen])
	if n := int(hdr[1+clusterIDLen]); n > 0 {
		id := make([]byte, n) // at most 255 bytes
		if _, err := io.ReadFull(r, id); err != nil {
			return Hello{}, fmt.Errorf("reading preamble node ID: %w", unexpected(err))
		}
		h.NodeID = string(id)
	}
	return h, nil
}

// protoName names a protocol byte for logs.
func protoName(proto byte) string {
	switch proto {
	case ProtoRaft:
		return "raft"
	case ProtoRPC:
		return "rpc"
	}
	return fmt.Sprintf("0x%02x", proto)
}
