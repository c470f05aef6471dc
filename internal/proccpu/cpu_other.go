//go:build !unix

package proccpu

import "time"

// Used is not measured on this platform: it returns 0 and false.
func Used() (time.Duration, bool) { return 0, false }
