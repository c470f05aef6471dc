package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedkv/store"
)

// memSnap is the process's memory at one moment.
type memSnap struct {
	heapAlloc, heapInuse, sys uint64
	rss                       uint64 // VmRSS; 0 where /proc is missing
	rssAnon, rssFile          uint64 // its anonymous and file-backed (mmap) parts
}

// memNow reads the heap statistics and RSS, after a full GC if gc is set.
func memNow(gc bool) memSnap {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	anon, _ := procField("/proc/self/status", "RssAnon:")
	file, _ := procField("/proc/self/status", "RssFile:")
	return memSnap{heapAlloc: ms.HeapAlloc, heapInuse: ms.HeapInuse, sys: ms.Sys, rss: readRSS(),
		rssAnon: anon * 1024, rssFile: file * 1024}
}

// readRSS returns VmRSS from /proc/self/status in bytes, 0 if unavailable.
func readRSS() uint64 {
	v, _ := procField("/proc/self/status", "VmRSS:")
	return v * 1024
}

// procField returns the first number after prefix in a /proc file.
func procField(path, prefix string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				v, err := strconv.ParseUint(fields[0], 10, 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// loadRun is the outcome of loadKeys.
type loadRun struct {
	keys, txns int
	elapsed    time.Duration
	lat        latency // per txn
	maxRev     int64
	errs       int64
	firstErr   error
}

// loadTxnOps is the number of puts per txn when loading (MaxTxnOps default).
const loadTxnOps = 128

// loadKeys writes keys 0..n-1 through s in txns of loadTxnOps puts, with
// workers txns in flight.
func loadKeys(ctx context.Context, s *store.Store, n, workers int) loadRun {
	batches := (n + loadTxnOps - 1) / loadTxnOps
	var next atomic.Int64
	var maxRev, errs atomic.Int64
	var firstErr atomic.Value
	hists := make([]*hist, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			h := new(hist)
			hists[w] = h
			ops := make([]store.Op, 0, loadTxnOps)
			for ctx.Err() == nil {
				b := int(next.Add(1) - 1)
				if b >= batches {
					return
				}
				ops = ops[:0]
				for i := b * loadTxnOps; i < min(n, (b+1)*loadTxnOps); i++ {
					ops = append(ops, store.OpPut(keyName(i), benchValue))
				}
				t0 := time.Now()
				resp, err := s.Txn(ctx).Then(ops...).Commit()
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return // a hole in the key space would make later checks fail anyway
				}
				h.record(time.Since(t0))
				for rev := maxRev.Load(); resp.Header.Revision > rev && !maxRev.CompareAndSwap(rev, resp.Header.Revision); rev = maxRev.Load() {
				}
			}
		}(w)
	}
	wg.Wait()
	run := loadRun{keys: n, txns: batches, elapsed: time.Since(start), maxRev: maxRev.Load(), errs: errs.Load()}
	total := new(hist)
	for _, h := range hists {
		total.merge(h)
	}
	run.lat = total.summary()
	if err, ok := firstErr.Load().(error); ok {
		run.firstErr = err
	}
	if run.firstErr == nil && ctx.Err() != nil {
		run.firstErr, run.errs = ctx.Err(), run.errs+1
	}
	return run
}

// memoryWorkload loads n keys × 256 B through the leader, waits until every
// node has applied them, then measures the heap and RSS of the process.
// Heap and RSS cover all nodes of the cluster (and this program), so the
// per-node figures divide by the node count.
func memoryWorkload(ctx context.Context, c *cluster, leader, n int, memprofile string) (Result, error) {
	nodes := len(c.nodes)
	r := Result{Workload: "memory-1M", Nodes: nodes, Clients: 16, Placement: "Txn of 128 puts via the leader"}
	debug.FreeOSMemory()
	base := memNow(true)
	run := loadKeys(ctx, c.nodes[leader], n, 16)
	r.Ops, r.Errors, r.Seconds = int64(run.keys), run.errs, run.elapsed.Seconds()
	r.OpsPerSec = float64(run.keys) / run.elapsed.Seconds()
	r.setLatency(run.lat)
	if run.firstErr != nil {
		r.note("first error: %v", run.firstErr)
		return r, nil
	}
	t0 := time.Now()
	if err := c.waitApplied(ctx, run.maxRev, 5*time.Minute); err != nil {
		return r, err
	}
	catchUp := time.Since(t0)
	after := memNow(true)
	debug.FreeOSMemory()
	scav := memNow(false)
	if memprofile != "" {
		if err := writeHeapProfile(memprofile); err != nil {
			return r, err
		}
	}
	kl := len(keyName(n - 1)) // keys 0..n-1 all have this length below 10^7
	raw := float64(n) * float64(kl+valueSize)
	perNode := float64(after.rss) / float64(nodes)
	ratio := perNode / raw
	r.Clients = 16
	r.note("ops/s = keys/s loading %s keys, latency per txn of 128; followers applied %s later", fmtCount(float64(n)), fmtMs(ms(catchUp)))
	r.note("raw %s (%s × %d B)", fmtBytes(raw), fmtCount(float64(n)), kl+valueSize)
	r.note("after GC, whole process (%d node(s)): heap alloc %s, heap in use %s, RSS %s", nodes, fmtBytes(float64(after.heapAlloc)), fmtBytes(float64(after.heapInuse)), fmtBytes(float64(after.rss)))
	r.note("RSS = %s anonymous + %s file-backed (bolt mmap)", fmtBytes(float64(after.rssAnon)), fmtBytes(float64(after.rssFile)))
	r.note("per node (÷%d): heap alloc %s, RSS %s = %.2fx raw", nodes, fmtBytes(float64(after.heapAlloc)/float64(nodes)), fmtBytes(perNode), ratio)
	r.note("RSS before loading %s; per node net of it %.2fx raw; RSS after FreeOSMemory %s", fmtBytes(float64(base.rss)),
		(float64(after.rss)-float64(base.rss))/float64(nodes)/raw, fmtBytes(float64(scav.rss)))
	r.metric("keys", float64(n))
	r.metric("raw_bytes", raw)
	r.metric("heap_alloc_bytes", float64(after.heapAlloc))
	r.metric("heap_inuse_bytes", float64(after.heapInuse))
	r.metric("rss_bytes", float64(after.rss))
	r.metric("heap_alloc_bytes_per_node", float64(after.heapAlloc)/float64(nodes))
	r.metric("rss_bytes_per_node", perNode)
	r.metric("rss_per_node_over_raw", ratio)
	r.metric("rss_anon_bytes", float64(after.rssAnon))
	r.metric("rss_file_bytes", float64(after.rssFile))
	r.metric("rss_before_load_bytes", float64(base.rss))
	r.metric("rss_after_free_os_memory_bytes", float64(scav.rss))
	r.metric("follower_catch_up_ms", ms(catchUp))
	return r, nil
}

// writeHeapProfile writes a heap profile (after a GC) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// restartWorkload closes a follower (or the single node) of a loaded
// cluster, reopens it from its directory and times Open until the node
// serves a linearizable Get of lastKey, the last key written.
func restartWorkload(ctx context.Context, c *cluster, leader int, lastKey string, wantKeys int) (Result, error) {
	i := c.follower(leader)
	r := Result{Workload: "restart-1M", Nodes: len(c.nodes), Clients: 1, Ops: 1}
	r.Placement = "a follower restarted"
	if i == leader {
		r.Placement = "the single node restarted"
	}
	snaps, _ := filepath.Glob(filepath.Join(c.cfgs[i].Dir, "snapshots", "*"))
	target := c.nodes[leader].Status().AppliedIndex
	t0 := time.Now()
	if err := c.stop(i); err != nil {
		return r, fmt.Errorf("close: %w", err)
	}
	closeTime := time.Since(t0)
	t0 = time.Now()
	if err := c.start(i); err != nil {
		return r, err
	}
	opened := time.Since(t0)
	s := c.nodes[i]
	// Watch the node's own view meanwhile: when it learns the leader and
	// when it has applied everything the cluster had before the restart.
	var knownLeader, caughtUp time.Duration
	done := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for knownLeader == 0 || caughtUp == 0 {
			st := s.Status()
			if knownLeader == 0 && st.LeaderID != "" {
				knownLeader = time.Since(t0)
			}
			if caughtUp == 0 && st.AppliedIndex >= target {
				caughtUp = time.Since(t0)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	stopPoll := sync.OnceFunc(func() { close(done); <-polled })
	defer stopPoll()
	var attempts int
	var lastErr error
	for {
		attempts++
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := s.Get(gctx, lastKey)
		cancel()
		if err == nil && len(resp.Kvs) == 1 {
			break
		}
		if err == nil {
			err = fmt.Errorf("%w: %s", errMissing, lastKey)
		}
		lastErr = err
		if ctx.Err() != nil || time.Since(t0) > 2*time.Minute {
			r.Errors = 1
			r.note("not serving after %v: %v", time.Since(t0).Round(time.Millisecond), lastErr)
			return r, nil
		}
		time.Sleep(time.Millisecond)
	}
	total := time.Since(t0)
	stopPoll()
	if caughtUp == 0 && s.Status().AppliedIndex >= target {
		caughtUp = total // between the last poll and the successful Get
	}
	r.Seconds = total.Seconds()
	r.setLatency(latency{N: 1, P50: total, P99: total, Max: total})
	st := s.Status()
	r.note("Open %s + first linearizable Get %s (%d attempt(s)); Close took %s", fmtMs(ms(opened)), fmtMs(ms(total-opened)), attempts, fmtMs(ms(closeTime)))
	r.note("the node knew the leader after %s and had applied the pre-restart raft index %d after %s", fmtMs(ms(knownLeader)), target, fmtMs(ms(caughtUp)))
	r.note("%d snapshot dir entries before restart; %s keys on the node after", len(snaps), fmtCount(float64(st.Keys)))
	if st.Keys < wantKeys {
		r.note("expected %s keys", fmtCount(float64(wantKeys)))
	}
	if lastErr != nil {
		r.note("last error while waiting: %v", lastErr)
	}
	r.metric("restart_ms", ms(total))
	r.metric("open_ms", ms(opened))
	r.metric("close_ms", ms(closeTime))
	r.metric("leader_known_ms", ms(knownLeader))
	r.metric("caught_up_ms", ms(caughtUp))
	r.metric("keys_after", float64(st.Keys))
	if _, err := c.waitLeader(ctx, 30*time.Second); err != nil {
		return r, err
	}
	return r, nil
}
