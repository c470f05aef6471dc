package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// machine describes where the run happened.
type machine struct {
	CPUModel     string `json:"cpu_model"`
	NumCPU       int    `json:"num_cpu"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	GoVersion    string `json:"go_version"`
	GOOS         string `json:"goos"`
	GOARCH       string `json:"goarch"`
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
	DataFS       string `json:"data_fs"`
}

func machineInfo(dataDir string) machine {
	return machine{
		CPUModel:     cpuModel(),
		NumCPU:       runtime.NumCPU(),
		GOMAXPROCS:   runtime.GOMAXPROCS(0),
		GoVersion:    runtime.Version(),
		GOOS:         runtime.GOOS,
		GOARCH:       runtime.GOARCH,
		LoadAvgStart: loadAvg(),
		DataFS:       fsType(dataDir),
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// loadAvg is the 1, 5 and 15 minute load averages from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// fsType names the file system holding dir (from /proc/mounts: the mount
// point that is the longest prefix of dir), "unknown" without /proc.
func fsType(dir string) string {
	abs, err := filepath.Abs(dir)
	if err == nil {
		if p, err := filepath.EvalSymlinks(abs); err == nil {
			abs = p
		}
	}
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	best, typ := "", "unknown"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, f[2]
		}
	}
	return typ
}

// targetCheck is one line of issue 7's targets against the 3-node results.
type targetCheck struct {
	Target   string `json:"target"`
	Etcd     string `json:"etcd"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// checkTargets compares the 3-node rows with issue 7's targets.
func checkTargets(results []Result, o *options) []targetCheck {
	find := func(workload, placement string) *Result {
		for i := range results {
			r := &results[i]
			if r.Nodes == 3 && r.Workload == workload && (placement == "" || r.Placement == placement) {
				return r
			}
		}
		return nil
	}
	var out []targetCheck
	add := func(r *Result, target, etcd, measured string, met bool) {
		if r == nil {
			return
		}
		if r.Errors > 0 {
			measured += fmt.Sprintf(" (%d errors)", r.Errors)
			met = false
		}
		out = append(out, targetCheck{Target: target, Etcd: etcd, Measured: measured, Met: met})
	}
	rate := func(r *Result) string {
		return fmt.Sprintf("%s/s (p99 %s)", fmtCount(r.OpsPerSec), fmtMs(r.P99Ms))
	}
	for _, placement := range []string{onLeader, "round-robin over all nodes"} {
		if r := find("put-256", placement); r != nil {
			add(r, "Put, 256 clients ≥ 35,000/s, p99 < 50 ms ("+placement+")", "11,464/s p99 59 ms / 41,578/s", rate(r), r.OpsPerSec >= 35000 && r.P99Ms < 50)
		}
	}
	if r := find("put-1", "1 client on the leader"); r != nil {
		add(r, "Put, 1 client ≥ 1,241/s (etcd)", "1,241/s / 3,540/s", rate(r), r.OpsPerSec >= 1241)
	}
	if r := find("get-linearizable-64", ""); r != nil {
		add(r, "Get linearizable, 64 clients ≥ 2x etcd = 127,126/s", "63,563/s / 154,896/s", rate(r), r.OpsPerSec >= 2*63563)
	}
	if r := find("get-serializable-64", ""); r != nil {
		add(r, "Get serializable, 64 clients ≥ 10x etcd = 1,232,680/s", "123,268/s / 160,015/s", rate(r), r.OpsPerSec >= 10*123268)
	}
	if r := find("watch-fanout-1000", ""); r != nil {
		add(r, "1,000 watchers of one key all have the event within 5 ms (p99 of rounds)", "70 ms / 50 ms",
			fmt.Sprintf("p50 %s, p99 %s, max %s", fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs)), r.Samples > 0 && r.P99Ms < 5)
	}
	if r := find("watch-100k", ""); r != nil {
		add(r, "100,000 watchers on one node work", "—",
			fmt.Sprintf("%d/%d rounds delivered to all, p50 %s; %.0f B heap per watcher", r.Samples, o.bigRounds, fmtMs(r.P50Ms), r.Metrics["heap_bytes_per_watcher"]),
			r.Samples == o.bigRounds)
	}
	scale := ""
	if o.keys != 1_000_000 {
		scale = fmt.Sprintf(" [%s keys, not 1M]", fmtCount(float64(o.keys)))
	}
	if r := find("memory-1M", ""); r != nil && r.Metrics["raw_bytes"] > 0 {
		ratio := r.Metrics["rss_per_node_over_raw"]
		add(r, "RSS per node ≤ 1.5x raw key+value bytes (1M × 256 B)", "RSS 788 MB for 3 members (~263 MB each) / 248 MB",
			fmt.Sprintf("%s per node = %.2fx raw%s", fmtBytes(r.Metrics["rss_bytes_per_node"]), ratio, scale), ratio <= 1.5)
	}
	if r := find("restart-1M", ""); r != nil {
		add(r, "restart of a node holding 1M keys to serving < 3 s", "—",
			fmt.Sprintf("%s%s", fmtMs(r.MaxMs), scale), r.Samples > 0 && r.MaxMs < 3000)
	}
	return out
}

// printReport writes the machine, the results table and the targets.
func printReport(w io.Writer, rep *report, o *options) {
	m := rep.Machine
	fmt.Fprintf(w, "\n## embedkv-bench\n\n")
	fmt.Fprintf(w, "- machine: %s, %d CPUs, GOMAXPROCS %d, %s %s/%s\n", m.CPUModel, m.NumCPU, m.GOMAXPROCS, m.GoVersion, m.GOOS, m.GOARCH)
	fmt.Fprintf(w, "- load average at start %s, at end %s (other processes compete for the CPU if these are high)\n", m.LoadAvgStart, m.LoadAvgEnd)
	fsync := "fsync ON"
	if o.nofsync {
		fsync = "**fsync OFF (-nofsync: UNSAFE, not comparable with the targets)**"
	}
	fmt.Fprintf(w, "- data on %s (%s), %s; values %d B; key space %s keys; %s per timed workload%s; total %.0f s\n",
		m.DataFS, rep.Settings.DataDir, fsync, valueSize, fmtCount(float64(o.keySpace)), o.duration, map[bool]string{true: " (-quick)", false: ""}[o.quick], rep.Seconds)
	fmt.Fprintf(w, "- all nodes of a cluster run in this one process; memory figures are for the whole process, per node = divided by the node count\n\n")
	fmt.Fprintln(w, "| workload | nodes | clients | ops/s | p50 | p99 | max | CPU/op | notes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rep.Results {
		ops := "-"
		if r.OpsPerSec > 0 {
			ops = fmtCount(r.OpsPerSec)
		}
		cpu := "-"
		if r.CPUUsPerOp > 0 {
			cpu = fmt.Sprintf("%.1f µs", r.CPUUsPerOp)
		}
		notes := r.Notes
		if r.Errors > 0 {
			notes = fmt.Sprintf("**%s errors (%.2f %%)**; %s", fmtCount(float64(r.Errors)), 100*float64(r.Errors)/float64(r.Errors+r.Ops), notes)
		}
		fmt.Fprintf(w, "| %s | %d | %s (%s) | %s | %s | %s | %s | %s | %s |\n", r.Workload, r.Nodes, fmtCount(float64(r.Clients)), r.Placement,
			ops, fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), cpu, strings.ReplaceAll(notes, "|", "/"))
	}
	if len(rep.Targets) > 0 {
		fmt.Fprintf(w, "\n### Issue 7 targets (3 nodes)\n\n| target | etcd (3 members / 1 member) | embedkv | met |\n|---|---|---|---|\n")
		for _, t := range rep.Targets {
			met := "yes"
			if !t.Met {
				met = "**no**"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Target, t.Etcd, t.Measured, met)
		}
	}
	fmt.Fprintln(w)
}
