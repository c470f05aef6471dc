package peertls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is the ReloadInterval used when Options leaves it
// zero.
const DefaultReloadInterval = time.Second

// Options tunes a Loader. The zero value is ready to use.
type Options struct {
	// ReloadInterval is how often, at most, the files are stat'ed for
	// changes during handshakes. Zero means DefaultReloadInterval; a
	// negative value checks on every handshake. It is measured on the
	// process's monotonic clock, not with Now.
	ReloadInterval time.Duration
	// Now is the time certificates are verified at, at load and during
	// handshakes. Nil means time.Now.
	Now func() time.Time
	// Logger receives reload failures at Warn level, once per distinct
	// failure, and successful reloads at Info level. Nil discards them.
	Logger *slog.Logger
}

// A Loader holds a node's TLS material (its certificate and key and the CA
// bundle peers are verified against), loaded from Files and reloaded when
// they change. It hands out tls.Config values for both ends of a mutual
// TLS connection between nodes. It is safe for concurrent use and starts
// no goroutine: reload checks happen inside handshakes, so there is
// nothing to close.
type Loader struct {
	files    Files
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger
	start    time.Time // monotonic base of lastCheck

	// cur is the material handshakes use. It is replaced, never changed.
	cur atomic.Pointer[material]
	// lastCheck is when, in nanoseconds since start, the files were last
	// stat'ed by a handshake.
	lastCheck atomic.Int64

	// mu serialises reloads and guards the fields below. Lock order: leaf.
	mu sync.Mutex
	// lastErr is the failure of the latest reload attempt, nil after a
	// success or once the files are back to the loaded ones.
	lastErr error
	// warned identifies the failure last logged, so that a failure that
	// persists is logged once.
	warned failureKey
}

// failureKey tells failures apart for logging: the same kind of failure
// on the same files is logged once even if its message varies (x509 puts
// the current time in expiry errors).
type failureKey struct {
	stamp stamp
	kind  error
}

// New loads f and checks it (see the package documentation): every file
// is readable, the certificate and key parse and match, the CA file holds
// at least one certificate, the certificate carries a node identity and
// verifies against the CA file at opts.Now for both server and client
// authentication. Errors wrap ErrFiles, ErrIdentity or ErrUntrusted and
// name the files involved.
func New(f Files, opts Options) (*Loader, error) {
	l := &Loader{
		files:    f,
		interval: opts.ReloadInterval,
		now:      opts.Now,
		log:      opts.Logger,
		start:    time.Now(),
	}
	if l.interval == 0 {
		l.interval = DefaultReloadInterval
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := loadMaterial(f, statFiles(f), l.now())
	if err != nil {
		return nil, err
	}
	l.cur.Store(m)
	return l, nil
}

// NodeID returns the identity of the node's current certificate. Reloads
// never change it: a replacement certificate naming another node is
// refused.
func (l *Loader) NodeID() string { return l.current().id }

// Reload re-reads and re-checks the files now, whether or not they
// changed, and makes them current if they pass. On failure the current
// material is kept and the error (wrapping ErrFiles, ErrIdentity or
// ErrUntrusted) is returned and recorded for LastReloadError.
func (l *Loader) Reload() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reloadLocked(true)
}

// LastReloadError returns why the latest reload attempt failed, or nil if
// it succeeded, if the files have not changed since the material in use was
// loaded, or if no reload was attempted.
func (l *Loader) LastReloadError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// current returns the material in use.
func (l *Loader) current() *material { return l.cur.Load() }

// maybeReload is called during handshakes. If the reload interval has
// elapsed since the last check, one caller (the others go on with the
// current material) stats the files and reloads them if they changed.
func (l *Loader) maybeReload() {
	if l.interval >= 0 {
		since := int64(time.Since(l.start))
		last := l.lastCheck.Load()
		if since-last < int64(l.interval) || !l.lastCheck.CompareAndSwap(last, since) {
			return
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// The error is recorded and logged; the handshake goes on with the
	// material in use.
	_ = l.reloadLocked(false)
}

// reloadLocked loads the files, unless force is false and their stamp is
// that of the current material, and makes them current if they pass every
// check and name the same node. l.mu must be held.
func (l *Loader) reloadLocked(force bool) error {
	old := l.current()
	st := statFiles(l.files)
	if !force && st == old.stamp {
		// The files are those in use: an earlier failure is over.
		l.lastErr = nil
		return nil
	}
	m, err := loadMaterial(l.files, st, l.now())
	if err == nil && m.id != old.id {
		err = fmt.Errorf("%w: certificate file %q names node %q, but this node is %q",
			ErrIdentity, l.files.CertFile, m.id, old.id)
	}
	if err != nil {
		l.lastErr = err
		key := failureKey{stamp: st, kind: errorKind(err)}
		if key != l.warned {
			l.warned = key
			l.log.Warn("peertls: reload failed; keeping the certificates in use",
				"node", old.id, "err", err)
		}
		return err
	}
	l.cur.Store(m)
	l.lastErr = nil
	l.warned = failureKey{}
	l.log.Info("peertls: reloaded certificates", "node", m.id,
		"cert", l.files.CertFile, "ca", l.files.CAFile,
		"not_after", m.cert.Leaf.NotAfter)
	return nil
}

// errorKind returns the sentinel err wraps, or err itself.
func errorKind(err error) error {
	for _, s := range []error{ErrFiles, ErrIdentity, ErrUntrusted} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// ServerConfig returns a configuration for accepting connections from
// peers. It requires TLS 1.2 or later and a client certificate, which is
// verified against the current CA bundle at Options.Now for client
// authentication and must carry a node identity; handshakes present the
// current certificate. The configuration follows reloads: there is no need
// to ask for a new one after the files change.
//
// Because the chain is verified by VerifyConnection rather than by
// crypto/tls (whose ClientCAs pool could not be reloaded), the
// ConnectionState of an accepted connection has PeerCertificates but no
// VerifiedChains. Use PeerIdentity to learn who connected.
//
// Each call returns a new configuration, which the caller may adjust
// (NextProtos, for one) before use.
func (l *Loader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Any certificate is requested and VerifyConnection does the
		// verification, against the pool current at the time.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			l.maybeReload()
			return l.current().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			l.maybeReload()
			_, err := l.verifyPeer(cs, x509.ExtKeyUsageClientAuth, "client")
			return err
		},
	}
}

// ClientConfig returns a configuration for dialling a peer. It requires TLS
// 1.2 or later, presents the current certificate, and verifies the
// server's chain against the current CA bundle at Options.Now for server
// authentication. If expectedID is not empty, the server's identity must be
// expectedID; otherwise any node with a certificate from the CA bundle is
// accepted. Host names and IP addresses in the certificate are not checked:
// the node identity takes their place. The configuration follows reloads.
//
// A handshake refused here fails with an error wrapping ErrUntrusted or
// ErrIdentity (crypto/tls returns VerifyConnection's error as it is, with
// at most an alert attached, so errors.Is works on the error of
// tls.Conn.Handshake).
func (l *Loader) ClientConfig(expectedID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// InsecureSkipVerify only turns off crypto/tls's own chain and
		// host name verification, which would need a fixed RootCAs pool
		// and a host name. VerifyConnection below does the full chain
		// verification instead, against the current (reloadable) CA pool
		// with KeyUsages ExtKeyUsageServerAuth, then checks the node
		// identity. It runs on every handshake, resumed ones included, and
		// a failure aborts the handshake.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			l.maybeReload()
			return l.current().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			l.maybeReload()
			id, err := l.verifyPeer(cs, x509.ExtKeyUsageServerAuth, "server")
			if err != nil {
				return err
			}
			if expectedID != "" && id != expectedID {
				return &mismatchError{got: id, want: expectedID}
			}
			return nil
		},
	}
}

// verifyPeer verifies the chain the peer presented in cs against the
// current CA pool, at Options.Now, for usage, and returns the peer's
// identity. role ("client" or "server") names the peer in errors.
func (l *Loader) verifyPeer(cs tls.ConnectionState, usage x509.ExtKeyUsage, role string) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: %s presented no certificate", ErrUntrusted, role)
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         l.current().pool,
		Intermediates: inter,
		CurrentTime:   l.now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return "", fmt.Errorf("%w: %s certificate %q for %s: %w",
			ErrUntrusted, role, leaf.Subject.String(), usageName(usage), err)
	}
	id, err := Identity(leaf)
	if err != nil {
		return "", fmt.Errorf("%s certificate: %w", role, err)
	}
	return id, nil
}
