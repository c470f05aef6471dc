package peertls_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testpki"
	"github.com/embedkv/store/peertls"
)

// ioTimeout bounds every network operation of a test handshake, so that a
// bug fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

// newCA returns a test CA named name.
func newCA(t *testing.T, name string) *testpki.CA {
	t.Helper()
	ca, err := testpki.NewCA(name)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", name, err)
	}
	return ca
}

// writeNode writes files for nodeID, issued by ca, in a new directory.
func writeNode(t *testing.T, ca *testpki.CA, nodeID string, opts testpki.IssueOptions) peertls.Files {
	t.Helper()
	return writeNodeIn(t, ca, t.TempDir(), nodeID, opts)
}

// writeNodeIn writes files for nodeID, issued by ca, in dir, replacing
// any written there before.
func writeNodeIn(t *testing.T, ca *testpki.CA, dir, nodeID string, opts testpki.IssueOptions) peertls.Files {
	t.Helper()
	f, err := ca.WriteFiles(dir, nodeID, opts)
	if err != nil {
		t.Fatalf("WriteFiles(%q): %v", nodeID, err)
	}
	return f
}

// replaceCert replaces the certificate and key files of f with a new pair
// for nodeID from ca, leaving the CA file alone.
func replaceCert(t *testing.T, f peertls.Files, ca *testpki.CA, nodeID string, opts testpki.IssueOptions) {
	t.Helper()
	certPEM, keyPEM := issue(t, ca, nodeID, opts)
	writeFile(t, f.CertFile, certPEM)
	writeFile(t, f.KeyFile, keyPEM)
}

// writeBundle makes f.CAFile hold the certificates of every CA in cas.
func writeBundle(t *testing.T, f peertls.Files, cas ...*testpki.CA) {
	t.Helper()
	var b []byte
	for _, ca := range cas {
		b = append(b, ca.CertPEM()...)
	}
	writeFile(t, f.CAFile, b)
}

// writeFile replaces the file at path with data.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// issue returns a certificate and key for nodeID from ca.
func issue(t *testing.T, ca *testpki.CA, nodeID string, opts testpki.IssueOptions) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(nodeID, opts)
	if err != nil {
		t.Fatalf("Issue(%q): %v", nodeID, err)
	}
	return certPEM, keyPEM
}

// touch sets the modification time of the three files to at, so that a
// Loader sees them as changed even on file systems with coarse times.
func touch(t *testing.T, f peertls.Files, at time.Time) {
	t.Helper()
	for _, p := range []string{f.CertFile, f.KeyFile, f.CAFile} {
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatalf("chtimes %s: %v", p, err)
		}
	}
}

// newLoader returns a Loader for f, failing the test on error.
func newLoader(t *testing.T, f peertls.Files, opts peertls.Options) *peertls.Loader {
	t.Helper()
	l, err := peertls.New(f, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", filepath.Base(f.CertFile), err)
	}
	return l
}

// servedNode returns a Loader for f (files of node "a") with opts, its
// server configuration, and the client configuration of a peer from ca
// that dials "a".
func servedNode(t *testing.T, ca *testpki.CA, f peertls.Files, opts peertls.Options) (node *peertls.Loader, serverCfg, clientCfg *tls.Config) {
	t.Helper()
	node = newLoader(t, f, opts)
	peer := newLoader(t, writeNode(t, ca, "peer", testpki.IssueOptions{}), peertls.Options{})
	return node, node.ServerConfig(), peer.ClientConfig("a")
}

// rawClient returns a client configuration presenting certPEM and keyPEM
// (none if nil) and verifying nothing, for certificates a Loader refuses.
func rawClient(t *testing.T, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatalf("X509KeyPair: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// rawServer returns a server configuration presenting certPEM and keyPEM,
// requiring a client certificate and verifying nothing, for certificates a
// Loader refuses.
func rawServer(t *testing.T, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequireAnyClientCert,
		Certificates: []tls.Certificate{pair},
	}
}

// result is the outcome of one handshake, seen from both ends.
type result struct {
	serverErr, clientErr     error
	serverState, clientState tls.ConnectionState
}

// ok reports whether both ends completed the handshake and exchanged a
// byte.
func (r result) ok() bool { return r.serverErr == nil && r.clientErr == nil }

// handshake connects a client using clientCfg to a server using serverCfg
// over loopback; see tryHandshake. It fails the test if the connection
// cannot be set up, so it may only be called from the test's goroutine.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) result {
	t.Helper()
	r, err := tryHandshake(serverCfg, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// handshakeSerial runs a handshake as handshake does, fails the test now
// unless it succeeds (prefix starts the message), and returns the serial
// number of the certificate the server presented.
func handshakeSerial(t *testing.T, serverCfg, clientCfg *tls.Config, prefix string) string {
	t.Helper()
	r := handshake(t, serverCfg, clientCfg)
	requireOK(t, r, prefix)
	return serial(r.clientState)
}

// requireOK fails the test now unless both ends of r succeeded; prefix
// starts the message.
func requireOK(t *testing.T, r result, prefix string) {
	t.Helper()
	if !r.ok() {
		t.Fatalf("%sgot server error %v, client error %v; want success", prefix, r.serverErr, r.clientErr)
	}
}

// requireRefused fails the test now unless both ends of r failed.
func requireRefused(t *testing.T, r result) {
	t.Helper()
	if r.serverErr == nil || r.clientErr == nil {
		t.Fatalf("got server error %v, client error %v; want both to fail", r.serverErr, r.clientErr)
	}
}

// checkPeers fails the test now unless both ends of r succeeded, and
// fails it unless the server saw the identity wantServerSees and the
// client wantClientSees.
func checkPeers(t *testing.T, r result, wantServerSees, wantClientSees string) {
	t.Helper()
	requireOK(t, r, "")
	if got := peerID(r.serverState); got != wantServerSees {
		t.Errorf("server sees %q, want %q", got, wantServerSees)
	}
	if got := peerID(r.clientState); got != wantClientSees {
		t.Errorf("client sees %q, want %q", got, wantClientSees)
	}
}

// tryHandshake connects a client using clientCfg to a server using
// serverCfg over loopback. After the handshake the server sends one byte
// and the client reads it, so that a server refusing the client's
// certificate after the client's side of a TLS 1.3 handshake is complete
// shows up as a client error too. It returns an error only if the
// listener or the TCP connection cannot be set up. Every listener and
// connection is closed on return.
func tryHandshake(serverCfg, clientCfg *tls.Config) (result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	type serverOut struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan serverOut, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- serverOut{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		tc := tls.Server(c, serverCfg)
		if err := tc.Handshake(); err != nil {
			done <- serverOut{err: err}
			return
		}
		_, err = tc.Write([]byte{'k'})
		done <- serverOut{err: err, state: tc.ConnectionState()}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		_ = ln.Close()
		<-done
		return result{}, fmt.Errorf("dial: %w", err)
	}
	var r result
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	tc := tls.Client(c, clientCfg)
	r.clientErr = tc.Handshake()
	if r.clientErr == nil {
		r.clientState = tc.ConnectionState()
		var b [1]byte
		if _, err := io.ReadFull(tc, b[:]); err != nil {
			r.clientErr = err
		}
	}
	_ = c.Close()
	s := <-done
	r.serverErr, r.serverState = s.err, s.state
	return r, nil
}

// peerID returns the PeerIdentity of state, or "error: ..." if it has none.
func peerID(state tls.ConnectionState) string {
	id, err := peertls.PeerIdentity(state)
	if err != nil {
		return "error: " + err.Error()
	}
	return id
}

// serial returns the serial number of the peer's leaf certificate in
// state, or "" if there is none.
func serial(state tls.ConnectionState) string {
	if len(state.PeerCertificates) == 0 {
		return ""
	}
	return state.PeerCertificates[0].SerialNumber.String()
}

// checkErr fails the test unless err wraps want (if want is not nil) and
// its message contains msg.
func checkErr(t *testing.T, what string, err, want error, msg string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: got nil error, want one (wrapping %v, containing %q)", what, want, msg)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: got error %q, want one wrapping %q", what, err, want)
	case !strings.Contains(err.Error(), msg):
		t.Errorf("%s: got error %q, want one containing %q", what, err, msg)
	}
}

// checkIdentity fails the test now unless got and err, as returned by the
// identity lookup described by what, are an error wrapping ErrIdentity
// (if wantErr) or want and no error (if not).
func checkIdentity(t *testing.T, what, got string, err error, want string, wantErr bool) {
	t.Helper()
	if wantErr {
		if !errors.Is(err, peertls.ErrIdentity) {
			t.Fatalf("%s = %q, %v; want an error wrapping ErrIdentity", what, got, err)
		}
		return
	}
	if err != nil || got != want {
		t.Fatalf("%s = %q, %v; want %q, nil", what, got, err, want)
	}
}
