package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedkv/store"
	"github.com/embedkv/store/internal/proccpu"
)

// valueSize is the value length of every workload (as issue 7's etcd runs).
const valueSize = 256

// benchValue is one random printable 256-byte value shared by all writes
// (etcd's benchmark tool also writes one random value everywhere).
var benchValue = func() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, valueSize)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}()

// keyName is the i-th key of the key space: 11 bytes for i below 10^7.
func keyName(i int) string { return fmt.Sprintf("key-%07d", i) }

// errMissing marks a read that did not find a key known to be written.
var errMissing = errors.New("key missing")

// clientRun is the outcome of runClients.
type clientRun struct {
	ops, errs int64
	elapsed   time.Duration
	cpu       time.Duration // process CPU used during the run; 0 if unknown
	lat       latency
	firstErr  error
}

// runClients runs op in clients goroutines for d; client g is bound to node
// (first+g) mod n. Every call is timed; failed calls are counted, not timed.
func runClients(ctx context.Context, c *cluster, first, clients int, d time.Duration,
	op func(ctx context.Context, s *store.Store, rng *rand.Rand) error) clientRun {
	opCtx, cancel := context.WithTimeout(ctx, d+time.Minute)
	defer cancel()
	var stop atomic.Bool
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	go func() {
		select {
		case <-ctx.Done():
			stop.Store(true)
		case <-opCtx.Done():
		}
	}()
	hists := make([]*hist, clients)
	errCounts := make([]int64, clients)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	cpu0, cpuOK := proccpu.Used()
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			h := new(hist)
			hists[g] = h
			s := c.node(first, g)
			rng := rand.New(rand.NewPCG(uint64(g), uint64(start.UnixNano())))
			for !stop.Load() {
				t0 := time.Now()
				err := op(opCtx, s, rng)
				if err != nil {
					errCounts[g]++
					firstErr.CompareAndSwap(nil, err)
					if ctx.Err() != nil {
						return
					}
					continue
				}
				h.record(time.Since(t0))
			}
		}(g)
	}
	wg.Wait()
	run := clientRun{elapsed: time.Since(start)}
	if cpu1, _ := proccpu.Used(); cpuOK {
		run.cpu = cpu1 - cpu0
	}
	total := new(hist)
	for g, h := range hists {
		total.merge(h)
		run.errs += errCounts[g]
	}
	run.ops = int64(total.n)
	run.lat = total.summary()
	if err, ok := firstErr.Load().(error); ok {
		run.firstErr = err
	}
	return run
}

// clientResult turns a clientRun into a table row.
func clientResult(name string, c *cluster, clients int, placement string, run clientRun) Result {
	r := Result{Workload: name, Nodes: len(c.nodes), Clients: clients, Placement: placement,
		Ops: run.ops, Errors: run.errs, Seconds: run.elapsed.Seconds()}
	if run.elapsed > 0 {
		r.OpsPerSec = float64(run.ops) / run.elapsed.Seconds()
	}
	r.setLatency(run.lat)
	if run.cpu > 0 && run.ops > 0 {
		r.CPUUsPerOp = float64(run.cpu.Microseconds()) / float64(run.ops)
	}
	if run.firstErr != nil {
		r.note("first error: %v", run.firstErr)
	}
	return r
}

// onLeader is the placement of a run whose clients all use the leader, as
// etcd's reference figures used one member's in-process client.
const onLeader = "all on the leader"

// placementName describes where the clients of a multi-client run are.
func placementName(c *cluster, clients int) string {
	if len(c.nodes) == 1 || clients == 1 {
		return "single node"
	}
	return "round-robin over all nodes"
}

// putWorkload writes random keys of the key space with clients goroutines.
func putWorkload(ctx context.Context, c *cluster, name string, first, clients int, placement string, keys []string, d time.Duration) Result {
	run := runClients(ctx, c, first, clients, d, func(ctx context.Context, s *store.Store, rng *rand.Rand) error {
		_, err := s.Put(ctx, keys[rng.IntN(len(keys))], benchValue)
		return err
	})
	return clientResult(name, c, clients, placement, run)
}

// getWorkload reads random keys of the preloaded key space; every read must
// find its key.
func getWorkload(ctx context.Context, c *cluster, name string, first, clients int, keys []string, d time.Duration, serializable bool) Result {
	var opts []store.OpOption
	if serializable {
		opts = append(opts, store.WithSerializable())
	}
	run := runClients(ctx, c, first, clients, d, func(ctx context.Context, s *store.Store, rng *rand.Rand) error {
		k := keys[rng.IntN(len(keys))]
		r, err := s.Get(ctx, k, opts...)
		if err == nil && (len(r.Kvs) != 1 || len(r.Kvs[0].Value) != valueSize) {
			return fmt.Errorf("%w: %s", errMissing, k)
		}
		return err
	})
	return clientResult(name, c, clients, placementName(c, clients), run)
}

// watchRun is the outcome of watchFanout.
type watchRun struct {
	toAll    []time.Duration // per round: from calling Put until every watcher has the event
	putLat   []time.Duration // per round: the Put call alone
	errs     int64
	firstErr error
	create   time.Duration // time to open all watches
	heapPerW float64       // live heap bytes per watcher (after GC)
	rssDelta float64       // resident memory added by the watchers
}

// watchFanout opens watchers watches of one key on node w, then rounds
// times writes the key through node writer and measures the time until all
// watchers have received that event. The watchers are read by GOMAXPROCS
// goroutines, each receiving from its share of the channels in turn, so the
// time of the last receive is the time the slowest watcher got the event.
func watchFanout(ctx context.Context, c *cluster, w, writer, watchers, rounds int, key string) watchRun {
	var run watchRun
	fail := func(err error) {
		run.errs++
		if run.firstErr == nil {
			run.firstErr = err
		}
	}
	m0 := memNow(true)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	chans := make([]store.WatchChan, watchers)
	for i := range chans {
		chans[i] = c.nodes[w].Watch(wctx, key)
	}
	run.create = time.Since(t0)
	m1 := memNow(true)
	run.heapPerW = (float64(m1.heapAlloc) - float64(m0.heapAlloc)) / float64(watchers)
	run.rssDelta = float64(m1.rss) - float64(m0.rss)

	k := runtime.GOMAXPROCS(0)
	for round := 0; round < rounds && ctx.Err() == nil; round++ {
		deadline := make(chan struct{})
		var once sync.Once
		abort := func() { once.Do(func() { close(deadline) }) }
		timer := time.AfterFunc(10*time.Second, abort)
		finish := make([]time.Time, k)
		minRev, maxRev := make([]int64, k), make([]int64, k)
		missed := make([]int64, k)
		var wg sync.WaitGroup
		for j := 0; j < k; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				minRev[j], maxRev[j] = 1<<62, -1
				for i := j; i < len(chans); i += k {
					select {
					case wr, ok := <-chans[i]:
						if !ok || len(wr.Events) != 1 {
							missed[j]++
							continue
						}
						rev := wr.Events[0].Kv.ModRevision
						minRev[j], maxRev[j] = min(minRev[j], rev), max(maxRev[j], rev)
					case <-deadline:
						missed[j] += int64((len(chans) - i + k - 1) / k)
						return
					}
				}
				finish[j] = time.Now()
			}(j)
		}
		start := time.Now()
		resp, err := c.nodes[writer].Put(ctx, key, fmt.Sprintf("round-%d", round))
		putDone := time.Now()
		if err != nil {
			abort()
			wg.Wait()
			timer.Stop()
			fail(fmt.Errorf("put: %w", err))
			break
		}
		wg.Wait()
		timer.Stop()
		var last time.Time
		var lost int64
		for j := 0; j < k; j++ {
			lost += missed[j]
			if finish[j].After(last) {
				last = finish[j]
			}
			if maxRev[j] >= 0 && (minRev[j] != resp.Header.Revision || maxRev[j] != resp.Header.Revision) {
				fail(fmt.Errorf("round %d: watcher got revision %d..%d, put was %d", round, minRev[j], maxRev[j], resp.Header.Revision))
			}
		}
		if lost > 0 {
			fail(fmt.Errorf("round %d: %d of %d watchers did not get the event within 10 s", round, lost, watchers))
			break
		}
		run.toAll = append(run.toAll, last.Sub(start))
		run.putLat = append(run.putLat, putDone.Sub(start))
	}
	return run
}

// watchResult runs watchFanout and turns it into a table row.
func watchResult(ctx context.Context, c *cluster, name string, leader, watchers, rounds int) Result {
	w := c.follower(leader)
	placement := "watchers on a follower, Put via the leader"
	if w == leader {
		placement = "watchers and Put on the single node"
	}
	start := time.Now()
	run := watchFanout(ctx, c, w, leader, watchers, rounds, fmt.Sprintf("watched-%s", name))
	r := Result{Workload: name, Nodes: len(c.nodes), Clients: watchers, Placement: placement,
		Ops: int64(len(run.toAll)), Errors: run.errs, Seconds: time.Since(start).Seconds()}
	r.setLatency(exactSummary(run.toAll))
	put := exactSummary(run.putLat)
	r.note("time until all %s watchers have the event, %d rounds", fmtCount(float64(watchers)), len(run.toAll))
	r.note("Put alone p50 %s", fmtMs(ms(put.P50)))
	r.note("opening the watches took %s", fmtMs(ms(run.create)))
	r.metric("watchers", float64(watchers))
	r.metric("put_p50_ms", ms(put.P50))
	r.metric("create_ms", ms(run.create))
	if watchers >= 10000 { // below that, other garbage and compaction drown the difference
		r.note("watchers cost %s heap (%.0f B each); RSS changed by %s", fmtBytes(run.heapPerW*float64(watchers)), run.heapPerW, signedBytes(run.rssDelta))
		r.metric("heap_bytes_per_watcher", run.heapPerW)
		r.metric("rss_delta_bytes", run.rssDelta)
	}
	if run.firstErr != nil {
		r.note("first error: %v", run.firstErr)
	}
	return r
}
