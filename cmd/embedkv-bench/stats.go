package main

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
	"time"
)

// hist is a log-linear latency histogram (HDR-like): values below 256 ns are
// counted exactly; above, each power of two is split into 128 buckets, so a
// reported percentile is within 0.4 % of the true value. The maximum is kept
// exactly. One hist per goroutine; merge them at the end.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

const (
	histSubBits  = 7
	histSub      = 1 << histSubBits // buckets per power of two
	histMaxShift = 40               // values ≥ 2^48 ns (3 days) share the last bucket
	histBuckets  = 2*histSub + histMaxShift*histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - (histSubBits + 1)
	if shift > histMaxShift {
		return histBuckets - 1
	}
	m := v >> uint(shift) // in [histSub, 2*histSub)
	return 2*histSub + (shift-1)*histSub + int(m-histSub)
}

// histValue is the midpoint of bucket i.
func histValue(i int) time.Duration {
	if i < 2*histSub {
		return time.Duration(i)
	}
	shift := (i-2*histSub)/histSub + 1
	m := uint64((i-2*histSub)%histSub + histSub)
	lo := m << uint(shift)
	return time.Duration(lo + (uint64(1)<<uint(shift))/2)
}

func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
	h.sum += d
	if d > h.max {
		h.max = d
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the q-quantile (0 < q ≤ 1): the smallest recorded value
// with at least q·n values at or below it, to bucket precision.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			if v := histValue(i); v < h.max {
				return v
			}
			return h.max
		}
	}
	return h.max
}

// latency is the summary printed in the table.
type latency struct {
	N             int
	P50, P99, Max time.Duration
}

func (h *hist) summary() latency {
	return latency{N: int(h.n), P50: h.quantile(0.50), P99: h.quantile(0.99), Max: h.max}
}

// exactSummary computes p50, p99 and max of a small sample exactly (nearest
// rank on the sorted sample).
func exactSummary(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(q float64) time.Duration {
		r := int(math.Ceil(q*float64(len(s)))) - 1
		if r < 0 {
			r = 0
		}
		return s[r]
	}
	return latency{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// Result is one row of the table (and one object in the JSON output).
type Result struct {
	Workload  string  `json:"workload"`
	Nodes     int     `json:"nodes"`
	Clients   int     `json:"clients"`
	Placement string  `json:"placement"` // where the clients / watchers ran
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec,omitempty"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// CPUUsPerOp is the process CPU time per operation: every node of the
	// cluster, the clients and the Go runtime together.
	CPUUsPerOp float64            `json:"cpu_us_per_op,omitempty"`
	Samples    int                `json:"samples"`
	Notes      string             `json:"notes,omitempty"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Err        string             `json:"error,omitempty"` // the workload could not run
}

func (r *Result) setLatency(l latency) {
	r.Samples = l.N
	r.P50Ms, r.P99Ms, r.MaxMs = ms(l.P50), ms(l.P99), ms(l.Max)
}

func (r *Result) metric(name string, v float64) {
	if r.Metrics == nil {
		r.Metrics = map[string]float64{}
	}
	r.Metrics[name] = v
}

func (r *Result) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	if r.Notes == "" {
		r.Notes = s
	} else {
		r.Notes += "; " + s
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtMs prints a latency in milliseconds with 2–3 significant digits.
func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 0.1:
		return fmt.Sprintf("%.1f µs", v*1000)
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 1000:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f s", v/1000)
}

// fmtCount prints n with thousands separators.
func fmtCount(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// fmtBytes prints a byte count in MB (10^6) or GB.
func fmtBytes(b float64) string {
	if b < 0 {
		return "-" + fmtBytes(-b)
	}
	if b >= 1e9 {
		return fmt.Sprintf("%.2f GB", b/1e9)
	}
	return fmt.Sprintf("%.1f MB", b/1e6)
}

// signedBytes is fmtBytes with an explicit sign.
func signedBytes(b float64) string {
	if b >= 0 {
		return "+" + fmtBytes(b)
	}
	return fmtBytes(b)
}
