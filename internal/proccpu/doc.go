// Package proccpu reads the CPU time the process has used, for the
// benchmarks: divided by the operations of a run it gives the CPU cost of
// one operation for every node of an in-process cluster together, a figure
// far steadier between runs than a throughput that waits on fsync and on
// the scheduler.
package proccpu
