package peertls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrIdentity reports a certificate that carries no usable node identity,
// or whose identity is not the one expected.
var ErrIdentity = errors.New("peertls: bad node identity")

// Parts of a node URI SAN: embedkv://node/<id>.
const (
	uriScheme = "embedkv"
	uriHost   = "node"
)

// NodeURI returns the URI SAN that names the node id in a certificate:
// embedkv://node/<id>, with id path-escaped so that any string (spaces,
// slashes, non-ASCII letters) survives the trip through a certificate.
// Identity is its inverse for every non-empty id.
func NodeURI(id string) *url.URL {
	p := "/" + url.PathEscape(id)
	return &url.URL{
		Scheme: uriScheme,
		Host:   uriHost,
		// RawPath keeps the escaped form, so that a slash inside the
		// id is written as %2F and not as a path separator.
		Path:    "/" + id,
		RawPath: p,
	}
}

// Identity returns the node ID carried by cert.
//
// The ID is taken from the first URI SAN whose scheme is "embedkv" and whose
// host is "node" (both compared case-insensitively): its path must be a
// slash followed by the non-empty, path-escaped ID, with no further slash
// and no port, user, query or fragment; the ID is returned unescaped and
// must be valid UTF-8. Such a URI that is malformed is an error: it is
// never skipped in favour of a later URI. URI SANs with another scheme or
// host are ignored.
//
// The embedkv://node URI SAN is what makes a certificate an embedkv node
// certificate, so it is the only source of the ID: the subject (common
// name included) is never read, and a certificate the same CA issued for
// another purpose, without that URI, is not a node. For such a
// certificate, and for a nil cert, Identity returns an error wrapping
// ErrIdentity.
func Identity(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", fmt.Errorf("%w: no certificate", ErrIdentity)
	}
	for _, u := range cert.URIs {
		if u == nil || !isNodeURI(u) {
			continue
		}
		return parseNodeURI(u)
	}
	return "", fmt.Errorf("%w: certificate %q has no %s://%s/<id> URI SAN: it is not a node certificate",
		ErrIdentity, cert.Subject.String(), uriScheme, uriHost)
}

// PeerIdentity returns the Identity of the leaf certificate the peer
// presented on a connection. It does not verify the chain: call it on the
// state of a connection whose handshake used a configuration from a
// Loader, which did. It returns an error wrapping ErrIdentity if the peer
// presented no certificate.
func PeerIdentity(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: peer presented no certificate", ErrIdentity)
	}
	return Identity(cs.PeerCertificates[0])
}

// mismatchError reports a server whose identity is not the one a
// ClientConfig expected. It wraps ErrIdentity.
type mismatchError struct{ got, want string }

// Error returns "peertls: server presented identity <got>, want <want>".
func (e *mismatchError) Error() string {
	return fmt.Sprintf("peertls: server presented identity %q, want %q", e.got, e.want)
}

// Unwrap returns ErrIdentity.
func (e *mismatchError) Unwrap() error { return ErrIdentity }

// isNodeURI reports whether u claims to be a node URI: scheme embedkv and
// host node, whatever its port and path.
func isNodeURI(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, uriScheme) && strings.EqualFold(u.Hostname(), uriHost)
}

// parseNodeURI returns the ID in u, which isNodeURI accepted, or an error
// wrapping ErrIdentity if u is malformed.
func parseNodeURI(u *url.URL) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: URI SAN %q: %s", ErrIdentity, u.Redacted(), why)
	}
	switch {
	case u.Opaque != "":
		return bad("opaque URI")
	case u.User != nil:
		return bad("user information is not allowed")
	case u.Port() != "" || strings.HasSuffix(u.Host, ":"):
		return bad("a port is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return bad("a query is not allowed")
	case u.Fragment != "" || u.RawFragment != "":
		return bad("a fragment is not allowed")
	}
	// The escaped path distinguishes a separator from an escaped slash
	// inside the ID.
	p := u.EscapedPath()
	rest, ok := strings.CutPrefix(p, "/")
	switch {
	case !ok || rest == "":
		return bad("empty node ID")
	case strings.Contains(rest, "/"):
		return bad("the node ID may not contain an unescaped slash")
	}
	id, err := url.PathUnescape(rest)
	switch {
	case err != nil:
		return bad("bad escape in node ID")
	case id == "":
		return bad("empty node ID")
	case !utf8.ValidString(id):
		return bad("node ID is not valid UTF-8")
	}
	return id, nil
}
