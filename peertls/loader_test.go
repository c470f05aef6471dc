package peertls_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store/internal/testlog"
	"github.com/embedkv/store/internal/testpki"
	"github.com/embedkv/store/peertls"
)

// TestNew checks what New accepts and how it reports what it refuses.
func TestNew(t *testing.T) {
	caA := newCA(t, "ca-a")
	caB := newCA(t, "ca-b")
	now := time.Now()

	tests := []struct {
		name string
		// files returns the files to load; they start as a valid
		// certificate for node "a" from CA A.
		files   func(t *testing.T, f peertls.Files) peertls.Files
		opts    peertls.Options
		wantID  string
		wantIs  error
		wantMsg string
	}{
		{
			name:   "valid",
			files:  func(t *testing.T, f peertls.Files) peertls.Files { return f },
			wantID: "a",
		},
		{
			name: "no identity from common name",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				return writeNode(t, caA, "cn-node", testpki.IssueOptions{NoURI: true})
			},
			wantIs: peertls.ErrIdentity, wantMsg: "not a node certificate",
		},
		{
			name: "common name equal to the node ID",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				replaceCert(t, f, caA, "a", testpki.IssueOptions{NoURI: true})
				return f
			},
			wantIs: peertls.ErrIdentity, wantMsg: "a.crt",
		},
		{
			name: "CA bundle with the issuer second",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				writeBundle(t, f, caB, caA)
				return f
			},
			wantID: "a",
		},
		{
			name: "missing certificate file",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				f.CertFile = filepath.Join(t.TempDir(), "missing.crt")
				return f
			},
			wantIs: fs.ErrNotExist, wantMsg: "missing.crt",
		},
		{
			name: "missing key file",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				f.KeyFile = filepath.Join(t.TempDir(), "missing.key")
				return f
			},
			wantIs: peertls.ErrFiles, wantMsg: "missing.key",
		},
		{
			name: "missing CA file",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				f.CAFile = filepath.Join(t.TempDir(), "missing-ca.crt")
				return f
			},
			wantIs: peertls.ErrFiles, wantMsg: "missing-ca.crt",
		},
		{
			name: "no CA file named",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				f.CAFile = ""
				return f
			},
			wantIs: peertls.ErrFiles, wantMsg: "no CA file",
		},
		{
			name: "key not matching certificate",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				_, otherKey := issue(t, caA, "a", testpki.IssueOptions{})
				writeFile(t, f.KeyFile, otherKey)
				return f
			},
			wantIs: peertls.ErrFiles, wantMsg: "does not match",
		},
		{
			name: "garbage key",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				writeFile(t, f.KeyFile, []byte("not a key"))
				return f
			},
			wantIs: peertls.ErrFiles, wantMsg: "a.key",
		},
		{
			name: "garbage certificate",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				writeFile(t, f.CertFile, []byte("not a certificate"))
				return f
			},
			wantIs: peertls.ErrFiles, wantMsg: "a.crt",
		},
		{
			name: "CA file without certificates",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				keyPEM, err := os.ReadFile(f.KeyFile)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, f.CAFile, keyPEM)
				return f
			},
			wantIs: peertls.ErrFiles, wantMsg: "holds no PEM certificate",
		},
		{
			name: "certificate without identity",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				replaceCert(t, f, caA, "", testpki.IssueOptions{NoURI: true})
				return f
			},
			wantIs: peertls.ErrIdentity, wantMsg: "a.crt",
		},
		{
			name: "expired certificate",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				return writeNode(t, caA, "a", testpki.IssueOptions{
					NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
				})
			},
			wantIs: peertls.ErrUntrusted, wantMsg: "expired",
		},
		{
			name: "certificate not yet valid",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				return writeNode(t, caA, "a", testpki.IssueOptions{
					NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour),
				})
			},
			wantIs: peertls.ErrUntrusted, wantMsg: "not yet valid",
		},
		{
			name:    "certificate expired at Options.Now",
			files:   func(t *testing.T, f peertls.Files) peertls.Files { return f },
			opts:    peertls.Options{Now: func() time.Time { return now.Add(48 * time.Hour) }},
			wantIs:  peertls.ErrUntrusted,
			wantMsg: "expired",
		},
		{
			name: "certificate from another CA",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				writeBundle(t, f, caB)
				return f
			},
			wantIs: peertls.ErrUntrusted, wantMsg: "unknown authority",
		},
		{
			name: "certificate without client authentication usage",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				return writeNode(t, caA, "a", testpki.IssueOptions{
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				})
			},
			wantIs: peertls.ErrUntrusted, wantMsg: "for client authentication",
		},
		{
			name: "certificate without server authentication usage",
			files: func(t *testing.T, f peertls.Files) peertls.Files {
				return writeNode(t, caA, "a", testpki.IssueOptions{
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				})
			},
			wantIs: peertls.ErrUntrusted, wantMsg: "for server authentication",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.files(t, writeNode(t, caA, "a", testpki.IssueOptions{}))
			l, err := peertls.New(f, tt.opts)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("New: got error %v, want nil", err)
				}
				if got := l.NodeID(); got != tt.wantID {
					t.Errorf("NodeID() = %q, want %q", got, tt.wantID)
				}
				if err := l.LastReloadError(); err != nil {
					t.Errorf("LastReloadError() = %v, want nil", err)
				}
				return
			}
			checkErr(t, "New", err, tt.wantIs, tt.wantMsg)
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("New: error %q quotes key material", err)
			}
		})
	}
	t.Run("missing file wraps ErrFiles", func(t *testing.T) {
		f := writeNode(t, caA, "a", testpki.IssueOptions{})
		f.CertFile += ".missing"
		_, err := peertls.New(f, peertls.Options{})
		if !errors.Is(err, peertls.ErrFiles) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("New: got %v, want an error wrapping ErrFiles and fs.ErrNotExist", err)
		}
	})
}

// TestReloadRotatesCA replaces a node's files with material from another
// CA and checks that configurations handed out before the change use the
// new certificate and trust only the new CA.
func TestReloadRotatesCA(t *testing.T) {
	caA := newCA(t, "ca-a")
	caB := newCA(t, "ca-b")
	dir := t.TempDir()
	files := writeNodeIn(t, caA, dir, "a", testpki.IssueOptions{})
	logs := &testlog.Buffer{}
	node := newLoader(t, files, peertls.Options{ReloadInterval: -1, Logger: logs.Logger(slog.LevelDebug)})
	peerA := newLoader(t, writeNode(t, caA, "peer-a", testpki.IssueOptions{}), peertls.Options{})
	peerB := newLoader(t, writeNode(t, caB, "peer-b", testpki.IssueOptions{}), peertls.Options{})

	// Handed out once, before the rotation.
	serverCfg := node.ServerConfig()
	clientCfg := node.ClientConfig("")

	type check struct {
		name       string
		run        func(t *testing.T) result
		wantOK     bool
		wantIssuer string // CA of the node's certificate, as its peer sees it
	}
	asServer := func(peer *peertls.Loader) func(t *testing.T) result {
		return func(t *testing.T) result { return handshake(t, serverCfg, peer.ClientConfig("a")) }
	}
	asClient := func(peer *peertls.Loader) func(t *testing.T) result {
		return func(t *testing.T) result { return handshake(t, peer.ServerConfig(), clientCfg) }
	}
	runChecks := func(t *testing.T, checks []check) {
		t.Helper()
		for _, c := range checks {
			t.Run(c.name, func(t *testing.T) {
				r := c.run(t)
				if !c.wantOK {
					requireRefused(t, r)
					return
				}
				requireOK(t, r, "")
				// The node's certificate is the server's in one case,
				// the client's in the other.
				leaf := r.clientState.PeerCertificates[0]
				if peerID(r.clientState) != "a" {
					leaf = r.serverState.PeerCertificates[0]
				}
				if got := leaf.Issuer.CommonName; got != c.wantIssuer {
					t.Errorf("node certificate issued by %q, want %q", got, c.wantIssuer)
				}
			})
		}
	}

	t.Run("before", func(t *testing.T) {
		runChecks(t, []check{
			{name: "serves CA A peer", run: asServer(peerA), wantOK: true, wantIssuer: "ca-a"},
			{name: "dials CA A peer", run: asClient(peerA), wantOK: true, wantIssuer: "ca-a"},
			{name: "refuses CA B peer as server", run: asServer(peerB)},
			{name: "refuses CA B peer as client", run: asClient(peerB)},
		})
	})

	writeNodeIn(t, caB, dir, "a", testpki.IssueOptions{})
	touch(t, files, time.Now().Add(time.Hour))

	t.Run("after", func(t *testing.T) {
		runChecks(t, []check{
			{name: "serves CA B peer", run: asServer(peerB), wantOK: true, wantIssuer: "ca-b"},
			{name: "dials CA B peer", run: asClient(peerB), wantOK: true, wantIssuer: "ca-b"},
			{name: "refuses CA A peer as server", run: asServer(peerA)},
			{name: "refuses CA A peer as client", run: asClient(peerA)},
		})
	})
	if err := node.LastReloadError(); err != nil {
		t.Errorf("LastReloadError() = %v, want nil", err)
	}
	if got := node.NodeID(); got != "a" {
		t.Errorf("NodeID() = %q, want %q", got, "a")
	}
	if got := logs.Count("reloaded certificates"); got != 1 {
		t.Errorf("logged %d reloads, want 1", got)
	}
}

// TestReloadFailureKeepsMaterial breaks a node's files in various ways and
// checks that handshakes go on with the old material, that the failure is
// reported and logged once, and that repaired files are picked up.
func TestReloadFailureKeepsMaterial(t *testing.T) {
	caA := newCA(t, "ca-a")
	caB := newCA(t, "ca-b")
	now := time.Now()
	tests := []struct {
		name   string
		breaks func(t *testing.T, f peertls.Files)
		wantIs error
	}{
		{
			name:   "garbage key",
			breaks: func(t *testing.T, f peertls.Files) { writeFile(t, f.KeyFile, []byte("garbage")) },
			wantIs: peertls.ErrFiles,
		},
		{
			name: "certificate replaced without its key",
			breaks: func(t *testing.T, f peertls.Files) {
				certPEM, _ := issue(t, caA, "a", testpki.IssueOptions{})
				writeFile(t, f.CertFile, certPEM)
			},
			wantIs: peertls.ErrFiles,
		},
		{
			name: "missing CA file",
			breaks: func(t *testing.T, f peertls.Files) {
				if err := os.Remove(f.CAFile); err != nil {
					t.Fatal(err)
				}
			},
			wantIs: peertls.ErrFiles,
		},
		{
			name:   "certificate from another CA",
			breaks: func(t *testing.T, f peertls.Files) { replaceCert(t, f, caB, "a", testpki.IssueOptions{}) },
			wantIs: peertls.ErrUntrusted,
		},
		{
			name: "expired certificate",
			breaks: func(t *testing.T, f peertls.Files) {
				replaceCert(t, f, caA, "a", testpki.IssueOptions{
					NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
				})
			},
			wantIs: peertls.ErrUntrusted,
		},
		{
			name:   "certificate for another node",
			breaks: func(t *testing.T, f peertls.Files) { replaceCert(t, f, caA, "b", testpki.IssueOptions{}) },
			wantIs: peertls.ErrIdentity,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeNodeIn(t, caA, dir, "a", testpki.IssueOptions{})
			logs := &testlog.Buffer{}
			node, serverCfg, clientCfg := servedNode(t, caA, files, peertls.Options{ReloadInterval: -1, Logger: logs.Logger(slog.LevelDebug)})

			oldSerial := handshakeSerial(t, serverCfg, clientCfg, "before: ")

			tt.breaks(t, files)
			if _, err := os.Stat(files.CAFile); err == nil {
				touch(t, files, now.Add(time.Hour))
			}
			for i := range 3 {
				got := handshakeSerial(t, serverCfg, clientCfg, fmt.Sprintf("broken files, handshake %d: ", i))
				if got != oldSerial {
					t.Errorf("broken files, handshake %d: server presented serial %s, want the old %s", i, got, oldSerial)
				}
			}
			if err := node.LastReloadError(); !errors.Is(err, tt.wantIs) {
				t.Errorf("LastReloadError() = %v, want an error wrapping %v", err, tt.wantIs)
			}
			if err := node.Reload(); !errors.Is(err, tt.wantIs) {
				t.Errorf("Reload() = %v, want an error wrapping %v", err, tt.wantIs)
			}
			if got := logs.Count("level=WARN"); got != 1 {
				t.Errorf("logged %d warnings, want 1:\n%s", got, logs.String())
			}
			if got := node.NodeID(); got != "a" {
				t.Errorf("NodeID() = %q, want %q", got, "a")
			}

			// Repair: a new certificate for the same node from CA A.
			writeNodeIn(t, caA, dir, "a", testpki.IssueOptions{})
			touch(t, files, now.Add(2*time.Hour))
			if got := handshakeSerial(t, serverCfg, clientCfg, "repaired: "); got == oldSerial {
				t.Errorf("repaired: server presented the old serial %s, want the new certificate", got)
			}
			if err := node.LastReloadError(); err != nil {
				t.Errorf("repaired: LastReloadError() = %v, want nil", err)
			}
		})
	}
}

// TestReloadInterval checks that changes are not looked for before the
// interval has elapsed, and that Reload does not wait for it.
func TestReloadInterval(t *testing.T) {
	ca := newCA(t, "ca")
	dir := t.TempDir()
	files := writeNodeIn(t, ca, dir, "a", testpki.IssueOptions{})
	node, serverCfg, clientCfg := servedNode(t, ca, files, peertls.Options{ReloadInterval: time.Hour})

	oldSerial := handshakeSerial(t, serverCfg, clientCfg, "")
	writeNodeIn(t, ca, dir, "a", testpki.IssueOptions{})
	touch(t, files, time.Now().Add(time.Hour))

	tests := []struct {
		name       string
		before     func(t *testing.T)
		wantSerial func(got string) bool
		want       string
	}{
		{
			name:       "within the interval",
			before:     func(t *testing.T) {},
			wantSerial: func(got string) bool { return got == oldSerial },
			want:       "the old serial",
		},
		{
			name: "after Reload",
			before: func(t *testing.T) {
				if err := node.Reload(); err != nil {
					t.Fatalf("Reload() = %v, want nil", err)
				}
			},
			wantSerial: func(got string) bool { return got != oldSerial },
			want:       "a new serial",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.before(t)
			if got := handshakeSerial(t, serverCfg, clientCfg, ""); !tt.wantSerial(got) {
				t.Errorf("server presented serial %s, want %s (old: %s)", got, tt.want, oldSerial)
			}
		})
	}
}

// TestReloadConcurrent runs handshakes while the files are rewritten and
// reloaded: every handshake must succeed (a half-written set is refused
// and the old material kept), and the race detector must stay quiet.
func TestReloadConcurrent(t *testing.T) {
	const (
		workers    = 4
		handshakes = 8
		rewrites   = 5
	)
	ca := newCA(t, "ca")
	dir := t.TempDir()
	files := writeNodeIn(t, ca, dir, "a", testpki.IssueOptions{})
	node, serverCfg, clientCfg := servedNode(t, ca, files, peertls.Options{ReloadInterval: -1})

	var wg sync.WaitGroup
	errs := make(chan error, workers*handshakes)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range handshakes {
				r, err := tryHandshake(serverCfg, clientCfg)
				if err != nil {
					errs <- err
					continue
				}
				if !r.ok() {
					errs <- errors.Join(r.serverErr, r.clientErr)
				}
			}
		}()
	}
	at := time.Now()
	for i := range rewrites {
		if _, err := ca.WriteFiles(dir, "a", testpki.IssueOptions{}); err != nil {
			t.Error(err)
			break
		}
		mtime := at.Add(time.Duration(i+1) * time.Minute)
		if err := os.Chtimes(files.CertFile, mtime, mtime); err != nil {
			t.Error(err)
			break
		}
		_ = node.Reload() // may see a half-written set; that is the point
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handshake during reloads: got %v, want success", err)
	}
	if err := node.Reload(); err != nil {
		t.Errorf("final Reload() = %v, want nil", err)
	}
}
