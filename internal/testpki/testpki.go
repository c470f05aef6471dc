// Package testpki makes certificates for tests at run time, so that no
// private key is ever committed to the repository.
//
// A CA is a self-signed ECDSA P-256 certificate authority held in memory.
// Issue signs node certificates the way package peertls expects them (the
// node ID in an embedkv://node/<id> URI SAN, which alone makes them node
// certificates, and in the common name; both server and client
// authentication), and IssueOptions bends them into the broken shapes
// tests need: expired, not yet valid, without a URI SAN (hence not node
// certificates, whatever their common name), with other extended key
// usages. WriteFiles puts a certificate, its key
// and the CA certificate in a directory as peertls.Files.
//
// Keys are generated with crypto/rand; a P-256 key takes well under a
// millisecond, so tests may make as many as they like.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/embedkv/store/peertls"
)

// ErrFileName reports a node ID that WriteFiles cannot use as a file name.
var ErrFileName = errors.New("testpki: node ID is not a plain file name")

// Default validity of CAs and issued certificates, relative to the time of
// issue.
const (
	// DefaultBackdate is how long before now certificates become valid.
	DefaultBackdate = time.Hour
	// DefaultLifetime is how long after now certificates stay valid.
	DefaultLifetime = 24 * time.Hour
)

// CA is an in-memory certificate authority: a self-signed certificate and
// its private key. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// NewCA returns a CA with an ECDSA P-256 key and a self-signed certificate
// whose common name is name, valid from an hour ago until 24 hours from
// now.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testpki: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"embedkv test PKI"}},
		NotBefore:             now.Add(-DefaultBackdate),
		NotAfter:              now.Add(DefaultLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testpki: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: CA certificate: %w", err)
	}
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// CertPEM returns the CA certificate, PEM-encoded. The slice is the
// caller's.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// IssueOptions changes a certificate made by Issue. The zero value gives
// the default certificate.
type IssueOptions struct {
	// NotBefore and NotAfter bound the validity; zero means an hour ago
	// and 24 hours from now.
	NotBefore, NotAfter time.Time
	// NoURI leaves out the embedkv://node/<id> URI SAN, which makes a
	// certificate that peertls refuses as a node certificate, whatever
	// its common name: the shape of a certificate the same CA issued for
	// another purpose.
	NoURI bool
	// CommonName is the subject common name; empty means the node ID.
	CommonName string
	// ExtKeyUsage lists the extended key usages. Nil means both server
	// and client authentication; an empty non-nil slice means none (which
	// crypto/x509 accepts for any usage).
	ExtKeyUsage []x509.ExtKeyUsage
}

// Issue returns a new ECDSA P-256 key and a certificate for it signed by
// the CA, both PEM-encoded (the key as PKCS #8).
//
// By default the certificate names nodeID in a URI SAN built by
// peertls.NodeURI and in its common name, carries the IP SANs 127.0.0.1
// and ::1 and the DNS SAN localhost, allows server and client
// authentication, and is valid from an hour ago until 24 hours from now;
// opts changes that. peertls takes the identity from the URI SAN only, so
// a certificate made with NoURI, or with an empty nodeID (which gives
// neither URI SAN nor default common name), has no identity.
func (ca *CA) Issue(nodeID string, opts IssueOptions) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: node key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: nodeID},
		NotBefore:             now.Add(-DefaultBackdate),
		NotAfter:              now.Add(DefaultLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	if nodeID != "" && !opts.NoURI {
		tmpl.URIs = []*url.URL{peertls.NodeURI(nodeID)}
	}
	if opts.CommonName != "" {
		tmpl.Subject.CommonName = opts.CommonName
	}
	if !opts.NotBefore.IsZero() {
		tmpl.NotBefore = opts.NotBefore
	}
	if !opts.NotAfter.IsZero() {
		tmpl.NotAfter = opts.NotAfter
	}
	if opts.ExtKeyUsage != nil {
		tmpl.ExtKeyUsage = append([]x509.ExtKeyUsage(nil), opts.ExtKeyUsage...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: certificate for %q: %w", nodeID, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

// WriteFiles issues a certificate for nodeID as Issue does and writes it
// to <dir>/<nodeID>.crt, its key to <dir>/<nodeID>.key (mode 0600) and the
// CA certificate to <dir>/ca.crt, replacing any existing file. Each file
// is written to a temporary file in dir and renamed into place, so a
// reader sees either the old or the new content of each file (not of the
// three together). nodeID must be usable as a file name: not empty, not
// "." or "..", without path separators; otherwise the error wraps
// ErrFileName.
func (ca *CA) WriteFiles(dir, nodeID string, opts IssueOptions) (peertls.Files, error) {
	if nodeID == "" || nodeID == "." || nodeID == ".." || filepath.Base(nodeID) != nodeID || filepath.IsAbs(nodeID) {
		return peertls.Files{}, fmt.Errorf("%w: %q", ErrFileName, nodeID)
	}
	certPEM, keyPEM, err := ca.Issue(nodeID, opts)
	if err != nil {
		return peertls.Files{}, err
	}
	f := peertls.Files{
		CertFile: filepath.Join(dir, nodeID+".crt"),
		KeyFile:  filepath.Join(dir, nodeID+".key"),
		CAFile:   filepath.Join(dir, "ca.crt"),
	}
	writes := []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{f.CertFile, certPEM, 0o644},
		{f.KeyFile, keyPEM, 0o600},
		{f.CAFile, ca.certPEM, 0o644},
	}
	for _, w := range writes {
		if err := writeAtomic(w.path, w.data, w.perm); err != nil {
			return peertls.Files{}, err
		}
	}
	return f, nil
}

// writeAtomic writes data to path through a temporary file in the same
// directory, renamed into place once complete.
func writeAtomic(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".testpki-*")
	if err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("testpki: write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("testpki: chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("testpki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("testpki: rename to %s: %w", path, err)
	}
	return nil
}

// newSerial returns a random 128-bit certificate serial number.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("testpki: serial number: %w", err)
	}
	return n, nil
}
