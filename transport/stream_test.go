package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func rafAddr(s string) raft.ServerAddress { return raft.ServerAddress(s) }

func TestStreamLayerDialAccept(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
	}{
		{"plain", false},
		{"tls", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			var clientTLS *tls.Config
			if tt.tls {
				cfg.ServerTLS, clientTLS = testTLS(t)
				cfg.ClientTLS = staticTLS(clientTLS)
			}
			a := newMux(t, cfg)
			b := newMux(t, cfg)

			dialRaft(t, a, b.Addr(), "ping")
			got, err := acceptRaft(t, b, len("ping"))
			if err != nil {
				t.Fatalf("ReadFull: %v", err)
			}
			if string(got) != "ping" {
				t.Errorf("received: got %q, want %q (protocol byte consumed)", got, "ping")
			}

			// Both muxes still serve RPC on the same port.
			b.ServeRPC(echo)
			var cc ClientConfig
			if tt.tls {
				cc.TLS = staticTLS(clientTLS)
			}
			resp, err := newClient(t, cc).Call(callCtx(t), b.Addr(), 5, []byte("rpc"))
			if err != nil || string(resp) != "\x05rpc" {
				t.Errorf("Call: got %q, %v, want %q, nil", resp, err, "\x05rpc")
			}
		})
	}
}

func TestStreamLayerAddrIsAdvertised(t *testing.T) {
	tests := []struct {
		name      string
		advertise string
		want      func(m *Mux) string
	}{
		{"bound address", "", func(m *Mux) string { return m.ln.Addr().String() }},
		{"advertise address", "node1.example:7000", func(*Mux) string { return "node1.example:7000" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMux(t, Config{AdvertiseAddr: tt.advertise})
			want := tt.want(m)
			if got := m.Addr(); got != want {
				t.Errorf("Mux.Addr: got %q, want %q", got, want)
			}
			addr := m.RaftLayer().Addr()
			if addr.String() != want || addr.Network() != "tcp" {
				t.Errorf("RaftLayer().Addr(): got %s/%q, want tcp/%q", addr.Network(), addr.String(), want)
			}
		})
	}
}

func TestListenErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"bad advertise address", Config{AdvertiseAddr: "no-port"}},
		{"bad bind address", Config{BindAddr: "127.0.0.1:notaport"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Listen(tt.cfg)
			if err == nil {
				m.Close()
				t.Fatalf("Listen: got nil error, want one")
			}
		})
	}
}

func TestStreamLayerCloseKeepsMux(t *testing.T) {
	m := newMux(t, Config{})
	m.ServeRPC(echo)
	layer := m.RaftLayer()
	for i := range 2 {
		if err := layer.Close(); err != nil {
			t.Errorf("layer Close #%d: got %v, want nil", i+1, err)
		}
	}
	if _, err := layer.Accept(); err == nil {
		t.Errorf("Accept after Close: got nil error, want one")
	}
	// A raft connection arriving now is closed rather than left hanging.
	conn := dialRaw(t, m.Addr(), connHeader(t, ProtoRaft, Hello{}))
	expectClosed(t, conn, testTimeout)

	resp, err := newClient(t, ClientConfig{}).Call(callCtx(t), m.Addr(), 1, []byte("x"))
	if err != nil || string(resp) != "\x01x" {
		t.Errorf("Call after layer Close: got %q, %v, want %q, nil", resp, err, "\x01x")
	}
}

func TestTLSHandshakeTimeout(t *testing.T) {
	serverTLS, _ := testTLS(t)
	const timeout = 100 * time.Millisecond
	m := newMux(t, Config{ServerTLS: serverTLS, HandshakeTimeout: timeout})
	start := time.Now() // before the server can start its timer
	conn := dialRaw(t, m.Addr(), nil)
	expectClosed(t, conn, testTimeout)
	if elapsed := time.Since(start); elapsed < timeout {
		t.Errorf("closed after %v, want at least HandshakeTimeout %v", elapsed, timeout)
	}
}

func TestTLSRejectsPlainClient(t *testing.T) {
	serverTLS, _ := testTLS(t)
	m := newMux(t, Config{ServerTLS: serverTLS})
	m.ServeRPC(echo)
	_, err := newClient(t, ClientConfig{}).Call(callCtx(t), m.Addr(), 1, nil)
	if err == nil {
		t.Fatalf("plain call to a TLS mux: got nil error, want one")
	}
	if got, want := m.rpcConns.Load(), int64(0); got != want {
		t.Errorf("rpc connections accepted: got %d, want %d", got, want)
	}
}

// testTLS returns server and client configs trusting one self-signed
// certificate for 127.0.0.1.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "embedkv test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
	server = &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	}
	return server, client
}

// staticTLS returns a TLS function giving cfg for every address.
func staticTLS(cfg *tls.Config) func(string) (*tls.Config, error) {
	return func(string) (*tls.Config, error) { return cfg, nil }
}

func TestClientTLSFunc(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	errNoConfig := errors.New("no TLS config for this address")
	wrongName := clientTLS.Clone()
	wrongName.ServerName = "node9.example" // not in the certificate

	tests := []struct {
		name    string
		cfg     *tls.Config
		err     error
		wantErr error // nil: the dial must succeed
	}{
		{"config for the address", clientTLS, nil, nil},
		{"function error", nil, errNoConfig, errNoConfig},
		{"nil config", nil, nil, errors.New("any")},
		{"pinned identity mismatch", wrongName, nil, errors.New("any")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMux(t, Config{ServerTLS: serverTLS})
			m.ServeRPC(echo)
			var mu sync.Mutex
			var addrs []string
			tlsFor := func(addr string) (*tls.Config, error) {
				mu.Lock()
				addrs = append(addrs, addr)
				mu.Unlock()
				return tt.cfg, tt.err
			}
			check := func(t *testing.T, err error) {
				t.Helper()
				switch {
				case tt.wantErr == nil && err != nil:
					t.Errorf("got %v, want nil", err)
				case tt.wantErr != nil && err == nil:
					t.Errorf("got nil error, want one")
				case tt.wantErr == errNoConfig && !errors.Is(err, errNoConfig):
					t.Errorf("got %v, want it to wrap %v", err, errNoConfig)
				}
			}

			t.Run("rpc", func(t *testing.T) {
				_, err := newClient(t, ClientConfig{TLS: tlsFor}).Call(callCtx(t), m.Addr(), 1, nil)
				check(t, err)
				if err != nil && !errors.Is(err, ErrNotSent) {
					t.Errorf("Call: got %v, want an ErrNotSent error", err)
				}
			})
			t.Run("raft", func(t *testing.T) {
				d := newMux(t, Config{ClientTLS: tlsFor})
				conn, err := d.RaftLayer().Dial(rafAddr(m.Addr()), time.Second)
				if err == nil {
					conn.Close()
				}
				check(t, err)
			})

			mu.Lock()
			defer mu.Unlock()
			if want := []string{m.Addr(), m.Addr()}; fmt.Sprint(addrs) != fmt.Sprint(want) {
				t.Errorf("TLS function called with: got %q, want %q", addrs, want)
			}
		})
	}
}
