//go:build !linux

package robustness

// ServeIfChild returns at once: the process profile needs Linux.
func ServeIfChild() {}
