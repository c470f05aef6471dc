//go:build linux

package proccluster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvChild is the environment variable that makes the test binary a child;
// its value is the parent's payload.
const EnvChild = "EMBEDKV_PROC_CHILD"

// Child returns the payload the parent passed, if this process is a child.
func Child() (string, bool) { return os.LookupEnv(EnvChild) }

// Ready tells the parent the child serves at addr, and makes the child exit
// when its standard input ends (the parent closed it or died). Call it once,
// from a child.
func Ready(addr string) error {
	f := os.NewFile(3, "ready")
	if f == nil {
		return errors.New("proccluster: no readiness pipe (fd 3)")
	}
	_, err := fmt.Fprintf(f, "READY %s\n", addr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3) // the parent is gone: never outlive it
	}()
	return err
}

// Options configures New.
type Options struct {
	// N is the number of nodes.
	N int
	// Payload returns node i's payload (EnvChild), for every start.
	Payload func(i int) string
	// LogDir receives node i's standard output and error, appended across
	// restarts, as n<i+1>.log (default: a t.TempDir()).
	LogDir string
	// ReadyTimeout bounds the wait for a child's Ready (default 60 s).
	ReadyTimeout time.Duration
}

// Cluster is a set of child processes, one per node, each up or down and,
// while up, running or paused. Its methods are safe for concurrent use.
type Cluster struct {
	t    testing.TB
	opts Options
	wg   sync.WaitGroup

	mu         sync.Mutex
	procs      []*proc // nil while down
	incs       []int   // starts so far
	unexpected []string
	closed     bool
}

type proc struct {
	cmd    *exec.Cmd
	stdin  *os.File // the parent's end of the child's standard input
	addr   string
	paused bool
	killed bool          // the exit was asked for
	done   chan struct{} // closed once the child exited and was reaped
}

// New returns a cluster of opts.N nodes, all down, and arranges for every
// child to be killed when the test ends.
func New(t testing.TB, opts Options) *Cluster {
	if opts.LogDir == "" {
		opts.LogDir = t.TempDir()
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, opts: opts, procs: make([]*proc, opts.N), incs: make([]int, opts.N)}
	t.Cleanup(c.Close)
	return c
}

// N returns the number of nodes.
func (c *Cluster) N() int { return c.opts.N }

// LogPath returns the file holding node i's output.
func (c *Cluster) LogPath(i int) string {
	return filepath.Join(c.opts.LogDir, fmt.Sprintf("n%d.log", i+1))
}

// Start starts node i's process and waits for its Ready. It is an error
// to start a node that is up.
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("proccluster: closed")
	}
	if c.procs[i] != nil {
		c.mu.Unlock()
		return fmt.Errorf("proccluster: n%d is already up", i+1)
	}
	c.mu.Unlock()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(c.LogPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer inR.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		_ = inW.Close()
		return err
	}
	defer readyR.Close()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), EnvChild+"="+c.opts.Payload(i))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	_ = readyW.Close()
	if err != nil {
		_ = inW.Close()
		return fmt.Errorf("proccluster: start n%d: %w", i+1, err)
	}
	p := &proc{cmd: cmd, stdin: inW, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed { // Close ran meanwhile: it did not see p
		c.mu.Unlock()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		_ = inW.Close()
		return errors.New("proccluster: closed")
	}
	c.procs[i] = p
	c.incs[i]++
	c.wg.Add(1)
	c.mu.Unlock()
	go c.reap(i, p)

	// Wait for "READY <addr>" on the readiness pipe.
	_ = readyR.SetReadDeadline(time.Now().Add(c.opts.ReadyTimeout))
	s, rerr := bufio.NewReader(readyR).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(s), "READY ")
	if rerr != nil || !ok || addr == "" {
		_ = c.Kill(i)
		return fmt.Errorf("proccluster: n%d did not get ready (%v, %q); see %s", i+1, rerr, s, c.LogPath(i))
	}
	c.mu.Lock()
	p.addr = addr
	c.mu.Unlock()
	return nil
}

// reap waits for p to exit and records an exit nobody asked for.
func (c *Cluster) reap(i int, p *proc) {
	defer c.wg.Done()
	err := p.cmd.Wait()
	c.mu.Lock()
	if !p.killed {
		c.unexpected = append(c.unexpected, fmt.Sprintf("n%d (pid %d) exited on its own: %v", i+1, p.cmd.Process.Pid, err))
	}
	if c.procs[i] == p {
		c.procs[i] = nil
	}
	c.mu.Unlock()
	_ = p.stdin.Close()
	close(p.done)
}

// Addr returns node i's control address and incarnation (starts so far),
// or "" and 0 while it is down or not ready.
func (c *Cluster) Addr(i int) (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[i]; p != nil && p.addr != "" {
		return p.addr, c.incs[i]
	}
	return "", 0
}

// Up reports whether node i's process runs (paused or not).
func (c *Cluster) Up(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[i] != nil
}

// Paused reports whether node i is up and stopped with SIGSTOP.
func (c *Cluster) Paused(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[i] != nil && c.procs[i].paused
}

// PID returns node i's process ID, or 0 while it is down.
func (c *Cluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[i]; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Kill sends SIGKILL to node i's process group and waits until the child
// is reaped. It is a no-op for a node that is down.
func (c *Cluster) Kill(i int) error { return c.kill([]int{i}) }

// KillAll sends SIGKILL to every node that is up, all at once, and waits
// until they are reaped.
func (c *Cluster) KillAll() error {
	all := make([]int, c.opts.N)
	for i := range all {
		all[i] = i
	}
	return c.kill(all)
}

func (c *Cluster) kill(nodes []int) error {
	type victim struct {
		i int
		p *proc
	}
	var vs []victim
	c.mu.Lock()
	for _, i := range nodes {
		if p := c.procs[i]; p != nil {
			p.killed = true
			vs = append(vs, victim{i, p})
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, v := range vs {
		err := syscall.Kill(-v.p.cmd.Process.Pid, syscall.SIGKILL)
		if err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: already gone, being reaped
			errs = append(errs, fmt.Errorf("proccluster: SIGKILL n%d: %w", v.i+1, err))
		}
	}
	timeout := time.After(30 * time.Second)
	for _, v := range vs {
		select {
		case <-v.p.done:
		case <-timeout:
			errs = append(errs, fmt.Errorf("proccluster: n%d (pid %d) not reaped 30s after SIGKILL", v.i+1, v.p.cmd.Process.Pid))
		}
	}
	return errors.Join(errs...)
}

// Pause stops node i with SIGSTOP.
func (c *Cluster) Pause(i int) error { return c.signal(i, syscall.SIGSTOP, true) }

// Resume continues node i with SIGCONT.
func (c *Cluster) Resume(i int) error { return c.signal(i, syscall.SIGCONT, false) }

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[i]
	if p == nil {
		return fmt.Errorf("proccluster: n%d is down", i+1)
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("proccluster: %v to n%d: %w", sig, i+1, err)
	}
	p.paused = paused
	return nil
}

// Unexpected lists the children that exited without being killed.
func (c *Cluster) Unexpected() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.unexpected...)
}

// Close kills every child and waits for them. It is idempotent.
func (c *Cluster) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	if err := c.KillAll(); err != nil {
		c.t.Errorf("closing the process cluster: %v", err)
	}
	c.wg.Wait()
}

// Alive reports whether a process with this ID exists (a zombie counts as
// gone only once reaped).
func Alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
