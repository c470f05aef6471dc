//go:build !linux

package robustness

import "testing"

// procProfile: the process profile needs Linux.
const procProfile = false

// RunProc is not available off Linux.
func RunProc(t testing.TB, _ RunConfig) *Result {
	t.Skip("the process profile needs Linux")
	return nil
}
