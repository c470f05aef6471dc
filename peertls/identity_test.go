package peertls_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"testing"

	"github.com/embedkv/store/internal/testpki"
	"github.com/embedkv/store/peertls"
)

// mustURL parses s or fails the test.
func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

// TestIdentity checks how Identity reads URI SANs, and that it never takes
// the ID from the common name.
func TestIdentity(t *testing.T) {
	tests := []struct {
		name    string
		uris    []string
		cn      string
		want    string
		wantErr bool
	}{
		{name: "plain URI", uris: []string{"embedkv://node/n1"}, want: "n1"},
		{name: "URI, common name ignored", uris: []string{"embedkv://node/n1"}, cn: "cn", want: "n1"},
		{name: "escaped space", uris: []string{"embedkv://node/my%20node"}, want: "my node"},
		{name: "escaped unicode", uris: []string{"embedkv://node/h%C3%A9llo-%E2%9C%93"}, want: "héllo-✓"},
		{name: "escaped slash", uris: []string{"embedkv://node/a%2Fb"}, want: "a/b"},
		{name: "escaped percent", uris: []string{"embedkv://node/100%25"}, want: "100%"},
		{name: "upper-case scheme and host", uris: []string{"EMBEDKV://NODE/n1"}, want: "n1"},
		{name: "first node URI wins", uris: []string{"embedkv://node/a", "embedkv://node/b"}, want: "a"},
		{name: "other URIs skipped", uris: []string{"spiffe://example.org/x", "embedkv://node/n1"}, want: "n1"},
		{name: "wrong scheme, no fallback to common name", uris: []string{"https://node/n1"}, cn: "cn", wantErr: true},
		{name: "wrong host, no fallback to common name", uris: []string{"embedkv://peer/n1"}, cn: "cn", wantErr: true},
		{name: "opaque URI is not a node URI", uris: []string{"embedkv:node/n1"}, cn: "cn", wantErr: true},
		{name: "common name only", cn: "cn node", wantErr: true},
		{name: "common name equal to a node ID", cn: "n1", wantErr: true},
		{name: "other URI and common name", uris: []string{"spiffe://example.org/n1"}, cn: "n1", wantErr: true},
		{name: "neither", wantErr: true},
		{name: "wrong scheme and no common name", uris: []string{"https://node/n1"}, wantErr: true},
		{name: "extra slash", uris: []string{"embedkv://node/a/b"}, cn: "cn", wantErr: true},
		{name: "trailing slash", uris: []string{"embedkv://node/a/"}, cn: "cn", wantErr: true},
		{name: "double slash", uris: []string{"embedkv://node//a"}, cn: "cn", wantErr: true},
		{name: "empty ID", uris: []string{"embedkv://node/"}, cn: "cn", wantErr: true},
		{name: "no path", uris: []string{"embedkv://node"}, cn: "cn", wantErr: true},
		{name: "escaped slash alone", uris: []string{"embedkv://node/%2F"}, want: "/"},
		{name: "port", uris: []string{"embedkv://node:7/a"}, cn: "cn", wantErr: true},
		{name: "user", uris: []string{"embedkv://u@node/a"}, cn: "cn", wantErr: true},
		{name: "query", uris: []string{"embedkv://node/a?x=1"}, cn: "cn", wantErr: true},
		{name: "fragment", uris: []string{"embedkv://node/a#f"}, cn: "cn", wantErr: true},
		{name: "invalid UTF-8", uris: []string{"embedkv://node/%FF"}, cn: "cn", wantErr: true},
		{name: "malformed first node URI is not skipped", uris: []string{"embedkv://node/", "embedkv://node/b"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{Subject: pkix.Name{CommonName: tt.cn}}
			for _, s := range tt.uris {
				cert.URIs = append(cert.URIs, mustURL(t, s))
			}
			got, err := peertls.Identity(cert)
			checkIdentity(t, "Identity", got, err, tt.want, tt.wantErr)
		})
	}
	t.Run("nil certificate", func(t *testing.T) {
		got, err := peertls.Identity(nil)
		checkIdentity(t, "Identity(nil)", got, err, "", true)
	})
}

// TestNodeURI checks that NodeURI and Identity are inverses, through the
// URI's string form and through a real certificate.
func TestNodeURI(t *testing.T) {
	ca := newCA(t, "ca")
	tests := []struct {
		id   string
		want string // NodeURI(id).String()
	}{
		{id: "n1", want: "embedkv://node/n1"},
		{id: "node-1.eu_west~2", want: "embedkv://node/node-1.eu_west~2"},
		{id: "my node", want: "embedkv://node/my%20node"},
		{id: "héllo wörld", want: "embedkv://node/h%C3%A9llo%20w%C3%B6rld"},
		{id: "日本", want: "embedkv://node/%E6%97%A5%E6%9C%AC"},
		{id: "a/b", want: "embedkv://node/a%2Fb"},
		{id: "100%", want: "embedkv://node/100%25"},
		{id: "?#&=+:@", want: "embedkv://node/%3F%23&=+:@"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			u := peertls.NodeURI(tt.id)
			if got := u.String(); got != tt.want {
				t.Errorf("NodeURI(%q) = %q, want %q", tt.id, got, tt.want)
			}
			got, err := peertls.Identity(&x509.Certificate{URIs: []*url.URL{mustURL(t, u.String())}})
			if err != nil || got != tt.id {
				t.Errorf("Identity of parsed URI = %q, %v; want %q, nil", got, err, tt.id)
			}
			certPEM, _ := issue(t, ca, tt.id, testpki.IssueOptions{CommonName: "not the id"})
			block, _ := pem.Decode(certPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatalf("ParseCertificate: %v", err)
			}
			got, err = peertls.Identity(cert)
			if err != nil || got != tt.id {
				t.Errorf("Identity of certificate = %q, %v; want %q, nil", got, err, tt.id)
			}
		})
	}
}

// TestPeerIdentity checks PeerIdentity on connection states.
func TestPeerIdentity(t *testing.T) {
	tests := []struct {
		name    string
		state   tls.ConnectionState
		want    string
		wantErr bool
	}{
		{name: "no certificate", state: tls.ConnectionState{}, wantErr: true},
		{
			name: "leaf decides",
			state: tls.ConnectionState{PeerCertificates: []*x509.Certificate{
				{URIs: []*url.URL{peertls.NodeURI("leaf")}},
				{URIs: []*url.URL{peertls.NodeURI("intermediate")}},
			}},
			want: "leaf",
		},
		{
			name: "leaf with only a common name",
			state: tls.ConnectionState{PeerCertificates: []*x509.Certificate{
				{Subject: pkix.Name{CommonName: "leaf"}},
				{URIs: []*url.URL{peertls.NodeURI("intermediate")}},
			}},
			wantErr: true,
		},
		{
			name:    "leaf without identity",
			state:   tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := peertls.PeerIdentity(tt.state)
			checkIdentity(t, "PeerIdentity", got, err, tt.want, tt.wantErr)
		})
	}
}
