//go:build go1.23

package mapscope

import (
	"os"
	"runtime/debug"
)

// CaptureCrashes makes the crashes nothing can stop, such as "fatal error:
// concurrent map writes" on a plain map, visible to the sidecar: the
// runtime's crash output goes to a file in $MAPSCOPE_CRASH_DIR, which the
// sidecar (mapscope sidecar --crash-dir, the same directory: in Kubernetes
// an emptyDir volume mounted in both containers) turns into a
// concurrent_write count, an alert and a span, even when the process
// never reports again (a crash loop).
//
// In the directory it creates mapscope-crash-<startUnixNano>-<pid>.log, the
// runtime's crash output (runtime/debug.SetCrashOutput; stderr still gets
// it too), and mapscope-crash-<startUnixNano>-<pid>.json: the app, the
// instance, the Go version and the addresses of the observed maps
// (Observe), with which the sidecar names the map in the crashing
// runtime.mapassign frame. The .json is kept current while the process
// runs. It also raises the traceback level to "system"
// (debug.SetTraceback), without which crash output omits the runtime
// frames that hold map addresses.
//
// App and instance are the running reporter's, else ConfigFromEnv's.
// stop ends the capture and removes both files if nothing crashed; a
// process that just exits leaves them for the sidecar to clean up. It
// returns an error when MAPSCOPE_CRASH_DIR is unset or not a directory,
// or, on Go 1.22, because SetCrashOutput needs Go 1.23.
func CaptureCrashes() (stop func(), err error) {
	return captureCrashes(func(f *os.File) error {
		return debug.SetCrashOutput(f, debug.CrashOptions{})
	})
}
