// Package proccluster runs the nodes of a test cluster as child processes
// of the test binary, so a fault-injection test can SIGKILL them (no Close,
// no flush: whatever the process had not written is gone) and pause them
// with SIGSTOP/SIGCONT.
//
// A child is the test binary itself, re-executed with the environment
// variable EMBEDKV_PROC_CHILD set to a payload the parent chooses (the
// node's configuration). The test binary's TestMain must check Child first
// and, in a child, serve instead of running the tests: it opens its node,
// listens on a loopback control address of its own and calls Ready with
// it. The parent talks to the child over that address (the protocol is the
// caller's business).
//
// No child outlives its test: each runs in its own process group, is
// killed with SIGKILL by Close (registered with t.Cleanup, so it runs on
// t.Fatal too), gets SIGKILL from the kernel if the parent dies
// (Pdeathsig), and exits when its standard input, a pipe from the parent,
// reaches end of file.
//
// Linux only (process groups, Pdeathsig, SIGSTOP).
package proccluster
