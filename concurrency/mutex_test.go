package concurrency

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/embedkv/store"
)

// TestMutexMutualExclusion runs contended critical sections from six
// sessions spread over three nodes. Each section reads a counter, adds one
// in Go and writes it back guarded by IsOwner, and logs its entry and exit:
// the counter must count every section and no two sections may overlap.
func TestMutexMutualExclusion(t *testing.T) {
	c := newCluster(t, 3)
	const workers, rounds = 6, 10
	const counter = "/mutex-test/counter"

	type entry struct {
		worker int
		enter  bool
	}
	var (
		logMu sync.Mutex
		log   []entry
	)
	record := func(w int, enter bool) {
		logMu.Lock()
		log = append(log, entry{w, enter})
		logMu.Unlock()
	}

	// Sessions are opened up front so that a slow start does not count
	// against the critical sections.
	sessions := make([]*Session, workers)
	for w := range sessions {
		sessions[w] = newSession(t, c.nodes[w%3], WithTTL(5))
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := c.nodes[w%3]
			m := NewMutex(sessions[w], "/mutex-test/lock")
			for i := range rounds {
				if err := m.Lock(ctx); err != nil {
					t.Errorf("worker %d round %d: Lock: %v", w, i, err)
					return
				}
				record(w, true)
				resp, err := st.Get(ctx, counter)
				if err != nil {
					t.Errorf("worker %d: Get: %v", w, err)
					return
				}
				n := 0
				if len(resp.Kvs) == 1 {
					n, _ = strconv.Atoi(string(resp.Kvs[0].Value))
				}
				tr, err := st.Txn(ctx).If(m.IsOwner()).Then(store.OpPut(counter, strconv.Itoa(n+1))).Commit()
				if err != nil || !tr.Succeeded {
					t.Errorf("worker %d round %d: guarded write: succeeded %v, err %v", w, i, tr != nil && tr.Succeeded, err)
					return
				}
				record(w, false)
				if err := m.Unlock(ctx); err != nil {
					t.Errorf("worker %d: Unlock: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	resp, err := c.nodes[0].Get(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(resp.Kvs[0].Value), strconv.Itoa(workers*rounds); got != want {
		t.Errorf("counter = %s, want %s", got, want)
	}
	if got, want := len(log), 2*workers*rounds; got != want {
		t.Fatalf("log has %d entries, want %d", got, want)
	}
	for i := 0; i < len(log); i += 2 {
		in, out := log[i], log[i+1]
		if !in.enter || out.enter || in.worker != out.worker {
			t.Fatalf("critical sections overlap at log entries %d-%d: %+v then %+v", i, i+1, in, out)
		}
	}
	if got := keyCount(t, c.nodes[0], "/mutex-test/lock/"); got != 0 {
		t.Errorf("%d lock keys left after every Unlock, want 0", got)
	}
}

// TestMutexFairness checks that waiters acquire the lock in the order they
// called Lock, that is by their keys' create revisions.
func TestMutexFairness(t *testing.T) {
	c := newCluster(t, 3)
	const pfx = "/fair"
	ctx := ctxT(t)

	holder := NewMutex(newSession(t, c.nodes[0], WithTTL(5)), pfx)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}

	const waiters = 4
	var (
		orderMu sync.Mutex
		order   []int
	)
	done := make([]<-chan error, waiters)
	revs := make([]int64, waiters)
	for i := range waiters {
		m := NewMutex(newSession(t, c.nodes[(i+1)%3], WithTTL(5)), pfx)
		done[i] = result(func() error {
			if err := m.Lock(ctx); err != nil {
				return err
			}
			orderMu.Lock()
			order = append(order, i)
			orderMu.Unlock()
			return m.Unlock(ctx)
		})
		// Wait for this waiter's key before starting the next one, so
		// the call order is the create-revision order.
		waitKeys(t, c.nodes[0], pfx+"/", int64(i+2))
		r, err := c.nodes[0].Get(ctx, pfx+"/", withLastCreate()...)
		if err != nil {
			t.Fatal(err)
		}
		revs[i] = r.Kvs[0].CreateRevision
	}
	for i := 1; i < waiters; i++ {
		if revs[i] <= revs[i-1] {
			t.Fatalf("create revisions %v not increasing", revs)
		}
	}

	orderMu.Lock()
	early := len(order)
	orderMu.Unlock()
	if early != 0 {
		t.Fatalf("%d waiters acquired while the lock was held", early)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ch := range done {
		if err := waitErr(t, ch, 15*time.Second, fmt.Sprintf("waiter %d", i)); err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	if got, want := fmt.Sprint(order), "[0 1 2 3]"; got != want {
		t.Errorf("acquisition order = %s, want %s", got, want)
	}
}

// TestMutexTryLock covers TryLock on a free, a foreign-held and a
// self-held mutex.
func TestMutexTryLock(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxT(t)
	tests := []struct {
		name     string
		holder   bool // another Mutex locks first
		sameSess bool // ... with the same session
		want     error
		wantKeys int64 // keys under the prefix after TryLock
	}{
		{name: "free", want: nil, wantKeys: 1},
		{name: "held by another session", holder: true, want: ErrLocked, wantKeys: 1},
		{name: "held by the same session", holder: true, sameSess: true, want: nil, wantKeys: 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pfx := fmt.Sprintf("/trylock%d", i)
			sess := newSession(t, c.nodes[1], WithTTL(5))
			if tt.holder {
				hs := newSession(t, c.nodes[0], WithTTL(5))
				if tt.sameSess {
					hs = sess
				}
				if err := NewMutex(hs, pfx).Lock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			m := NewMutex(sess, pfx)
			err := m.TryLock(ctx)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("TryLock = %v, want %v", err, tt.want)
			}
			if got := keyCount(t, c.nodes[2], pfx+"/"); got != tt.wantKeys {
				t.Errorf("keys under %q = %d, want %d", pfx, got, tt.wantKeys)
			}
			owner := guardedPut(t, c.nodes[2], m.IsOwner(), pfx+"-data", "x")
			if got, want := owner, tt.want == nil; got != want {
				t.Errorf("IsOwner-guarded write succeeded = %v, want %v", got, want)
			}
			if tt.want == nil {
				if got, want := m.Key(), contenderKey(pfx+"/", sess.Lease()); got != want {
					t.Errorf("Key() = %q, want %q", got, want)
				}
				if m.Header() == nil || m.Header().Revision == 0 {
					t.Errorf("Header() = %+v, want a revision", m.Header())
				}
			}
		})
	}
}

// TestMutexLostSession checks what losing a session does: to a holder (its
// ownership ends, a waiter acquires) and to a waiter (Lock fails).
func TestMutexLostSession(t *testing.T) {
	c := newCluster(t, 3)
	revoke := func(t *testing.T, s *Session) {
		if _, err := s.Store().Revoke(ctxT(t), s.Lease()); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	tests := []struct {
		name string
		// lose loses a session: holder's (loseWaiter false) or waiter's.
		lose       func(t *testing.T, s *Session)
		loseWaiter bool
	}{
		{name: "holder lease revoked", lose: revoke},
		{name: "holder lease expires without keepalive", lose: func(t *testing.T, s *Session) {
			s.Orphan() // stop the keepalive; the lease runs out after its TTL
		}},
		{name: "waiter lease revoked", lose: revoke, loseWaiter: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			pfx := fmt.Sprintf("/lost%d", i)
			// The holder's lease is granted separately, with the minimum
			// TTL, and adopted by the session.
			g, err := c.nodes[0].Grant(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			hs := newSession(t, c.nodes[0], WithLease(g.ID))
			holder := NewMutex(hs, pfx)
			if err := holder.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			ws := newSession(t, c.nodes[1], WithTTL(1))
			waiter := NewMutex(ws, pfx)
			lockErr := result(func() error { return waiter.Lock(ctx) })
			waitKeys(t, c.nodes[2], pfx+"/", 2)

			lost, other := hs, ws
			if tt.loseWaiter {
				lost, other = ws, hs
			}
			tt.lose(t, lost)
			waitClosed(t, lost.Done(), 5*time.Second, "Done of the lost session")
			select {
			case <-other.Done():
				t.Fatal("Done of the other session closed")
			default:
			}

			if !tt.loseWaiter {
				if err := waitErr(t, lockErr, 15*time.Second, "waiter's Lock"); err != nil {
					t.Fatalf("waiter's Lock = %v, want nil", err)
				}
				if guardedPut(t, c.nodes[2], holder.IsOwner(), pfx+"-data", "old holder") {
					t.Error("write guarded by the lost holder's IsOwner succeeded")
				}
				if !guardedPut(t, c.nodes[2], waiter.IsOwner(), pfx+"-data", "new holder") {
					t.Error("write guarded by the new holder's IsOwner failed")
				}
				if err := holder.Lock(ctx); !errors.Is(err, ErrSessionExpired) {
					t.Errorf("Lock on the lost session = %v, want ErrSessionExpired", err)
				}
				return
			}
			if err := waitErr(t, lockErr, 10*time.Second, "waiter's Lock"); !errors.Is(err, ErrSessionExpired) {
				t.Fatalf("waiter's Lock = %v, want ErrSessionExpired", err)
			}
			if !guardedPut(t, c.nodes[2], holder.IsOwner(), pfx+"-data", "holder") {
				t.Error("write guarded by the holder's IsOwner failed")
			}
			if got := keyCount(t, c.nodes[2], pfx+"/"); got != 1 {
				t.Errorf("%d keys under %q, want the holder's only", got, pfx)
			}
		})
	}
}

// TestMutexLockContextCancel checks that a waiter whose context ends gives
// up its place: its key is removed and the lock stays with the holder.
func TestMutexLockContextCancel(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxT(t)
	holder := NewMutex(newSession(t, c.nodes[0], WithTTL(5)), "/cancel")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	waiter := NewMutex(newSession(t, c.nodes[1], WithTTL(5)), "/cancel")
	lockErr := result(func() error { return waiter.Lock(wctx) })
	waitKeys(t, c.nodes[2], "/cancel/", 2)
	cancel()
	if err := waitErr(t, lockErr, 10*time.Second, "Lock"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock = %v, want context.Canceled", err)
	}
	waitKeys(t, c.nodes[2], "/cancel/", 1)
	if !guardedPut(t, c.nodes[2], holder.IsOwner(), "/cancel-data", "x") {
		t.Error("holder lost ownership")
	}
}
