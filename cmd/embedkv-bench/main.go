// Command embedkv-bench measures embedkv against the targets of issue 7: the
// same workloads as the etcd reference runs, on embedkv clusters of 1 and 3
// nodes inside this one process, over loopback TCP, with raft logs on a real
// disk and fsync on.
//
// Usage:
//
//	go run ./cmd/embedkv-bench [flags]
//
//	-nodes 1,3          cluster sizes to run (default 1,3)
//	-quick              short run (under a minute): 2 s per workload, 100,000 keys for memory-1M
//	-duration 15s       how long each timed workload runs (default 15s, quick 2s)
//	-workloads LIST     comma list of workloads (default all):
//	                      put-1 put-256 get-linearizable-64 get-serializable-64
//	                      watch-fanout-1000 watch-100k memory-1M restart-1M
//	-keys N             keys loaded by memory-1M / restart-1M (default 1,000,000; quick 100,000)
//	-keyspace N         key space of the put and get workloads (default 100,000)
//	-json FILE          also write every result as JSON
//	-dir DIR            where the nodes' data directories go (default: a temp dir);
//	                    each cluster's data is removed when it closes
//	-cpuprofile FILE    CPU profile of the whole run
//	-memprofile FILE    heap profile taken right after the memory-1M measurement
//	                    (the last cluster size's), or at exit without memory-1M
//	-nofsync            UNSAFE: turn off fsync of the raft log (labelled in the output)
//	-v                  node logs at info level (default: warnings only)
//
// Workloads (256-byte values; clients of multi-client workloads are bound to
// the nodes round-robin, starting with the leader; the put and get workloads
// run on one cluster per size, after preloading the key space in Txns of 128
// puts; memory-1M and restart-1M on a fresh one):
//
//	put-1                 1 client writing random keys of the key space, via the
//	                      leader (and, on 3 nodes, a second row via a follower)
//	put-256               256 clients writing
//	get-linearizable-64   64 clients reading the preloaded key space
//	get-serializable-64   the same with WithSerializable
//	watch-fanout-1000     1,000 watchers of one key on a follower; a Put via the
//	                      leader; time from calling Put until all watchers have
//	                      the event (20 rounds; quick 10)
//	watch-100k            the same with 100,000 watchers, plus what they cost in memory
//	memory-1M             load -keys keys in Txns of 128 puts, then heap and RSS
//	restart-1M            close a follower (or the single node), reopen it, time
//	                      until it serves a linearizable Get of the last key
//
// The program prints a markdown table of every row, then the issue 7 targets
// with the 3-node figures next to them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// allWorkloads in the order they run.
var allWorkloads = []string{
	"put-1", "put-256", "get-linearizable-64", "get-serializable-64",
	"watch-fanout-1000", "watch-100k", "memory-1M", "restart-1M",
}

// options are the parsed flags.
type options struct {
	nodes                 []int
	quick                 bool
	duration              time.Duration
	workloads             map[string]bool
	keys, keySpace        int
	fanoutW, bigW         int
	fanoutRuns, bigRounds int
	jsonPath, dir         string
	cpuprofile            string
	memprofile            string
	nofsync, verbose      bool
}

func parseFlags() (*options, error) {
	o := &options{}
	nodes := flag.String("nodes", "1,3", "cluster sizes to run, comma separated")
	flag.BoolVar(&o.quick, "quick", false, "short run (under a minute): 2 s per workload, 100,000 keys for memory-1M")
	flag.DurationVar(&o.duration, "duration", 0, "duration of each timed workload (default 15s, quick 2s)")
	wl := flag.String("workloads", "all", "comma list of workloads: "+strings.Join(allWorkloads, ","))
	flag.IntVar(&o.keys, "keys", 0, "keys loaded by memory-1M and restart-1M (default 1000000, quick 100000)")
	flag.IntVar(&o.keySpace, "keyspace", 0, "key space of the put and get workloads (default 100000)")
	flag.StringVar(&o.jsonPath, "json", "", "write all results as JSON to this file")
	flag.StringVar(&o.dir, "dir", "", "base directory for the nodes' data (default: a temp dir removed at exit)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
	flag.StringVar(&o.memprofile, "memprofile", "", "write a heap profile (after memory-1M, else at exit) to this file")
	flag.BoolVar(&o.nofsync, "nofsync", false, "UNSAFE: no fsync of the raft log (results labelled as such)")
	flag.BoolVar(&o.verbose, "v", false, "node logs at info level")
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	for _, f := range strings.Split(*nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 9 {
			return nil, fmt.Errorf("-nodes: bad cluster size %q", f)
		}
		o.nodes = append(o.nodes, n)
	}
	o.workloads = map[string]bool{}
	for _, w := range strings.Split(*wl, ",") {
		w = strings.TrimSpace(w)
		switch {
		case w == "all":
			for _, a := range allWorkloads {
				o.workloads[a] = true
			}
		case contains(allWorkloads, w):
			o.workloads[w] = true
		default:
			return nil, fmt.Errorf("-workloads: unknown workload %q (have %s)", w, strings.Join(allWorkloads, ", "))
		}
	}
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.keys, 1_000_000, 100_000)
	def(&o.keySpace, 100_000, 100_000)
	o.fanoutW, o.bigW = 1000, 100_000
	def(&o.fanoutRuns, 20, 10)
	def(&o.bigRounds, 5, 3)
	if o.duration == 0 {
		o.duration = 15 * time.Second
		if o.quick {
			o.duration = 2 * time.Second
		}
	}
	if o.keys < 1 || o.keySpace < 1 || o.duration <= 0 {
		return nil, fmt.Errorf("-keys, -keyspace and -duration must be positive")
	}
	if o.keys >= 10_000_000 || o.keySpace >= 10_000_000 {
		return nil, fmt.Errorf("-keys and -keyspace must be below 10,000,000")
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedkv-bench:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "embedkv-bench:", err)
		os.Exit(1)
	}
}

// report is what -json writes.
type report struct {
	Machine  machine       `json:"machine"`
	Settings settings      `json:"settings"`
	Results  []Result      `json:"results"`
	Targets  []targetCheck `json:"targets"`
	Seconds  float64       `json:"total_seconds"`
}

type settings struct {
	Nodes      []int    `json:"nodes"`
	Quick      bool     `json:"quick"`
	DurationS  float64  `json:"duration_s"`
	Workloads  []string `json:"workloads"`
	Keys       int      `json:"keys"`
	KeySpace   int      `json:"keyspace"`
	ValueBytes int      `json:"value_bytes"`
	Fsync      bool     `json:"fsync"`
	DataDir    string   `json:"data_dir"`
	DataFS     string   `json:"data_fs"`
}

func run(o *options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second interrupt kills the program
	begin := time.Now()

	base := o.dir
	if base == "" {
		d, err := os.MkdirTemp("", "embedkv-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		base = d
	} else {
		if err := os.MkdirAll(base, 0o700); err != nil {
			return err
		}
		d, err := os.MkdirTemp(base, "embedkv-bench-")
		if err != nil {
			return err
		}
		defer os.Remove(d) // the clusters remove their own data
		base = d
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	m := machineInfo(base)
	rep := report{Machine: m, Settings: settings{
		Nodes: o.nodes, Quick: o.quick, DurationS: o.duration.Seconds(), Keys: o.keys, KeySpace: o.keySpace,
		ValueBytes: valueSize, Fsync: !o.nofsync, DataDir: base, DataFS: m.DataFS,
	}}
	for _, w := range allWorkloads {
		if o.workloads[w] {
			rep.Settings.Workloads = append(rep.Settings.Workloads, w)
		}
	}
	if m.DataFS == "tmpfs" && !o.nofsync {
		fmt.Fprintln(os.Stderr, "warning: the data directory is on tmpfs: fsync costs nothing there; use -dir on a real disk")
	}
	progress := func(r Result) {
		if o.nofsync {
			r.note("**fsync OFF (-nofsync)**")
		}
		fmt.Fprintf(os.Stderr, "[%d node(s)] %-20s %10s/s  p50 %-9s p99 %-9s max %-9s errors %d  (%.1fs elapsed)\n",
			r.Nodes, r.Workload, fmtCount(r.OpsPerSec), fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), r.Errors, time.Since(begin).Seconds())
		rep.Results = append(rep.Results, r)
	}
	var runErr error
	for _, n := range o.nodes {
		if err := runSize(ctx, o, base, n, logger, progress); err != nil {
			runErr = fmt.Errorf("%d node(s): %w", n, err)
			fmt.Fprintln(os.Stderr, "embedkv-bench:", runErr)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if o.memprofile != "" && !o.workloads["memory-1M"] {
		if err := writeHeapProfile(o.memprofile); err != nil {
			return err
		}
	}
	rep.Machine.LoadAvgEnd = loadAvg()
	rep.Seconds = time.Since(begin).Seconds()
	rep.Targets = checkTargets(rep.Results, o)
	printReport(os.Stdout, &rep, o)
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return runErr
}

// runSize runs the selected workloads on clusters of n nodes: one cluster
// for the put/get/watch workloads, a fresh one for memory and restart.
func runSize(ctx context.Context, o *options, base string, n int, logger *slog.Logger, emit func(Result)) error {
	w := o.workloads
	if w["put-1"] || w["put-256"] || w["get-linearizable-64"] || w["get-serializable-64"] || w["watch-fanout-1000"] || w["watch-100k"] {
		if err := runPerf(ctx, o, fmt.Sprintf("%s/n%d-perf", base, n), n, logger, emit); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if w["memory-1M"] || w["restart-1M"] {
		c, err := startCluster(ctx, fmt.Sprintf("%s/n%d-mem", base, n), n, o.nofsync, logger)
		if err != nil {
			return err
		}
		defer c.close()
		leader, err := c.waitLeader(ctx, 30*time.Second)
		if err != nil {
			return err
		}
		r, err := memoryWorkload(ctx, c, leader, o.keys, o.memprofile)
		if w["memory-1M"] {
			emit(r)
		}
		if err != nil {
			return fmt.Errorf("memory-1M: %w", err)
		}
		if r.Errors > 0 {
			return fmt.Errorf("memory-1M: loading failed: %s", r.Notes)
		}
		if w["restart-1M"] {
			r, err := restartWorkload(ctx, c, leader, keyName(o.keys-1), o.keys)
			emit(r)
			if err != nil {
				return fmt.Errorf("restart-1M: %w", err)
			}
		}
	}
	return nil
}

// runPerf runs the throughput and watch workloads on one cluster.
func runPerf(ctx context.Context, o *options, dir string, n int, logger *slog.Logger, emit func(Result)) error {
	c, err := startCluster(ctx, dir, n, o.nofsync, logger)
	if err != nil {
		return err
	}
	defer c.close()
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	keys := make([]string, o.keySpace)
	for i := range keys {
		keys[i] = keyName(i)
	}
	// Preload the key space, so reads hit existing keys and writes overwrite.
	load := loadKeys(ctx, c.nodes[leader], o.keySpace, 16)
	if load.firstErr != nil {
		return fmt.Errorf("preload: %w", load.firstErr)
	}
	if err := c.waitApplied(ctx, load.maxRev, time.Minute); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	fmt.Fprintf(os.Stderr, "[%d node(s)] preloaded %s keys in %.1fs\n", n, fmtCount(float64(o.keySpace)), load.elapsed.Seconds())

	w, d := o.workloads, o.duration
	step := func(name string, fn func(leader int) []Result) error {
		if !w[name] || ctx.Err() != nil {
			return ctx.Err()
		}
		l, err := c.waitLeader(ctx, 30*time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if l != leader {
			fmt.Fprintf(os.Stderr, "[%d node(s)] leader changed from %s to %s\n", n, c.cfgs[leader].NodeID, c.cfgs[l].NodeID)
			leader = l
		}
		term := c.nodes[l].Status().Term
		rs := fn(leader)
		if after := c.maxTerm(); after != term {
			rs[len(rs)-1].note("**leader election during the run** (term %d -> %d)", term, after)
		}
		for _, r := range rs {
			emit(r)
		}
		return nil
	}
	steps := []struct {
		name string
		fn   func(leader int) []Result
	}{
		{"put-1", func(l int) []Result {
			rs := []Result{putWorkload(ctx, c, "put-1", l, 1, "1 client on the leader", keys, d)}
			if n > 1 {
				rs = append(rs, putWorkload(ctx, c, "put-1", c.follower(l), 1, "1 client on a follower (forwarded)", keys, d))
			}
			return rs
		}},
		{"put-256", func(l int) []Result {
			rs := []Result{putWorkload(ctx, c, "put-256", l, 256, placementName(c, 256), keys, d)}
			if n > 1 {
				// etcd's reference used one member's in-process client.
				rs = append(rs, putWorkload(ctx, c.pinned(l), "put-256", l, 256, onLeader, keys, d))
			}
			return rs
		}},
		{"get-linearizable-64", func(l int) []Result {
			return []Result{getWorkload(ctx, c, "get-linearizable-64", l, 64, keys, d, false)}
		}},
		{"get-serializable-64", func(l int) []Result {
			return []Result{getWorkload(ctx, c, "get-serializable-64", l, 64, keys, d, true)}
		}},
		{"watch-fanout-1000", func(l int) []Result {
			return []Result{watchResult(ctx, c, "watch-fanout-1000", l, o.fanoutW, o.fanoutRuns)}
		}},
		{"watch-100k", func(l int) []Result {
			return []Result{watchResult(ctx, c, "watch-100k", l, o.bigW, o.bigRounds)}
		}},
	}
	for _, s := range steps {
		if err := step(s.name, s.fn); err != nil {
			return err
		}
	}
	return nil
}
