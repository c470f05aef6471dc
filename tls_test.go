package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testpki"
	"github.com/embedkv/store/transport"
)

// tlsFor writes certificate files for the node a Config names, issued by
// ca, and points the Config at them.
func tlsFor(t testing.TB, ca *testpki.CA, opts testpki.IssueOptions) func(*Config) {
	return func(c *Config) {
		dir := filepath.Join(filepath.Dir(c.Dir), "certs-"+c.NodeID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := ca.WriteFiles(dir, c.NodeID, opts)
		if err != nil {
			t.Fatal(err)
		}
		c.TLS = &TLSConfig{CertFile: f.CertFile, KeyFile: f.KeyFile, CAFile: f.CAFile}
	}
}

func TestMutualTLSCluster(t *testing.T) {
	ca, err := testpki.NewCA("embedkv test CA")
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, tlsFor(t, ca, testpki.IssueOptions{}))
	f := c.nodes[c.follower()]
	mustPut(t, f, "secret", "1") // forwarded to the leader over TLS
	if got := value(mustGet(t, c.nodes[c.waitLeader()], "secret")); got != "1" {
		t.Fatalf("Get: got %q, want %q", got, "1")
	}
	i := c.join(tlsFor(t, ca, testpki.IssueOptions{}))
	waitMembers(t, f, "n1:voter n2:voter n3:voter n4:voter")
	if got := value(mustGet(t, c.nodes[i], "secret")); got != "1" {
		t.Fatalf("Get on the TLS joiner: got %q, want %q", got, "1")
	}
	members := memberList(t, f)

	other, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	expired := testpki.IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	target := c.nodes[0].mux.Addr()

	// Peers that must be refused, each dialling node RPC as a would-be
	// joiner would (raft connections go through the same handshake and
	// admission, see package transport's tests).
	tests := []struct {
		name  string
		tls   func(t *testing.T) func(string) (*tls.Config, error)
		hello transport.Hello
	}{
		{"plain TCP", func(*testing.T) func(string) (*tls.Config, error) { return nil }, transport.Hello{NodeID: "n9"}},
		{"certificate from another CA", func(t *testing.T) func(string) (*tls.Config, error) {
			return clientTLS(t, other, "n9", testpki.IssueOptions{})
		}, transport.Hello{NodeID: "n9"}},
		{"expired certificate", func(t *testing.T) func(string) (*tls.Config, error) {
			return clientTLS(t, ca, "n9", expired)
		}, transport.Hello{NodeID: "n9"}},
		{"valid certificate, claims another node", func(t *testing.T) func(string) (*tls.Config, error) {
			return clientTLS(t, ca, "n9", testpki.IssueOptions{})
		}, transport.Hello{NodeID: "n1", ClusterID: c.nodes[0].cluster()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := transport.NewClient(transport.ClientConfig{TLS: tt.tls(t), Hello: func() transport.Hello { return tt.hello }})
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if resp, err := cl.Call(ctx, target, methodHello, nil); err == nil {
				t.Fatalf("refused peer got an answer: %x", resp)
			}
			if got := memberList(t, f); got != members {
				t.Fatalf("members changed: got %q, want %q", got, members)
			}
		})
	}
	t.Run("joiner with a foreign certificate", func(t *testing.T) {
		cfg := Config{NodeID: "n9", Dir: filepath.Join(t.TempDir(), "n9"), Join: []string{target}, JoinTimeout: 2 * time.Second, Logger: testLogger(t)}
		tlsFor(t, other, testpki.IssueOptions{})(&cfg)
		s, err := Open(cfg)
		if err == nil {
			s.Close()
			t.Fatal("a node with another CA's certificate joined")
		}
		if got := memberList(t, f); got != members {
			t.Fatalf("members changed: got %q, want %q", got, members)
		}
	})
	t.Run("plain joiner", func(t *testing.T) {
		cfg := Config{NodeID: "n9", Dir: filepath.Join(t.TempDir(), "n9"), Join: []string{target}, JoinTimeout: 2 * time.Second, Logger: testLogger(t)}
		s, err := Open(cfg)
		if err == nil {
			s.Close()
			t.Fatal("a plain-TCP node joined a TLS cluster")
		}
	})
}

// clientTLS makes a client TLS factory presenting a certificate for id
// issued by ca, trusting ca.
func clientTLS(t *testing.T, ca *testpki.CA, id string, opts testpki.IssueOptions) func(string) (*tls.Config, error) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(id, opts)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return func(string) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
	}
}

func TestTLSConfigErrors(t *testing.T) {
	ca, err := testpki.NewCA("embedkv test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, err := ca.WriteFiles(dir, "n1", testpki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "old"), 0o700); err != nil {
		t.Fatal(err)
	}
	expired, err := ca.WriteFiles(filepath.Join(dir, "old"), "n1", testpki.IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"missing CA file", Config{NodeID: "n1", TLS: &TLSConfig{CertFile: good.CertFile, KeyFile: good.KeyFile}}},
		{"unreadable files", Config{NodeID: "n1", TLS: &TLSConfig{CertFile: "/nonexistent", KeyFile: good.KeyFile, CAFile: good.CAFile}}},
		{"certificate names another node", Config{NodeID: "n2", TLS: &TLSConfig{CertFile: good.CertFile, KeyFile: good.KeyFile, CAFile: good.CAFile}}},
		{"expired certificate", Config{NodeID: "n1", TLS: &TLSConfig{CertFile: expired.CertFile, KeyFile: expired.KeyFile, CAFile: expired.CAFile}}},
		{"plain TCP on a public address", Config{NodeID: "n1", BindAddr: "0.0.0.0:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Dir = filepath.Join(t.TempDir(), "d")
			tt.cfg.Logger = testLogger(t)
			s, err := Open(tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want ErrConfig", err)
			}
			if _, err := os.Stat(filepath.Join(tt.cfg.Dir, "raft.db")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused Open created raft.db (stat: %v)", err)
			}
		})
	}
	t.Run("explicit plaintext on a public address", func(t *testing.T) {
		s, err := Open(Config{Dir: t.TempDir(), BindAddr: "0.0.0.0:0", InsecurePlaintextPeers: true, AdvertiseAddr: "127.0.0.1:1", Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
}

func TestTLSCertificateReload(t *testing.T) {
	ca, err := testpki.NewCA("embedkv test CA")
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, tlsFor(t, ca, testpki.IssueOptions{}))
	target := c.nodes[0]
	certFile := c.cfgs[0].TLS.CertFile
	serialOf := func(pemFile string) string {
		b, err := os.ReadFile(pemFile)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(b, mustRead(t, c.cfgs[0].TLS.KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	old := serialOf(certFile)

	// Replace n1's certificate and key on disk, as a rotation job would.
	if _, err := ca.WriteFiles(filepath.Dir(certFile), "n1", testpki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	for _, f := range []string{certFile, c.cfgs[0].TLS.KeyFile, c.cfgs[0].TLS.CAFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	rotated := serialOf(certFile)
	if rotated == old {
		t.Fatal("the new certificate has the old serial")
	}

	// New connections to n1 see the new certificate, without a restart.
	seen := func() string {
		var serial string
		peer := clientTLS(t, ca, "n2", testpki.IssueOptions{})
		cl := transport.NewClient(transport.ClientConfig{
			TLS: func(addr string) (*tls.Config, error) {
				cfg, _ := peer(addr)
				cfg.VerifyConnection = func(cs tls.ConnectionState) error {
					serial = cs.PeerCertificates[0].SerialNumber.String()
					return nil
				}
				return cfg, nil
			},
			Hello: func() transport.Hello { return transport.Hello{NodeID: "n2", ClusterID: target.cluster()} },
		})
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := cl.Call(ctx, target.mux.Addr(), methodHello, nil); err != nil {
			t.Fatalf("hello over TLS: %v", err)
		}
		return serial
	}
	var got string
	if !poll(t, 10*time.Second, func() bool { got = seen(); return got == rotated }) {
		t.Fatalf("n1 presents serial %s, want the rotated %s (old %s)", got, rotated, old)
	}
	// The cluster still works: peers keep connecting to n1.
	mustPut(t, c.nodes[1], "after-rotation", "1")
	if got := value(mustGet(t, target, "after-rotation")); got != "1" {
		t.Fatalf("Get on n1 after rotation: got %q, want %q", got, "1")
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
