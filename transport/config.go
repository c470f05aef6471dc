package transport

import (
	"crypto/tls"
	"log/slog"
	"sync"
	"time"
)

// Defaults applied to zero (or negative) Config and ClientConfig fields.
const (
	// DefaultBindAddr is the address a Mux listens on when Config.BindAddr is
	// empty.
	DefaultBindAddr = "127.0.0.1:0"
	// DefaultHandshakeTimeout bounds a server-side TLS handshake.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultFirstByteTimeout bounds the wait for a connection's protocol
	// byte and preamble.
	DefaultFirstByteTimeout = 5 * time.Second
	// DefaultMaxFrameBytes bounds one RPC frame (everything after its length
	// prefix).
	DefaultMaxFrameBytes = 8 << 20
	// DefaultMaxConcurrentPerConn bounds the requests handled at once for one
	// RPC connection.
	DefaultMaxConcurrentPerConn = 4096
	// DefaultDialTimeout bounds a Client's dial, TLS handshake included.
	DefaultDialTimeout = 2 * time.Second
)

// maxPendingConns bounds the accepted connections that are still in their
// TLS handshake, waiting for their protocol byte or preamble, or in Admit.
const maxPendingConns = 256

// Config configures a Mux. The zero value listens on 127.0.0.1 with an
// ephemeral port, plain TCP.
type Config struct {
	// BindAddr is the TCP address to listen on; "" means "127.0.0.1:0".
	BindAddr string
	// AdvertiseAddr is the address other nodes dial to reach this one, and
	// the address raft knows this node by; "" means the bound address (which
	// is not dialable when binding to a wildcard address: set it then).
	AdvertiseAddr string
	// ServerTLS, when set, makes the Mux accept only TLS connections. Set
	// ClientAuth to tls.RequireAndVerifyClientCert for mutual TLS.
	ServerTLS *tls.Config
	// ClientTLS, when set, makes the raft stream layer dial with TLS: it is
	// called at every dial with the address being dialled and returns the
	// TLS configuration for it, so that the caller can pin the identity
	// expected at that address. An empty ServerName is set to the
	// address's host (on a copy). An error, or a nil configuration, fails
	// that dial. nil means plain TCP.
	ClientTLS func(addr string) (*tls.Config, error)
	// Hello, when set, is called at every raft dial for what the dial
	// announces in its preamble (see Hello), so the value may change over
	// time; nil announces the zero Hello. A node ID longer than
	// MaxNodeIDLen fails the dial.
	Hello func() Hello
	// Admit, when set, decides whether an accepted connection is served.
	// It is called once the protocol byte and the preamble have been read,
	// before the connection reaches raft or the RPC Handler; an error
	// closes the connection and is logged at Warn level with the remote
	// address and protocol, so it must not contain secrets. It is called
	// from each connection's own goroutine, concurrently for different
	// connections, and must return promptly: until it does, the
	// connection counts against the limit of 256 connections not yet
	// identified, and Mux.Close waits for it. A panic rejects the
	// connection. nil admits every connection.
	Admit func(PeerInfo) error
	// HandshakeTimeout bounds a server-side TLS handshake (default 5s).
	HandshakeTimeout time.Duration
	// FirstByteTimeout bounds the wait for a connection's protocol byte
	// and preamble, together, after the TLS handshake (default 5s).
	FirstByteTimeout time.Duration
	// MaxFrameBytes bounds an RPC frame, request or response, not counting
	// its 4-byte length prefix (default 8 MiB; at least 9, the
	// frame header).
	MaxFrameBytes int
	// MaxConcurrentPerConn bounds the RPC requests handled at once for one
	// connection; beyond it the connection's reader waits (default 4096).
	MaxConcurrentPerConn int
	// Logger receives the Mux's logs; nil discards them.
	Logger *slog.Logger
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// TLS, when set, makes the Client dial with TLS: it is called at every
	// dial with the address being dialled and returns the TLS
	// configuration for it, so that the caller can pin the identity
	// expected at that address. An empty ServerName is set to the
	// address's host (on a copy). An error, or a nil configuration, fails
	// that dial, and the calls waiting for it. nil means plain TCP.
	TLS func(addr string) (*tls.Config, error)
	// Hello, when set, is called at every dial for what the connection
	// announces in its preamble (see Hello), so the value may change over
	// time; nil announces the zero Hello. A node ID longer than
	// MaxNodeIDLen fails the dial.
	Hello func() Hello
	// DialTimeout bounds a dial, TLS handshake included (default 2s).
	DialTimeout time.Duration
	// MaxFrameBytes bounds an RPC frame, request or response, not counting
	// its 4-byte length prefix (default 8 MiB). It should match the servers'
	// Config.MaxFrameBytes.
	MaxFrameBytes int
	// Logger receives the Client's logs; nil discards them.
	Logger *slog.Logger
}

// withDefaults returns cfg with every zero or invalid field replaced by
// its default.
func (cfg Config) withDefaults() Config {
	if cfg.BindAddr == "" {
		cfg.BindAddr = DefaultBindAddr
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.FirstByteTimeout <= 0 {
		cfg.FirstByteTimeout = DefaultFirstByteTimeout
	}
	cfg.MaxFrameBytes = frameLimit(cfg.MaxFrameBytes)
	if cfg.MaxConcurrentPerConn <= 0 {
		cfg.MaxConcurrentPerConn = DefaultMaxConcurrentPerConn
	}
	cfg.Logger = loggerOrDiscard(cfg.Logger)
	return cfg
}

// withDefaults returns cfg with every zero or invalid field replaced by
// its default.
func (cfg ClientConfig) withDefaults() ClientConfig {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	cfg.MaxFrameBytes = frameLimit(cfg.MaxFrameBytes)
	cfg.Logger = loggerOrDiscard(cfg.Logger)
	return cfg
}

func frameLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultMaxFrameBytes
	case n < frameHeaderLen:
		return frameHeaderLen
	case n > maxFrameLimit:
		return maxFrameLimit
	}
	return n
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// group runs goroutines and waits for them. Every goroutine this package
// starts goes through group.Go. Its owner must make sure no Go call can
// happen once Wait has started while the counter may be zero (owners start
// goroutines either from a goroutine of the same group or under the lock
// that also records that they are closed).
type group struct {
	wg sync.WaitGroup
}

// Go runs f in a new goroutine registered with the group.
func (g *group) Go(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// Wait waits for every goroutine started with Go.
func (g *group) Wait() { g.wg.Wait() }

// hello calls f, or returns the zero Hello when f is nil.
func hello(f func() Hello) Hello {
	if f == nil {
		return Hello{}
	}
	return f()
}
