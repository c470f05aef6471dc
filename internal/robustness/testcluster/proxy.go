package testcluster

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Mode is what a blocked link does with the traffic it should carry.
type Mode int

const (
	// Open delivers traffic (possibly delayed or dropped, see Link).
	Open Mode = iota
	// Refuse closes every connection carrying the link at once, closes new
	// connections whose first direction is blocked as soon as they are
	// accepted, and closes a connection the moment it would deliver data in
	// the blocked direction. Peers see fast connection errors.
	Refuse
	// Blackhole silently discards the link's data; connections stay open
	// and their callers wait for their own timeouts, as across a real
	// network partition. A connection that lost data is "poisoned": it
	// never delivers anything again, and Heal closes it (a TCP stream with
	// a hole in it would otherwise deliver garbage).
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Open:
		return "open"
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	}
	return "mode?"
}

// Link is the fault state of one direction between two nodes: the bytes
// node From sends to node To, whichever node opened the connection.
type Link struct {
	Mode Mode
	// Delay is added before each chunk is delivered, plus a uniformly
	// random extra up to Jitter.
	Delay, Jitter time.Duration
	// Drop is the probability (0..1) that a chunk makes the proxy close the
	// connection instead of delivering it.
	Drop float64
}

// network is the fault state of every directed link and the set of live
// proxied connections.
type network struct {
	mu       sync.Mutex
	links    [][]Link // [from][to]
	isolated []bool   // a killed node: all its links refuse
	rngs     [][]*rand.Rand
	conns    map[*proxyConn]struct{}
	closed   bool
}

func newNetwork(n int, seed uint64) *network {
	nw := &network{
		links:    make([][]Link, n),
		isolated: make([]bool, n),
		rngs:     make([][]*rand.Rand, n),
		conns:    make(map[*proxyConn]struct{}),
	}
	for i := range n {
		nw.links[i] = make([]Link, n)
		nw.rngs[i] = make([]*rand.Rand, n)
		for j := range n {
			// One generator per link, derived from the seed, so drop and
			// jitter decisions do not depend on how links interleave.
			nw.rngs[i][j] = rand.New(rand.NewPCG(seed, uint64(i*n+j+1)))
		}
	}
	return nw
}

// verdict is what a pipe does with one chunk.
type verdict struct {
	mode  Mode
	drop  bool
	delay time.Duration
}

// decide returns the fate of the next chunk from -> to. It is called once
// per chunk, so drop probability and jitter are drawn per chunk.
func (nw *network) decide(from, to int) verdict {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.isolated[from] || nw.isolated[to] {
		return verdict{mode: Refuse}
	}
	l := nw.links[from][to]
	v := verdict{mode: l.Mode, delay: l.Delay}
	rng := nw.rngs[from][to]
	if l.Jitter > 0 {
		v.delay += time.Duration(rng.Int64N(int64(l.Jitter)))
	}
	if l.Drop > 0 && rng.Float64() < l.Drop {
		v.drop = true
	}
	return v
}

// mode returns the effective mode of from -> to.
func (nw *network) mode(from, to int) Mode {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.isolated[from] || nw.isolated[to] {
		return Refuse
	}
	return nw.links[from][to].Mode
}

// closeBetweenLocked closes every connection between a and b, whichever
// opened it. Callers hold nw.mu.
func (nw *network) closeBetweenLocked(a, b int) {
	for pc := range nw.conns {
		if (pc.from == a && pc.to == b) || (pc.from == b && pc.to == a) {
			pc.close()
		}
	}
}

// proxy forwards connections node from opens to node to.
type proxy struct {
	nw       *network
	from, to int
	target   string // node to's bind address
	ln       net.Listener
	wg       *sync.WaitGroup
}

// proxyConn is one proxied connection: down is the side node from dialled,
// up the proxy's connection to node to.
type proxyConn struct {
	from, to int
	down, up net.Conn
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	poisoned bool
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		close(pc.done)
		_ = pc.down.Close()
		_ = pc.up.Close()
	})
}

func (pc *proxyConn) poison() {
	pc.mu.Lock()
	pc.poisoned = true
	pc.mu.Unlock()
}

func (pc *proxyConn) isPoisoned() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.poisoned
}

func startProxy(nw *network, from, to int, target string, wg *sync.WaitGroup) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{nw: nw, from: from, to: to, target: target, ln: ln, wg: wg}
	wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // transient (EMFILE...): retry
			continue
		}
		if p.nw.mode(p.from, p.to) == Refuse {
			_ = c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil { // the node is down: the dialer sees the connection close
			_ = c.Close()
			continue
		}
		pc := &proxyConn{from: p.from, to: p.to, down: c, up: up, done: make(chan struct{})}
		p.nw.mu.Lock()
		if p.nw.closed {
			p.nw.mu.Unlock()
			pc.close()
			return
		}
		p.nw.conns[pc] = struct{}{}
		p.wg.Add(2)
		p.nw.mu.Unlock()
		go p.pipe(pc, c, up, p.from, p.to)
		go p.pipe(pc, up, c, p.to, p.from)
	}
}

// pipe copies src to dst chunk by chunk, applying the fault state of the
// link from -> to to each chunk.
func (p *proxy) pipe(pc *proxyConn, src, dst net.Conn, from, to int) {
	defer p.wg.Done()
	defer func() {
		pc.close()
		p.nw.mu.Lock()
		delete(p.nw.conns, pc)
		p.nw.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			v := p.nw.decide(from, to)
			switch {
			case v.mode == Refuse || v.drop:
				return
			case v.mode == Blackhole:
				pc.poison()
				continue
			case pc.isPoisoned():
				continue
			}
			if v.delay > 0 {
				t := time.NewTimer(v.delay)
				select {
				case <-t.C:
				case <-pc.done:
					t.Stop()
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // EOF or a closed connection: close both sides
			return
		}
	}
}
