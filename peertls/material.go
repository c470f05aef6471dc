package peertls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// Sentinel errors of New and Reload. Failed handshakes wrap ErrUntrusted or
// ErrIdentity too.
var (
	// ErrFiles reports a certificate, key or CA file that cannot be read
	// or parsed, a key that does not match its certificate, or a CA file
	// without certificates.
	ErrFiles = errors.New("peertls: bad certificate files")
	// ErrUntrusted reports a certificate chain that does not verify
	// against the CA bundle: signed by another CA, expired, not yet valid,
	// or without the required extended key usage.
	ErrUntrusted = errors.New("peertls: certificate not trusted")
)

// Files names PEM files: the node's certificate chain, its private key and
// the CA bundle peers are verified against.
type Files struct {
	// CertFile holds the node's certificate, optionally followed by the
	// intermediate certificates that link it to a CA in CAFile.
	CertFile string
	// KeyFile holds the private key of the node's certificate.
	KeyFile string
	// CAFile holds one or more CA certificates. Peers' certificates must
	// chain to one of them, and so must the node's own certificate.
	CAFile string
}

// material is one consistent set of TLS material loaded from Files. It is
// immutable once built.
type material struct {
	cert  *tls.Certificate // the node's chain and key, Leaf set
	pool  *x509.CertPool   // the CAs peers are verified against
	id    string           // Identity of cert.Leaf
	stamp stamp            // the files as stat'ed before they were read
}

// fileStamp is what changes in a file's metadata when it is rewritten.
type fileStamp struct {
	size    int64
	modTime int64 // UnixNano
}

// stamp holds the fileStamps of CertFile, KeyFile and CAFile, in that
// order. A zero fileStamp stands for a file that could not be stat'ed.
type stamp [3]fileStamp

// paths returns the three file names in stamp order.
func (f Files) paths() [3]string { return [3]string{f.CertFile, f.KeyFile, f.CAFile} }

// statFiles stamps the three files. A file that cannot be stat'ed gets a
// zero stamp, so that it differs from any loaded material and the load
// that follows reports why.
func statFiles(f Files) stamp {
	var s stamp
	for i, p := range f.paths() {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		s[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime().UnixNano()}
	}
	return s
}

// loadMaterial reads the three files and checks them as New documents: the
// certificate and key parse and match, the CA file holds a certificate, the
// certificate carries an identity and verifies against the CA file at now
// for both server and client authentication. st is the files' stamp, taken
// before they are read (so that a change during the read is seen by the
// next check). Errors name files, never their contents.
func loadMaterial(f Files, st stamp, now time.Time) (*material, error) {
	certPEM, err := readFile("certificate", f.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile("key", f.KeyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := readFile("CA", f.CAFile)
	if err != nil {
		return nil, err
	}

	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The crypto/tls messages describe the problem (no PEM data,
		// mismatched key) without quoting key material.
		return nil, fmt.Errorf("%w: certificate file %q with key file %q: %w", ErrFiles, f.CertFile, f.KeyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("%w: certificate file %q: %w", ErrFiles, f.CertFile, err)
		}
		cert.Leaf = leaf
	}
	inter := x509.NewCertPool()
	for i, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate file %q, certificate %d: %w", ErrFiles, f.CertFile, i+2, err)
		}
		inter.AddCert(c)
	}
	pool, err := parseCAs(f.CAFile, caPEM)
	if err != nil {
		return nil, err
	}

	id, err := Identity(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("certificate file %q: %w", f.CertFile, err)
	}
	// Every node both accepts and dials, so its certificate must be good
	// for both ends of a handshake.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{
			Roots:         pool,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			return nil, fmt.Errorf("%w: certificate file %q (node %q) does not verify against CA file %q for %s: %w",
				ErrUntrusted, f.CertFile, id, f.CAFile, usageName(usage), err)
		}
	}
	return &material{cert: &cert, pool: pool, id: id, stamp: st}, nil
}

// readFile reads the file at path, which holds what kind names.
func readFile(kind, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no %s file given", ErrFiles, kind)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		// Unwrap the *fs.PathError so that the path is not named twice;
		// errors.Is(err, fs.ErrNotExist) still holds.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%w: %s file %q: %w", ErrFiles, kind, path, err)
	}
	return b, nil
}

// parseCAs returns a pool of every CERTIFICATE block in caPEM, read from
// path. Other PEM blocks are ignored. It fails if a certificate does not
// parse or if there is none.
func parseCAs(path string, caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file %q, certificate %d: %w", ErrFiles, path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: CA file %q holds no PEM certificate", ErrFiles, path)
	}
	return pool, nil
}

// usageName names an extended key usage in error messages.
func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	default:
		return fmt.Sprintf("extended key usage %d", u)
	}
}
