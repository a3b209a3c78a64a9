//go:build !go1.23

package mapscope

import (
	"errors"
	"runtime"
)

// CaptureCrashes needs runtime/debug.SetCrashOutput, new in Go 1.23: built
// with an older Go, it returns an error and captures nothing. See the Go
// 1.23 version of this function for what it does.
func CaptureCrashes() (stop func(), err error) {
	return nil, errors.New("mapscope: CaptureCrashes needs Go 1.23 or newer (runtime/debug.SetCrashOutput); this program was built with " + runtime.Version())
}
