package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store/internal/fakeclock"
)

func newFakeClock() *fakeclock.Clock { return fakeclock.New(time.Unix(1_700_000_000, 0)) }

func mustGrant(t *testing.T, s *Store, ttl int64) LeaseID {
	t.Helper()
	r, err := s.Grant(ctxT(t), ttl)
	if err != nil {
		t.Fatalf("Grant(%d): %v", ttl, err)
	}
	return r.ID
}

func exists(t *testing.T, s *Store, key string) bool {
	t.Helper()
	return len(mustGet(t, s, key).Kvs) == 1
}

func TestLeaseGrantAttachRevoke(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	ctx := ctxT(t)
	id := mustGrant(t, s, 60)
	mustPut(t, s, "l/a", "1", WithLease(id))
	mustPut(t, s, "l/b", "2", WithLease(id))
	mustPut(t, s, "other", "3")

	ttl, err := s.TimeToLive(ctx, id, WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 60 || ttl.TTL <= 0 || ttl.TTL > 60 || len(ttl.Keys) != 2 || string(ttl.Keys[0]) != "l/a" {
		t.Errorf("TimeToLive: got %+v", ttl)
	}
	if g := mustGet(t, s, "l/a"); g.Kvs[0].Lease != id {
		t.Errorf("lease on key: got %d, want %d", g.Kvs[0].Lease, id)
	}
	ls, err := s.Leases(ctx)
	if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != id {
		t.Errorf("Leases: got %+v, %v", ls, err)
	}

	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(wctx, "l/", WithPrefix())
	if _, err := s.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	wr := <-ch
	if len(wr.Events) != 2 || wr.Events[0].Type != DELETE || wr.Events[0].Kv.ModRevision != wr.Events[1].Kv.ModRevision {
		t.Errorf("revoke events: got %d events %v, want 2 DELETEs at one revision", len(wr.Events), wr.Events)
	}
	if exists(t, s, "l/a") || exists(t, s, "l/b") || !exists(t, s, "other") {
		t.Error("revoke: wrong keys deleted")
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"revoke again", func() error { _, err := s.Revoke(ctx, id); return err }, ErrLeaseNotFound},
		{"keepalive revoked", func() error { _, err := s.KeepAliveOnce(ctx, id); return err }, ErrLeaseNotFound},
		{"keepalive stream revoked", func() error { _, err := s.KeepAlive(ctx, id); return err }, ErrLeaseNotFound},
		{"put with revoked lease", func() error { _, err := s.Put(ctx, "x", "y", WithLease(id)); return err }, ErrLeaseNotFound},
		{"negative TTL", func() error { _, err := s.Grant(ctx, -1); return err }, ErrInvalidArgument},
		{"TTL too large", func() error { _, err := s.Grant(ctx, maxLeaseTTL+1); return err }, ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	if r, err := s.TimeToLive(ctx, id); err != nil || r.TTL != -1 {
		t.Errorf("TimeToLive of revoked lease: got %+v, %v; want TTL -1", r, err)
	}
}

func TestLeaseMinimumTTLAndUniqueIDs(t *testing.T) {
	c := newCluster(t, 3, nil)
	seen := map[LeaseID]bool{}
	for i := 0; i < 9; i++ {
		r, err := c.nodes[i%3].Grant(ctxT(t), 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.TTL < 1 {
			t.Errorf("TTL 0 granted as %d, want the minimum >= 1", r.TTL)
		}
		if seen[r.ID] || r.ID <= 0 {
			t.Errorf("lease ID %d reused or not positive", r.ID)
		}
		seen[r.ID] = true
	}
}

// Expiry order with an injected clock: deadlines, not grant order, decide.
func TestLeaseExpiryOrderInjectedClock(t *testing.T) {
	clock := newFakeClock()
	c := newCluster(t, 1, func(cfg *Config) { cfg.Clock = clock; cfg.LeaseCheckpointInterval = time.Hour })
	s := c.nodes[0]
	// Wait until the leader has armed its lessor before granting.
	poll(t, 5*time.Second, func() bool { return s.lessor.IsPrimary() })
	ids := map[string]LeaseID{}
	for _, tc := range []struct {
		key string
		ttl int64
	}{{"ten", 10}, {"five", 5}, {"seven", 7}} {
		ids[tc.key] = mustGrant(t, s, tc.ttl)
		mustPut(t, s, tc.key, "v", WithLease(ids[tc.key]))
	}
	steps := []struct {
		advance time.Duration
		keepTen bool
		want    map[string]bool
	}{
		{4 * time.Second, false, map[string]bool{"ten": true, "five": true, "seven": true}},
		{2 * time.Second, false, map[string]bool{"ten": true, "five": false, "seven": true}},
		{2 * time.Second, true, map[string]bool{"ten": true, "five": false, "seven": false}},   // t=8: renew "ten" to t=18
		{5 * time.Second, false, map[string]bool{"ten": true, "five": false, "seven": false}},  // t=13
		{6 * time.Second, false, map[string]bool{"ten": false, "five": false, "seven": false}}, // t=19
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		if st.keepTen {
			if _, err := s.KeepAliveOnce(ctxT(t), ids["ten"]); err != nil {
				t.Fatalf("step %d keepalive: %v", i, err)
			}
		}
		for key, want := range st.want {
			ok := poll(t, 5*time.Second, func() bool { return exists(t, s, key) == want })
			if !ok {
				t.Errorf("step %d: key %s exists=%v, want %v", i, key, !want, want)
			}
		}
	}
}

func TestLeaseExpiryClusterWatchersSeeDeletes(t *testing.T) {
	c := newCluster(t, 3, nil)
	f := c.nodes[c.follower()]
	id := mustGrant(t, f, 1)
	mustPut(t, f, "e/1", "a", WithLease(id))
	mustPut(t, f, "e/2", "b", WithLease(id))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := f.Watch(ctx, "e/", WithPrefix())
	select {
	case wr := <-ch:
		if len(wr.Events) != 2 || wr.Events[0].Type != DELETE || wr.Events[1].Type != DELETE {
			t.Fatalf("got %v, want the two DELETEs together", wr.Events)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("lease did not expire")
	}
	for i, s := range c.nodes {
		if exists(t, s, "e/1") || exists(t, s, "e/2") {
			t.Errorf("node %d still has leased keys", i)
		}
		if r, err := s.TimeToLive(ctxT(t), id); err != nil || r.TTL != -1 {
			t.Errorf("node %d TimeToLive: got %+v, %v; want -1", i, r, err)
		}
	}
}

func TestLeaseKeepAliveAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	f := c.follower()
	id := mustGrant(t, c.nodes[f], 2)
	mustPut(t, c.nodes[f], "ka", "v", WithLease(id))
	ctx, cancel := context.WithCancel(context.Background())
	ka, err := c.nodes[f].KeepAlive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var renewals sync.WaitGroup
	renewals.Add(1)
	n := 0
	go func() {
		defer renewals.Done()
		for range ka {
			n++
		}
	}()
	c.stop(l)
	c.waitLeader()
	// Three TTLs after the leader died the key must still be there.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if !exists(t, c.nodes[f], "ka") {
			t.Fatal("kept-alive key vanished after the leader change")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	renewals.Wait()
	if n < 3 {
		t.Errorf("got %d keepalive responses, want at least 3", n)
	}
}

func TestLeaseRemainingTTLSurvivesLeaderChange(t *testing.T) {
	const interval = 500 * time.Millisecond
	c := newCluster(t, 3, func(cfg *Config) { cfg.LeaseCheckpointInterval = interval })
	l := c.waitLeader()
	f := c.follower()
	start := time.Now()
	id := mustGrant(t, c.nodes[f], 20)
	// Let the leader count down and checkpoint for a while.
	time.Sleep(4 * time.Second)
	termBefore := c.nodes[f].Status().Term
	c.stop(l)
	c.waitLeader()
	r, err := c.nodes[f].TimeToLive(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start).Seconds()
	elections := c.nodes[f].Status().Term - termBefore
	// The documented bound: each leader change makes it at most
	// 1.5 x interval + the election late (we allow 2 s per change for the
	// election and rounding); never early.
	maxTTL := 20 - elapsed + float64(elections)*(1.5*interval.Seconds()+2)
	minTTL := 20 - elapsed - 1
	if float64(r.TTL) > maxTTL || float64(r.TTL) < minTTL {
		t.Errorf("TTL after %d election(s): got %d, want within [%.1f, %.1f] (etcd would reset it to 20)",
			elections, r.TTL, minTTL, maxTTL)
	}
}

func TestLeaseSurvivesRestartAndSnapshot(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 32
		cfg.TrailingLogs = 40
	})
	id := mustGrant(t, c.nodes[0], 600)
	mustPut(t, c.nodes[0], "keep", "v", WithLease(id))
	for i := 0; i < 100; i++ {
		mustPut(t, c.nodes[i%3], fmt.Sprintf("fill%d", i), "x")
	}
	for _, s := range c.nodes {
		s.raft.Snapshot().Error()
	}
	c.closeAll()
	for i := range c.nodes {
		c.start(i)
	}
	c.waitLeader()
	for i, s := range c.nodes {
		r, err := s.TimeToLive(ctxT(t), id, WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		if r.TTL <= 0 || r.GrantedTTL != 600 || len(r.Keys) != 1 || string(r.Keys[0]) != "keep" {
			t.Errorf("node %d after restart: got %+v", i, r)
		}
	}
	if _, err := c.nodes[1].Revoke(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	if exists(t, c.nodes[2], "keep") {
		t.Error("revoke after restart left the key")
	}
}
