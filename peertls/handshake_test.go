package peertls_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testpki"
	"github.com/embedkv/store/peertls"
)

// TestHandshake runs real handshakes over loopback between configurations
// from Loaders (and hand-made ones for certificates a Loader refuses).
func TestHandshake(t *testing.T) {
	caA := newCA(t, "ca-a")
	caB := newCA(t, "ca-b")
	now := time.Now()

	srv := newLoader(t, writeNode(t, caA, "srv", testpki.IssueOptions{}), peertls.Options{})
	cli := newLoader(t, writeNode(t, caA, "cli", testpki.IssueOptions{}), peertls.Options{})
	// Certificates from the same CA with a node's ID as common name but
	// no embedkv://node URI SAN, as for another purpose: not nodes, so
	// they may not pass for "cli" and "srv" (New refuses them, hence the
	// raw configurations).
	cnClientCert, cnClientKey := issue(t, caA, "cli", testpki.IssueOptions{NoURI: true})
	cnServerCert, cnServerKey := issue(t, caA, "srv", testpki.IssueOptions{NoURI: true})

	// A client from CA B that trusts both CAs, so that only the server
	// (trusting CA A alone) refuses.
	intruderFiles := writeNode(t, caB, "intruder", testpki.IssueOptions{})
	writeBundle(t, intruderFiles, caA, caB)
	intruder := newLoader(t, intruderFiles, peertls.Options{})

	// A server from CA B that trusts both CAs, so that only the client
	// refuses.
	foreignFiles := writeNode(t, caB, "srv", testpki.IssueOptions{})
	writeBundle(t, foreignFiles, caA, caB)
	foreign := newLoader(t, foreignFiles, peertls.Options{})

	expiredCert, expiredKey := issue(t, caA, "old", testpki.IssueOptions{
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour),
	})
	noIDCert, noIDKey := issue(t, caA, "", testpki.IssueOptions{NoURI: true})
	serverOnlyCert, serverOnlyKey := issue(t, caA, "srv-only", testpki.IssueOptions{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})

	tls11 := cli.ClientConfig("srv")
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	tls12 := cli.ClientConfig("srv")
	tls12.MaxVersion = tls.VersionTLS12

	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		// For a handshake that succeeds: the identities each end sees.
		wantOK         bool
		wantServerSees string
		wantClientSees string
		// For a refused one: which end refuses, with what error.
		refuser string // "server" or "client"
		wantIs  error
		wantMsg string
	}{
		{
			name: "same CA, pinned identity", server: srv.ServerConfig(), client: cli.ClientConfig("srv"),
			wantOK: true, wantServerSees: "cli", wantClientSees: "srv",
		},
		{
			name: "empty expected ID accepts any node of the CA", server: srv.ServerConfig(), client: cli.ClientConfig(""),
			wantOK: true, wantServerSees: "cli", wantClientSees: "srv",
		},
		{
			name: "TLS 1.2", server: srv.ServerConfig(), client: tls12,
			wantOK: true, wantServerSees: "cli", wantClientSees: "srv",
		},
		{
			name: "client identity not taken from common name", server: srv.ServerConfig(),
			client:  rawClient(t, cnClientCert, cnClientKey),
			refuser: "server", wantIs: peertls.ErrIdentity, wantMsg: "not a node certificate",
		},
		{
			name: "server identity not taken from common name", server: rawServer(t, cnServerCert, cnServerKey),
			client:  cli.ClientConfig("srv"),
			refuser: "client", wantIs: peertls.ErrIdentity, wantMsg: "not a node certificate",
		},
		{
			name: "server with only a common name, any node expected", server: rawServer(t, cnServerCert, cnServerKey),
			client:  cli.ClientConfig(""),
			refuser: "client", wantIs: peertls.ErrIdentity, wantMsg: "not a node certificate",
		},
		{
			name: "server identity differs from expected", server: srv.ServerConfig(), client: cli.ClientConfig("other"),
			refuser: "client", wantIs: peertls.ErrIdentity,
			wantMsg: `peertls: server presented identity "srv", want "other"`,
		},
		{
			name: "server certificate from another CA", server: foreign.ServerConfig(), client: cli.ClientConfig("srv"),
			refuser: "client", wantIs: peertls.ErrUntrusted, wantMsg: "unknown authority",
		},
		{
			name: "client without certificate", server: srv.ServerConfig(), client: rawClient(t, nil, nil),
			refuser: "server", wantMsg: "didn't provide a certificate",
		},
		{
			name: "client certificate from another CA", server: srv.ServerConfig(), client: intruder.ClientConfig("srv"),
			refuser: "server", wantIs: peertls.ErrUntrusted, wantMsg: "unknown authority",
		},
		{
			name: "expired client certificate", server: srv.ServerConfig(), client: rawClient(t, expiredCert, expiredKey),
			refuser: "server", wantIs: peertls.ErrUntrusted, wantMsg: "expired",
		},
		{
			name: "client certificate without client authentication usage", server: srv.ServerConfig(),
			client:  rawClient(t, serverOnlyCert, serverOnlyKey),
			refuser: "server", wantIs: peertls.ErrUntrusted, wantMsg: "key usage",
		},
		{
			name: "client certificate without identity", server: srv.ServerConfig(), client: rawClient(t, noIDCert, noIDKey),
			refuser: "server", wantIs: peertls.ErrIdentity, wantMsg: "no embedkv://node/<id> URI SAN",
		},
		{
			name: "client offers only TLS 1.1", server: srv.ServerConfig(), client: tls11,
			refuser: "server", wantMsg: "unsupported versions",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := handshake(t, tt.server, tt.client)
			if tt.wantOK {
				checkPeers(t, r, tt.wantServerSees, tt.wantClientSees)
				if want := tt.client.MaxVersion; want != 0 && r.clientState.Version != want {
					t.Errorf("negotiated version %#x, want %#x", r.clientState.Version, want)
				}
				return
			}
			requireRefused(t, r)
			refusal := r.serverErr
			if tt.refuser == "client" {
				refusal = r.clientErr
			}
			checkErr(t, tt.refuser+" error", refusal, tt.wantIs, tt.wantMsg)
		})
	}
}

// TestHandshakeBothWays checks that a node's server and client
// configurations work together, as between two nodes that dial each other.
func TestHandshakeBothWays(t *testing.T) {
	ca := newCA(t, "ca")
	a := newLoader(t, writeNode(t, ca, "a", testpki.IssueOptions{}), peertls.Options{})
	b := newLoader(t, writeNode(t, ca, "b", testpki.IssueOptions{}), peertls.Options{})
	tests := []struct {
		name                   string
		server, client         *peertls.Loader
		wantServer, wantClient string
	}{
		{name: "a dials b", server: b, client: a, wantServer: "a", wantClient: "b"},
		{name: "b dials a", server: a, client: b, wantServer: "b", wantClient: "a"},
		{name: "a dials itself", server: a, client: a, wantServer: "a", wantClient: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := handshake(t, tt.server.ServerConfig(), tt.client.ClientConfig(tt.server.NodeID()))
			checkPeers(t, r, tt.wantServer, tt.wantClient)
			if got := r.clientState.Version; got < tls.VersionTLS12 {
				t.Errorf("negotiated version %#x, want at least TLS 1.2", got)
			}
		})
	}
}

// TestConfigSettings checks the fixed fields of the configurations.
func TestConfigSettings(t *testing.T) {
	ca := newCA(t, "ca")
	l := newLoader(t, writeNode(t, ca, "a", testpki.IssueOptions{}), peertls.Options{})
	tests := []struct {
		name           string
		cfg            *tls.Config
		wantClientAuth tls.ClientAuthType
		wantSkip       bool
	}{
		{name: "server", cfg: l.ServerConfig(), wantClientAuth: tls.RequireAnyClientCert},
		{name: "client", cfg: l.ClientConfig("b"), wantSkip: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.MinVersion; got != tls.VersionTLS12 {
				t.Errorf("MinVersion = %#x, want %#x", got, tls.VersionTLS12)
			}
			if got := tt.cfg.ClientAuth; got != tt.wantClientAuth {
				t.Errorf("ClientAuth = %v, want %v", got, tt.wantClientAuth)
			}
			if got := tt.cfg.InsecureSkipVerify; got != tt.wantSkip {
				t.Errorf("InsecureSkipVerify = %v, want %v", got, tt.wantSkip)
			}
			if tt.cfg.VerifyConnection == nil {
				t.Errorf("VerifyConnection is nil, want the chain verification")
			}
		})
	}
}
