package testpki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testpki"
	"github.com/embedkv/store/peertls"
)

// parseCert decodes the single certificate in certPEM.
func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("got PEM %q, want exactly one CERTIFICATE block", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

// near reports whether got is within a minute of want.
func near(got, want time.Time) bool {
	d := got.Sub(want)
	return d > -time.Minute && d < time.Minute
}

// TestNewCA checks the CA certificate.
func TestNewCA(t *testing.T) {
	ca, err := testpki.NewCA("test ca")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	now := time.Now()
	cert := parseCert(t, ca.CertPEM())
	tests := []struct {
		name string
		ok   bool
		desc string
	}{
		{name: "common name", ok: cert.Subject.CommonName == "test ca", desc: "common name " + cert.Subject.CommonName},
		{name: "is a CA", ok: cert.IsCA && cert.BasicConstraintsValid, desc: "not a CA"},
		{name: "signs certificates", ok: cert.KeyUsage&x509.KeyUsageCertSign != 0, desc: "no cert sign usage"},
		{name: "self-signed", ok: cert.CheckSignatureFrom(cert) == nil, desc: "not self-signed"},
		{name: "P-256 key", ok: isP256(cert), desc: "not an ECDSA P-256 key"},
		{name: "valid from an hour ago", ok: near(cert.NotBefore, now.Add(-time.Hour)), desc: "NotBefore " + cert.NotBefore.String()},
		{name: "valid for a day", ok: near(cert.NotAfter, now.Add(24*time.Hour)), desc: "NotAfter " + cert.NotAfter.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Errorf("got %s", tt.desc)
			}
		})
	}
	t.Run("CertPEM returns a copy", func(t *testing.T) {
		b := ca.CertPEM()
		b[0] = 'X'
		if got := ca.CertPEM(); got[0] == 'X' {
			t.Errorf("got %q after changing an earlier result, want the original PEM", got[:10])
		}
	})
}

// isP256 reports whether cert has an ECDSA P-256 public key.
func isP256(cert *x509.Certificate) bool {
	k, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && k.Curve == elliptic.P256()
}

// TestIssue checks the certificates Issue makes, by default and with each
// option.
func TestIssue(t *testing.T) {
	ca, err := testpki.NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parseCert(t, ca.CertPEM()))
	now := time.Now()
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

	tests := []struct {
		name          string
		nodeID        string
		opts          testpki.IssueOptions
		wantURIs      []string
		wantCN        string
		wantEKU       []x509.ExtKeyUsage
		wantNotBefore time.Time
		wantNotAfter  time.Time
		wantIdentity  string // "" for none
	}{
		{
			name: "default", nodeID: "n1",
			wantURIs: []string{"embedkv://node/n1"}, wantCN: "n1", wantEKU: both,
			wantNotBefore: now.Add(-time.Hour), wantNotAfter: now.Add(24 * time.Hour), wantIdentity: "n1",
		},
		{
			name: "unicode node ID", nodeID: "nœud 1",
			wantURIs: []string{"embedkv://node/n%C5%93ud%201"}, wantCN: "nœud 1", wantEKU: both,
			wantNotBefore: now.Add(-time.Hour), wantNotAfter: now.Add(24 * time.Hour), wantIdentity: "nœud 1",
		},
		{
			name: "no URI", nodeID: "n1", opts: testpki.IssueOptions{NoURI: true},
			wantCN: "n1", wantEKU: both,
			wantNotBefore: now.Add(-time.Hour), wantNotAfter: now.Add(24 * time.Hour),
		},
		{
			name: "common name", nodeID: "n1", opts: testpki.IssueOptions{CommonName: "host.example"},
			wantURIs: []string{"embedkv://node/n1"}, wantCN: "host.example", wantEKU: both,
			wantNotBefore: now.Add(-time.Hour), wantNotAfter: now.Add(24 * time.Hour), wantIdentity: "n1",
		},
		{
			name: "no identity", nodeID: "", opts: testpki.IssueOptions{NoURI: true},
			wantEKU:       both,
			wantNotBefore: now.Add(-time.Hour), wantNotAfter: now.Add(24 * time.Hour),
		},
		{
			name: "validity", nodeID: "n1",
			opts:     testpki.IssueOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)},
			wantURIs: []string{"embedkv://node/n1"}, wantCN: "n1", wantEKU: both,
			wantNotBefore: now.Add(-48 * time.Hour), wantNotAfter: now.Add(-24 * time.Hour), wantIdentity: "n1",
		},
		{
			name: "server authentication only", nodeID: "n1",
			opts:     testpki.IssueOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
			wantURIs: []string{"embedkv://node/n1"}, wantCN: "n1", wantEKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			wantNotBefore: now.Add(-time.Hour), wantNotAfter: now.Add(24 * time.Hour), wantIdentity: "n1",
		},
		{
			name: "no extended key usage", nodeID: "n1",
			opts:     testpki.IssueOptions{ExtKeyUsage: []x509.ExtKeyUsage{}},
			wantURIs: []string{"embedkv://node/n1"}, wantCN: "n1",
			wantNotBefore: now.Add(-time.Hour), wantNotAfter: now.Add(24 * time.Hour), wantIdentity: "n1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tt.nodeID, tt.opts)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			cert := parseCert(t, certPEM)
			var uris []string
			for _, u := range cert.URIs {
				uris = append(uris, u.String())
			}
			if !slices.Equal(uris, tt.wantURIs) {
				t.Errorf("URIs = %q, want %q", uris, tt.wantURIs)
			}
			if got := cert.Subject.CommonName; got != tt.wantCN {
				t.Errorf("common name = %q, want %q", got, tt.wantCN)
			}
			if !slices.Equal(cert.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", cert.ExtKeyUsage, tt.wantEKU)
			}
			if !near(cert.NotBefore, tt.wantNotBefore) || !near(cert.NotAfter, tt.wantNotAfter) {
				t.Errorf("validity %v .. %v, want %v .. %v", cert.NotBefore, cert.NotAfter, tt.wantNotBefore, tt.wantNotAfter)
			}
			wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
			if !slices.EqualFunc(cert.IPAddresses, wantIPs, net.IP.Equal) {
				t.Errorf("IP SANs = %v, want %v", cert.IPAddresses, wantIPs)
			}
			if !slices.Equal(cert.DNSNames, []string{"localhost"}) {
				t.Errorf("DNS SANs = %q, want [localhost]", cert.DNSNames)
			}
			if err := cert.CheckSignatureFrom(parseCert(t, ca.CertPEM())); err != nil {
				t.Errorf("CheckSignatureFrom(CA) = %v, want nil", err)
			}
			if !isP256(cert) {
				t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
			}
			if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
				t.Errorf("key PEM is not a PKCS #8 PRIVATE KEY block")
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Errorf("X509KeyPair = %v, want the key to match the certificate", err)
			}
			id, err := peertls.Identity(cert)
			switch {
			case tt.wantIdentity == "" && err == nil:
				t.Errorf("Identity = %q, want an error", id)
			case tt.wantIdentity != "" && (err != nil || id != tt.wantIdentity):
				t.Errorf("Identity = %q, %v; want %q, nil", id, err, tt.wantIdentity)
			}
		})
	}
}

// TestWriteFiles checks the files WriteFiles writes and the node IDs it
// refuses.
func TestWriteFiles(t *testing.T) {
	ca, err := testpki.NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		nodeID  string
		wantErr error
	}{
		{name: "plain", nodeID: "n1"},
		{name: "space and unicode", nodeID: "nœud 1"},
		{name: "empty", nodeID: "", wantErr: testpki.ErrFileName},
		{name: "dot", nodeID: ".", wantErr: testpki.ErrFileName},
		{name: "dot dot", nodeID: "..", wantErr: testpki.ErrFileName},
		{name: "slash", nodeID: "a/b", wantErr: testpki.ErrFileName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := ca.WriteFiles(dir, tt.nodeID, testpki.IssueOptions{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("WriteFiles = %+v, %v; want an error wrapping %v", f, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("WriteFiles: %v", err)
			}
			want := peertls.Files{
				CertFile: filepath.Join(dir, tt.nodeID+".crt"),
				KeyFile:  filepath.Join(dir, tt.nodeID+".key"),
				CAFile:   filepath.Join(dir, "ca.crt"),
			}
			if f != want {
				t.Errorf("Files = %+v, want %+v", f, want)
			}
			if runtime.GOOS != "windows" {
				fi, err := os.Stat(f.KeyFile)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("key file mode %v, want 0600", got)
				}
			}
			caPEM, err := os.ReadFile(f.CAFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(caPEM, ca.CertPEM()) {
				t.Errorf("CA file holds %q, want the CA certificate", caPEM)
			}
			l, err := peertls.New(f, peertls.Options{})
			if err != nil {
				t.Fatalf("peertls.New: %v", err)
			}
			if got := l.NodeID(); got != tt.nodeID {
				t.Errorf("NodeID() = %q, want %q", got, tt.nodeID)
			}

			// Writing again replaces the files and leaves no temporary
			// file behind.
			before, err := os.ReadFile(f.CertFile)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ca.WriteFiles(dir, tt.nodeID, testpki.IssueOptions{}); err != nil {
				t.Fatalf("second WriteFiles: %v", err)
			}
			after, err := os.ReadFile(f.CertFile)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(before, after) {
				t.Errorf("second WriteFiles left the certificate unchanged, want a new one")
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 3 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("directory holds %q, want the three files only", names)
			}
		})
	}
}
