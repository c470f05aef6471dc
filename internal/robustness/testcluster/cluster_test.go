package testcluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every line with the same line until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// roundTrip writes a line through conn and waits up to limit for the echo.
func roundTrip(conn net.Conn, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := conn.SetDeadline(start.Add(limit)); err != nil {
		return 0, err
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, errors.New("garbled echo " + line)
	}
	return time.Since(start), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyLinkModes(t *testing.T) {
	tests := []struct {
		name string
		link Link // applied to both directions after the connection is up
		want string
	}{
		{"open", Link{}, "echo"},
		{"refuse", Link{Mode: Refuse}, "closed"},
		{"blackhole", Link{Mode: Blackhole}, "timeout"},
		{"drop all", Link{Drop: 1}, "closed"},
		{"delay", Link{Delay: 150 * time.Millisecond}, "slow echo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := echoServer(t)
			nw := newNetwork(2, 1)
			var wg sync.WaitGroup
			p, err := startProxy(nw, 0, 1, target, &wg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				nw.mu.Lock()
				nw.closed = true
				for pc := range nw.conns {
					pc.close()
				}
				nw.mu.Unlock()
				_ = p.ln.Close()
				wg.Wait()
			}()
			conn, err := net.Dial("tcp", p.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := roundTrip(conn, 5*time.Second); err != nil {
				t.Fatalf("round trip before the fault: %v", err)
			}
			nw.mu.Lock()
			nw.links[0][1], nw.links[1][0] = tt.link, tt.link
			if tt.link.Mode == Refuse {
				nw.closeBetweenLocked(0, 1)
			}
			nw.mu.Unlock()
			d, err := roundTrip(conn, 600*time.Millisecond)
			var got string
			switch {
			case err == nil && d >= 2*tt.link.Delay && tt.link.Delay > 0:
				got = "slow echo"
			case err == nil:
				got = "echo"
			case isTimeout(err):
				got = "timeout"
			default:
				got = "closed"
			}
			if got != tt.want {
				t.Fatalf("after setting %+v: got %s (rtt %v, err %v), want %s", tt.link, got, d, err, tt.want)
			}
		})
	}
}

func TestProxyRefusesNewConnections(t *testing.T) {
	target := echoServer(t)
	nw := newNetwork(2, 1)
	var wg sync.WaitGroup
	p, err := startProxy(nw, 0, 1, target, &wg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = p.ln.Close()
		nw.mu.Lock()
		for pc := range nw.conns {
			pc.close()
		}
		nw.mu.Unlock()
		wg.Wait()
	}()
	nw.mu.Lock()
	nw.isolated[1] = true
	nw.mu.Unlock()
	conn, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := roundTrip(conn, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("round trip to an isolated node: err %v, want the connection closed", err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestClusterFaults drives the harness through the faults the nemesis uses
// and checks the cluster behaves as the fault implies.
func TestClusterFaults(t *testing.T) {
	c := New(t, Options{Nodes: 3, Seed: 7})
	leader, err := c.WaitLeader(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(leader).Put(ctx(t), "k", "v1"); err != nil {
		t.Fatalf("Put: %v", err)
	}

	t.Run("isolated leader is replaced", func(t *testing.T) {
		c.Partition(Refuse, []int{leader})
		deadline := time.Now().Add(20 * time.Second)
		for {
			l := -1
			for i := range c.N() {
				if i != leader && c.Node(i).Status().RaftState == "Leader" {
					l = i
				}
			}
			if l >= 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no new leader in the majority within 20s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.Heal()
		if _, err := c.WaitLeader(20 * time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("killed follower catches up after restart", func(t *testing.T) {
		l, err := c.WaitLeader(20 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		f := (l + 1) % c.N()
		if err := c.Kill(f); err != nil {
			t.Fatal(err)
		}
		if c.Node(f) != nil {
			t.Fatal("Node returns a killed node")
		}
		if _, err := c.Node(l).Put(ctx(t), "k", "v2"); err != nil {
			t.Fatalf("Put with a follower down: %v", err)
		}
		if err := c.Restart(f); err != nil {
			t.Fatal(err)
		}
		got, err := c.Node(f).Get(ctx(t), "k")
		if err != nil {
			t.Fatalf("Get on the restarted node: %v", err)
		}
		if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v2" {
			t.Fatalf("restarted node reads %v, want v2", got.Kvs)
		}
	})

	t.Run("one-way block from the leader", func(t *testing.T) {
		l, err := c.WaitLeader(20 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i := range c.N() {
			if i != l {
				c.SetLink(l, i, Link{Mode: Blackhole})
			}
		}
		// The followers hear nothing from the leader and elect another.
		deadline := time.Now().Add(20 * time.Second)
		for c.Leader() == l || c.Leader() < 0 {
			if time.Now().After(deadline) {
				t.Fatal("followers did not replace a leader they cannot hear")
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.Heal()
		l2, err := c.WaitLeader(20 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Node(l2).Put(ctx(t), "k", "v3"); err != nil {
			t.Fatalf("Put after heal: %v", err)
		}
	})

	t.Run("full restart keeps data", func(t *testing.T) {
		for i := range c.N() {
			if err := c.Kill(i); err != nil {
				t.Fatal(err)
			}
		}
		for i := range c.N() {
			if err := c.Restart(i); err != nil {
				t.Fatal(err)
			}
		}
		l, err := c.WaitLeader(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Node(l).Get(ctx(t), "k")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v3" {
			t.Fatalf("after full restart: %v, want v3", got.Kvs)
		}
	})
}
