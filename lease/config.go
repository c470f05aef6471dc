package lease

import (
	"log/slog"
	"time"
)

// Default values of the Config fields left at zero.
const (
	// DefaultMaxExpirePerSec is the default Config.MaxExpirePerSec, etcd's
	// lease revoke rate.
	DefaultMaxExpirePerSec = 1000
	// DefaultRetryInterval is the default Config.RetryInterval.
	DefaultRetryInterval = 3 * time.Second
)

// Clock is the Lessor's time source. The store passes its Config.Clock; tests
// pass a fake one.
//
// The Lessor calls both methods while holding its own mutex, so an
// implementation must not call back into the Lessor.
type Clock interface {
	// Now returns the current time. Deadlines are computed as differences
	// of Now values, so a real clock must carry a monotonic reading (as
	// time.Now does).
	Now() time.Time
	// After returns a channel that receives once, no earlier than d from
	// now. The channel must be buffered (as time.After's is): the Lessor
	// may abandon it without reading.
	After(d time.Duration) <-chan time.Time
}

// RealClock returns the Clock of real time: time.Now and time.After.
func RealClock() Clock { return realClock{} }

// realClock is the Clock returned by RealClock.
type realClock struct{}

// Now returns time.Now().
func (realClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// State is a lease as the replicated FSM knows it.
type State struct {
	// ID identifies the lease.
	ID int64
	// Remaining is the remaining TTL recorded by the lease's last grant,
	// renew or checkpoint entry. A value <= 0 arms an immediate expiry.
	Remaining time.Duration
	// RenewIndex is the raft index of the lease's last grant or renewal;
	// the Lessor only echoes it back in Expired.
	RenewIndex uint64
}

// Expired is a lease whose deadline has passed, as handed to
// Config.OnExpire.
type Expired struct {
	// ID identifies the lease.
	ID int64
	// RenewIndex is the last State.RenewIndex the Lessor was given for the
	// lease. The FSM ignores the expiry if the lease has been renewed
	// since (its renew index changed), which makes a race between an
	// expiry proposal and a renewal harmless.
	RenewIndex uint64
}

// Checkpoint is a remaining TTL measured by the leader, to be recorded in
// the replicated state (see Lessor.Checkpoints).
type Checkpoint struct {
	// ID identifies the lease.
	ID int64
	// Remaining is the time until the lease's deadline on the leader's
	// clock, never negative.
	Remaining time.Duration
	// RenewIndex is the last State.RenewIndex the Lessor was given for the
	// lease when Remaining was measured. The FSM should ignore the
	// checkpoint if the lease's renew index has changed since: a renewal
	// applied between the measurement and the checkpoint entry recorded
	// the full TTL, and the stale, smaller value must not replace it (a
	// later leader would expire the lease early).
	RenewIndex uint64
}

// Config configures a Lessor. The zero value is usable: real time, no
// callback, the defaults below.
type Config struct {
	// Clock is the time source. nil = RealClock().
	Clock Clock

	// OnExpire receives expired leases, in deadline order, at most
	// MaxExpirePerSec of them per call. The Lessor does not keep the
	// slice: the callee owns it.
	//
	// It is called from the Lessor's goroutine without the Lessor's mutex
	// held, and may block (it proposes through raft), which delays later
	// expiries. It may call IsPrimary, Upsert, Remove, Remaining and
	// Checkpoints, but never Demote or Close: they wait for OnExpire to
	// return. Demote waits for a call in progress, so OnExpire must return
	// promptly once the node is demoting (e.g. propose with a context the
	// caller cancels before calling Demote).
	//
	// nil discards expiries (the leases stay tracked as expiring and are
	// "reported" again every RetryInterval).
	OnExpire func(batch []Expired)

	// MaxExpirePerSec bounds how many expiries are handed to OnExpire per
	// second (re-reports included); the rest wait for the next second.
	// <= 0 means DefaultMaxExpirePerSec (1000, as etcd).
	MaxExpirePerSec int

	// RetryInterval is how long after being reported an expired lease
	// that is still tracked (its expire proposal failed, or was ignored
	// because it raced with a renewal that this Lessor has not been told
	// about) is reported again. <= 0 means DefaultRetryInterval (3 s).
	RetryInterval time.Duration

	// Logger receives the Lessor's logs: promotion and demotion at Info,
	// each expiry batch at Debug, re-reports at Warn. nil discards them.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = RealClock()
	}
	if c.MaxExpirePerSec <= 0 {
		c.MaxExpirePerSec = DefaultMaxExpirePerSec
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
