package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	store "github.com/embedkv/store"
	"github.com/embedkv/store/internal/robustness/testcluster"
)

// LeasePrefix holds the lease workload's keys: LeasePrefix+"e<id>/..." for
// leases left to expire, LeasePrefix+"k<id>/..." for kept-alive ones.
const LeasePrefix = Root + "lease/"

// LeaseRecord is what the lease workload did with one lease.
type LeaseRecord struct {
	ID        store.LeaseID
	TTL       int64 // seconds, as granted
	KeepAlive bool
	GrantCall int64    // Clock time the Grant was called
	Keys      []string // keys put with the lease (whatever the outcome)
	// Renewals are the call times of acknowledged renewals (KeepAliveOnce
	// returned a response): each was applied before any expiry.
	Renewals []int64
}

// LeaseWorkload grants short leases that are left to expire, and a few
// long ones that are renewed all along, while the nemesis works. Calls
// rotate over the running nodes.
type LeaseWorkload struct {
	ExpiringTTL int64         // seconds (default 2)
	KeptTTL     int64         // seconds (default 10)
	Kept        int           // kept-alive leases (default 2)
	Every       time.Duration // between expiring grants (default 1.5 s)

	c         *testcluster.Cluster
	clk       *Clock
	mu        sync.Mutex // guards rng and recs
	rng       *rand.Rand
	recs      []*LeaseRecord
	wg        sync.WaitGroup
	stopRenew context.CancelFunc
}

// StartLeases starts the workload. Expiring grants stop when grants ends;
// renewals of kept-alive leases go on until StopRenewing.
func StartLeases(grants context.Context, c *testcluster.Cluster, clk *Clock, seed uint64) *LeaseWorkload {
	lw := &LeaseWorkload{ExpiringTTL: 2, KeptTTL: 10, Kept: 2, Every: 1500 * time.Millisecond,
		c: c, clk: clk, rng: rand.New(rand.NewPCG(seed, 7))}
	renew, stop := context.WithCancel(context.Background())
	lw.stopRenew = stop
	for range lw.Kept {
		rec := lw.grant(grants, lw.KeptTTL, true)
		if rec == nil {
			continue
		}
		lw.wg.Add(1)
		go func() {
			defer lw.wg.Done()
			lw.renew(renew, rec)
		}()
	}
	lw.wg.Add(1)
	go func() {
		defer lw.wg.Done()
		for grants.Err() == nil {
			lw.grant(grants, lw.ExpiringTTL, false)
			sleepCtx(grants, lw.Every)
		}
	}()
	return lw
}

// node returns a running node chosen at random, or nil.
func (lw *LeaseWorkload) node() *store.Store {
	lw.mu.Lock()
	start := lw.rng.IntN(lw.c.N())
	lw.mu.Unlock()
	for k := range lw.c.N() {
		if s := lw.c.Node((start + k) % lw.c.N()); s != nil {
			return s
		}
	}
	return nil
}

// grant grants a lease and puts two keys with it; nil if the grant failed.
func (lw *LeaseWorkload) grant(ctx context.Context, ttl int64, keep bool) *LeaseRecord {
	s := lw.node()
	if s == nil || ctx.Err() != nil {
		return nil
	}
	call := lw.clk.Now()
	gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	g, err := s.Grant(gctx, ttl)
	cancel()
	if err != nil {
		return nil
	}
	rec := &LeaseRecord{ID: g.ID, TTL: g.TTL, KeepAlive: keep, GrantCall: call}
	kind := "e"
	if keep {
		kind = "k"
	}
	for _, suffix := range []string{"a", "b"} {
		key := fmt.Sprintf("%s%s%d/%s", LeasePrefix, kind, g.ID, suffix)
		rec.Keys = append(rec.Keys, key)
		pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = s.Put(pctx, key, "x", store.WithLease(g.ID)) // outcome read from the history
		cancel()
	}
	lw.mu.Lock()
	lw.recs = append(lw.recs, rec)
	lw.mu.Unlock()
	return rec
}

// renew renews rec every TTL/10 until ctx ends or the lease is gone.
func (lw *LeaseWorkload) renew(ctx context.Context, rec *LeaseRecord) {
	every := time.Duration(rec.TTL) * time.Second / 10
	for ctx.Err() == nil {
		sleepCtx(ctx, every)
		s := lw.node()
		if s == nil || ctx.Err() != nil {
			continue
		}
		call := lw.clk.Now()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.KeepAliveOnce(rctx, rec.ID)
		cancel()
		switch {
		case err == nil:
			lw.mu.Lock()
			rec.Renewals = append(rec.Renewals, call)
			lw.mu.Unlock()
		case errors.Is(err, store.ErrLeaseNotFound):
			return
		}
	}
}

// Records returns the leases granted so far.
func (lw *LeaseWorkload) Records() []*LeaseRecord {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return append([]*LeaseRecord(nil), lw.recs...)
}

// StopRenewing stops the renewals and waits for every goroutine; call it
// after the grants context ended.
func (lw *LeaseWorkload) StopRenewing() {
	lw.stopRenew()
	lw.wg.Wait()
}

// WaitExpired polls until no key of an expiring lease is left.
func WaitExpired(c *testcluster.Cluster, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var left int64 = -1
		if l := c.Leader(); l >= 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if r, err := c.Node(l).Get(ctx, LeasePrefix+"e", store.WithPrefix(), store.WithCountOnly()); err == nil {
				left = r.Count
			}
			cancel()
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d keys of expiring leases still present after %v", left, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CheckLeases checks the lease workload against h, the committed history
// (read after WaitExpired). upper(r) is the earliest time revision r was
// known committed (an upper bound of when it happened). Rules:
//
//   - exactly once: every key put with a lease is put once and deleted at
//     most once; every key of an expiring lease is deleted (it expired);
//   - atomic: the keys of one lease are deleted in one revision;
//   - never early: a deletion is not observed before GrantCall+TTL, nor
//     before TTL after the call of an acknowledged renewal;
//   - kept-alive leases keep their keys: a deletion of one counts as a
//     violation unless renewals stopped succeeding for a whole TTL before
//     it (then the cluster legitimately let it expire; reported in notes).
func CheckLeases(recs []*LeaseRecord, h *History, upper func(rev int64) (int64, bool)) (LeaseTotals, []string, []string) {
	var tot LeaseTotals
	var bad, notes []string
	for _, rec := range recs {
		puts, dels := map[string]int{}, map[string][]int64{}
		for _, k := range rec.Keys {
			for _, e := range h.versions[k] {
				if e.Delete {
					dels[k] = append(dels[k], e.Rev)
				} else {
					puts[k]++
				}
			}
		}
		if len(puts) == 0 {
			continue // no key of this lease was written
		}
		var delRevs []int64
		for _, k := range rec.Keys {
			switch {
			case puts[k] > 1:
				bad = append(bad, fmt.Sprintf("lease %d: %s put %d times", rec.ID, k, puts[k]))
			case len(dels[k]) > 1:
				bad = append(bad, fmt.Sprintf("lease %d: %s deleted %d times (revisions %v)", rec.ID, k, len(dels[k]), dels[k]))
			case puts[k] == 1 && len(dels[k]) == 0 && !rec.KeepAlive:
				bad = append(bad, fmt.Sprintf("lease %d (TTL %ds): %s never deleted", rec.ID, rec.TTL, k))
			case len(dels[k]) == 1:
				delRevs = append(delRevs, dels[k][0])
			}
		}
		sort.Slice(delRevs, func(i, j int) bool { return delRevs[i] < delRevs[j] })
		if len(delRevs) > 1 && delRevs[0] != delRevs[len(delRevs)-1] {
			bad = append(bad, fmt.Sprintf("lease %d: keys deleted at different revisions %v", rec.ID, delRevs))
		}
		if rec.KeepAlive {
			tot.KeptAlive++
		} else {
			tot.Expiries++
		}
		if len(delRevs) == 0 {
			continue
		}
		at, ok := upper(delRevs[0])
		if !ok {
			continue
		}
		ttl := time.Duration(rec.TTL) * time.Second
		last := rec.GrantCall
		for _, r := range rec.Renewals {
			if r < at {
				last = max(last, r)
			}
		}
		switch {
		case at < last+int64(ttl):
			bad = append(bad, fmt.Sprintf("lease %d (TTL %ds): keys deleted at revision %d, observed %.3fs after the grant or last acknowledged renewal was sent: early",
				rec.ID, rec.TTL, delRevs[0], float64(at-last)/1e9))
		case rec.KeepAlive:
			notes = append(notes, fmt.Sprintf("kept-alive lease %d expired at revision %d: no renewal succeeded for %.3fs",
				rec.ID, delRevs[0], float64(at-last)/1e9))
		}
	}
	tot.Violations = len(bad)
	return tot, bad, notes
}
