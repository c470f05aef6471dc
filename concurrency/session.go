package concurrency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/embedkv/store"
)

// defaultSessionTTL is the TTL, in seconds, of a session's lease when
// WithTTL is not given (etcd's default).
const defaultSessionTTL = 60

// Session is a lease kept alive in the background. Keys written by the
// recipes of this package are attached to it, so they vanish when the
// session is lost. A Session is safe for concurrent use.
//
// The keepalive runs until Close or Orphan is called, the session's
// context ends, the lease expires or is revoked, or the store closes;
// Done is closed then.
type Session struct {
	st     *store.Store
	opts   sessionOptions
	id     store.LeaseID
	ttl    int64 // seconds: the TTL the store keeps the lease alive for
	cancel context.CancelFunc
	donec  chan struct{}
}

// sessionOptions holds the settings of NewSession.
type sessionOptions struct {
	ttl     int
	leaseID store.LeaseID
	ctx     context.Context
}

// SessionOption configures a Session.
type SessionOption func(*sessionOptions)

// WithTTL sets the TTL of the session's lease in seconds (default 60). The
// store raises a TTL below its minimum lease TTL to that minimum. A TTL of
// zero or less is ignored, as in etcd.
func WithTTL(ttl int) SessionOption {
	return func(o *sessionOptions) {
		if ttl > 0 {
			o.ttl = ttl
		}
	}
}

// WithLease makes the session use, and keep alive, an existing lease
// instead of granting a new one. The lease must exist; its own TTL applies
// and WithTTL is then ignored.
func WithLease(leaseID store.LeaseID) SessionOption {
	return func(o *sessionOptions) { o.leaseID = leaseID }
}

// WithContext sets the context of the session (default
// context.Background()). It bounds the lease grant, and when it ends the
// keepalive stops and Done is closed, as if Orphan had been called: the
// lease then expires after its TTL unless revoked.
func WithContext(ctx context.Context) SessionOption {
	return func(o *sessionOptions) {
		if ctx != nil {
			o.ctx = ctx
		}
	}
}

// NewSession grants a lease on st (or adopts the one given WithLease),
// starts keeping it alive, and returns the session. It fails if the lease
// cannot be granted or does not exist.
func NewSession(st *store.Store, opts ...SessionOption) (*Session, error) {
	if st == nil {
		return nil, errors.New("concurrency: NewSession needs a store")
	}
	o := sessionOptions{ttl: defaultSessionTTL, ctx: context.Background()}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}

	id := o.leaseID
	granted := false
	if id == store.NoLease {
		resp, err := st.Grant(o.ctx, int64(o.ttl))
		if err != nil {
			return nil, err
		}
		id, granted = resp.ID, true
	}

	kctx, cancel := context.WithCancel(o.ctx)
	ka, err := st.KeepAlive(kctx, id)
	if err != nil {
		cancel()
		if granted {
			// Do not leave the lease to expire on its own: nobody will
			// ever use it.
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(o.ctx), time.Duration(o.ttl)*time.Second)
			_, _ = st.Revoke(rctx, id)
			rcancel()
		}
		return nil, fmt.Errorf("concurrency: keeping lease %x alive: %w", int64(id), err)
	}

	s := &Session{st: st, opts: o, id: id, ttl: int64(o.ttl), cancel: cancel, donec: make(chan struct{})}
	// KeepAlive queues its first renewal before returning; it tells the
	// lease's real TTL (raised to the store's minimum, or the TTL of an
	// adopted lease).
	select {
	case first, ok := <-ka:
		if ok && first.TTL > 0 {
			s.ttl = first.TTL
		}
		if !ok {
			ka = nil
		}
	default:
	}

	go s.keepAlive(ka)
	return s, nil
}

// keepAlive drains the keepalive channel until it closes: the lease was
// lost, the session's context ended, or the store closed. It then closes
// donec. A nil channel means it is already closed.
func (s *Session) keepAlive(ka <-chan *store.LeaseKeepAliveResponse) {
	defer close(s.donec)
	if ka == nil {
		return
	}
	for range ka {
		// Renewals carry nothing the session needs; the channel's close
		// is the only signal.
	}
}

// Store returns the store the session lives on.
func (s *Session) Store() *store.Store { return s.st }

// Lease returns the ID of the session's lease.
func (s *Session) Lease() store.LeaseID { return s.id }

// Ctx returns the session's context (see WithContext).
func (s *Session) Ctx() context.Context { return s.opts.ctx }

// Done returns a channel that is closed when the session's lease can no
// longer be kept alive: it expired or was revoked, the session's context
// ended, Close or Orphan was called, or the store closed.
//
// Done closes when the keepalive notices, which is at most about a third of
// the TTL after the lease is lost. Keys attached to the lease are deleted
// when the lease is, possibly before Done closes: check ownership in the
// store (Mutex.IsOwner) rather than trusting Done alone.
func (s *Session) Done() <-chan struct{} { return s.donec }

// Orphan stops keeping the lease alive without revoking it, and waits
// until the keepalive has stopped. The lease and its keys remain until the
// TTL runs out, which lets another process adopt the lease (WithLease)
// within that time.
func (s *Session) Orphan() {
	s.cancel()
	<-s.donec
}

// Close stops the keepalive and revokes the lease, which deletes every key
// attached to it (releasing locks, resigning elections) in one revision.
// The revocation is bounded by the session's TTL: after that the lease has
// expired anyway. Close returns the error of the revocation; it is
// store.ErrLeaseNotFound when the lease was already gone.
func (s *Session) Close() error {
	s.Orphan()
	ctx, cancel := s.cleanupContext()
	defer cancel()
	_, err := s.st.Revoke(ctx, s.id)
	return err
}

// cleanupContext returns a context for clean-up writes (revoking the
// lease, deleting a key after a failed or abandoned wait): it keeps the
// session context's values but not its cancellation, and ends after the
// session's TTL, when the lease and its keys have expired anyway.
func (s *Session) cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.opts.ctx), time.Duration(s.ttl)*time.Second)
}

// lost reports whether Done is closed.
func (s *Session) lost() bool {
	select {
	case <-s.donec:
		return true
	default:
		return false
	}
}

// sessionErr turns the error of a write attached to the session's lease
// into ErrSessionExpired (still matching the store error) when the lease
// is gone.
func (s *Session) sessionErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrLeaseNotFound) {
		return fmt.Errorf("%w: %w", ErrSessionExpired, err)
	}
	return err
}
