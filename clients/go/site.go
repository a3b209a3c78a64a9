package mapscope

import (
	"runtime"
	"strings"
)

// Sites name the application's code, never this package's: a misuse found
// inside Put or a Map method is reported at the line that called it. Only
// misuse paths walk the stack; map operations never do.

// packagePrefix is the prefix of this package's function names
// ("github.com/mapscope/mapscope/clients/go."), read from one of its own
// functions so that it follows the module path (vendoring, forks).
var packagePrefix = func() string {
	pc, _, _, _ := runtime.Caller(0)
	name := runtime.FuncForPC(pc).Name() // ".../clients/go.init.func1"
	slash := strings.LastIndexByte(name, '/')
	dot := strings.IndexByte(name[slash+1:], '.')
	return name[:slash+1+dot+1]
}()

// maxFrames bounds the stack walk of a misuse path.
const maxFrames = 64

// callerSite returns the first code site at or above skip frames above its
// caller (skip 0 is the function calling callerSite) that is not in this
// package.
func callerSite(skip int) Site {
	var pcs [maxFrames]uintptr
	n := runtime.Callers(skip+2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	var last runtime.Frame
	for {
		f, more := frames.Next()
		if !inPackage(f) {
			return siteOf(f)
		}
		last = f
		if !more {
			return siteOf(last)
		}
	}
}

// panicSite returns, from inside a function deferred by the panicking
// goroutine, the site of the frame that panicked: the first frame below the
// newest runtime.gopanic that is not in the runtime (a nil-map write
// panics inside runtime.mapassign*, called by the line that wrote).
// ours is true when that frame is in this package: then the panic was
// raised, and recorded, by Put, or re-raised by RecoverNilMap.
func panicSite(skip int) (site Site, ours bool, found bool) {
	var pcs [maxFrames]uintptr
	n := runtime.Callers(skip+2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case !panicking:
			panicking = f.Function == "runtime.gopanic"
		case !inRuntime(f.Function):
			return siteOf(f), inPackage(f), true
		}
		if !more {
			return Site{}, false, false
		}
	}
}

// inPackage reports whether f is this package's code. Its own tests
// (package mapscope, *_test.go) count as application code.
func inPackage(f runtime.Frame) bool {
	return strings.HasPrefix(f.Function, packagePrefix) && !strings.HasSuffix(f.File, "_test.go")
}

// inRuntime reports whether a function is the runtime's: runtime.* and,
// from Go 1.24, the swiss-table code in internal/runtime/maps.
func inRuntime(function string) bool {
	return strings.HasPrefix(function, "runtime.") || strings.HasPrefix(function, "internal/")
}

func siteOf(f runtime.Frame) Site {
	return Site{Function: f.Function, File: f.File, Line: f.Line}
}
