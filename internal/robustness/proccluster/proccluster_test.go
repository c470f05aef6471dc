//go:build linux

package proccluster

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if payload, ok := Child(); ok {
		// A child: announce a made-up address and idle until killed (or
		// until the parent closes standard input).
		if err := Ready("child-" + payload); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		select {}
	}
	goleak.VerifyTestMain(m)
}

func newCluster(t *testing.T, n int) *Cluster {
	return New(t, Options{N: n, Payload: func(i int) string { return fmt.Sprint(i) }})
}

// state returns the state letter of pid in /proc (R, S, T for stopped...).
func state(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[0]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	c := newCluster(t, 2)
	for i := range 2 {
		if err := c.Start(i); err != nil {
			t.Fatal(err)
		}
		if addr, inc := c.Addr(i); addr != fmt.Sprintf("child-%d", i) || inc != 1 {
			t.Fatalf("Addr(%d) = %q, %d", i, addr, inc)
		}
	}
	pid := c.PID(0)
	if err := c.Pause(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGSTOP", func() bool { return state(t, pid) == "T" })
	if !c.Paused(0) {
		t.Fatal("Paused(0) = false after Pause")
	}
	if err := c.Resume(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGCONT", func() bool { return state(t, pid) != "T" })
	// SIGKILL works on a paused child too.
	if err := c.Pause(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	if Alive(pid) || c.Up(0) {
		t.Fatalf("pid %d alive after Kill", pid)
	}
	if err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	if _, inc := c.Addr(0); inc != 2 {
		t.Fatalf("incarnation %d after a restart, want 2", inc)
	}
	if u := c.Unexpected(); len(u) > 0 {
		t.Fatalf("unexpected exits: %v", u)
	}
}

// TestNoOrphans ends a test early (as t.Fatal does) with children running
// and one paused, and checks none survives it.
func TestNoOrphans(t *testing.T) {
	var pids []int
	t.Run("ends early", func(t *testing.T) {
		c := newCluster(t, 3)
		for i := range 3 {
			if err := c.Start(i); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, c.PID(i))
		}
		if err := c.Pause(1); err != nil {
			t.Fatal(err)
		}
		t.SkipNow() // runtime.Goexit, like t.Fatal: only cleanups run
	})
	if len(pids) != 3 {
		t.Fatalf("started %d children", len(pids))
	}
	for _, pid := range pids {
		if Alive(pid) {
			t.Errorf("child %d survived its test", pid)
		}
	}
}

// TestChildExitsWithoutParent closes a child's standard input, as the
// parent's death would, and checks the child exits by itself.
func TestChildExitsWithoutParent(t *testing.T) {
	c := newCluster(t, 1)
	if err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	pid := c.PID(0)
	c.mu.Lock()
	p := c.procs[0]
	c.mu.Unlock()
	_ = p.stdin.Close()
	<-p.done
	if Alive(pid) {
		t.Fatalf("child %d still alive", pid)
	}
	if u := c.Unexpected(); len(u) != 1 || !strings.Contains(u[0], "exit status 3") {
		t.Fatalf("Unexpected() = %q, want the child's own exit with status 3", u)
	}
}
