package concurrency

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/embedkv/store"
)

// TestSessionDone checks every way a session ends: Done closes, and the
// lease is revoked, left to expire, or already gone, as documented.
func TestSessionDone(t *testing.T) {
	c := newCluster(t, 3)
	tests := []struct {
		name string
		// end ends the session and returns the error it reports (Close's).
		end func(t *testing.T, s *Session, cancel context.CancelFunc) error
		// leaseLives says whether the lease still exists afterwards.
		leaseLives bool
	}{
		{name: "Close revokes", end: func(t *testing.T, s *Session, _ context.CancelFunc) error {
			return s.Close()
		}},
		{name: "Orphan keeps the lease", leaseLives: true, end: func(t *testing.T, s *Session, _ context.CancelFunc) error {
			s.Orphan()
			return nil
		}},
		{name: "context ends", leaseLives: true, end: func(t *testing.T, s *Session, cancel context.CancelFunc) error {
			cancel()
			return nil
		}},
		{name: "lease revoked elsewhere", end: func(t *testing.T, s *Session, _ context.CancelFunc) error {
			_, err := s.Store().Revoke(ctxT(t), s.Lease())
			return err
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctxT(t))
			defer cancel()
			st := c.nodes[i%3]
			s := newSession(t, st, WithTTL(5), WithContext(ctx))
			if got := s.Store(); got != st {
				t.Errorf("Store() = %p, want %p", got, st)
			}
			if got := s.Ctx(); got != ctx {
				t.Errorf("Ctx() is not the WithContext context")
			}
			ttl, err := c.nodes[(i+1)%3].TimeToLive(ctxT(t), s.Lease())
			if err != nil {
				t.Fatal(err)
			}
			if ttl.GrantedTTL != 5 || ttl.TTL <= 0 {
				t.Fatalf("lease TTL %d, granted %d; want alive with 5", ttl.TTL, ttl.GrantedTTL)
			}
			select {
			case <-s.Done():
				t.Fatal("Done closed on a live session")
			default:
			}

			if err := tt.end(t, s, cancel); err != nil {
				t.Fatalf("ending the session: %v", err)
			}
			waitClosed(t, s.Done(), 5*time.Second, "Done")
			ttl, err = c.nodes[(i+1)%3].TimeToLive(ctxT(t), s.Lease())
			if err != nil {
				t.Fatal(err)
			}
			if got := ttl.TTL > 0; got != tt.leaseLives {
				t.Errorf("lease alive = %v (TTL %d), want %v", got, ttl.TTL, tt.leaseLives)
			}
		})
	}
}

// TestSessionStoreClosed checks that closing the session's store ends the
// session and that Close then reports the store's error.
func TestSessionStoreClosed(t *testing.T) {
	c := newCluster(t, 3)
	s := newSession(t, c.nodes[1], WithTTL(5))
	c.stop(1)
	waitClosed(t, s.Done(), 5*time.Second, "Done")
	if err := s.Close(); !errors.Is(err, store.ErrStopped) {
		t.Errorf("Close after the store closed = %v, want ErrStopped", err)
	}
}

// TestNewSessionErrors covers sessions that cannot start.
func TestNewSessionErrors(t *testing.T) {
	c := newCluster(t, 3)
	tests := []struct {
		name string
		st   *store.Store
		opts []SessionOption
		want error
	}{
		{name: "unknown lease", st: c.nodes[0], opts: []SessionOption{WithLease(12345)}, want: store.ErrLeaseNotFound},
		{name: "closed store", st: c.nodes[2], want: store.ErrStopped},
	}
	c.stop(2)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSession(tt.st, tt.opts...)
			if !errors.Is(err, tt.want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("NewSession = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewSession(nil); err == nil {
		t.Error("NewSession(nil) succeeded")
	}
}

// TestKeys checks the key layout shared with etcd.
func TestKeys(t *testing.T) {
	tests := []struct {
		pfx  string
		id   store.LeaseID
		want string
	}{
		{"/lock", 0x694d77aa9e6b3a05, "/lock/694d77aa9e6b3a05"},
		{"/e", 1, "/e/1"},
		{"", 255, "/ff"},
	}
	for _, tt := range tests {
		if got := contenderKey(keyPrefix(tt.pfx), tt.id); got != tt.want {
			t.Errorf("key(%q, %d) = %q, want %q", tt.pfx, tt.id, got, tt.want)
		}
	}
}
