package mapscope

import (
	"fmt"
	"log"
	"runtime"
	"runtime/debug"
	"sync"
)

// Introspection reads the runtime's own map headers (layout_classic.go,
// layout_swiss.go). The build tags pick the layout by Go release, up to the
// newest release checked; before the first reading a self-check builds
// maps whose numbers are known and reads them back. If any reading is off,
// introspection stays off for the life of the process: every map is then
// modelled (model.go), one line is logged, and layoutInfo says why.

// introspection is the self-check's verdict.
var introspection struct {
	once   sync.Once
	on     bool
	layout string
	note   string
}

// layoutCheck is the self-check; tests replace it to see a failure.
var layoutCheck = checkLayout

// introspecting reports whether real maps are read (the self-check,
// run once, passed).
func introspecting() bool {
	introspection.once.Do(runSelfCheck)
	return introspection.on
}

func runSelfCheck() {
	if !layoutIntrospects {
		introspection.layout = "model"
		introspection.note = "map layout not verified for " + runtime.Version()
		return
	}
	if err := safeCheck(layoutCheck); err != nil {
		introspection.layout = "model"
		introspection.note = "self-check failed: " + err.Error()
		log.Printf("mapscope: %s map introspection is off, bucket counts are modelled: %s self-check failed: %v",
			runtime.Version(), layoutName, err)
		return
	}
	introspection.on = true
	introspection.layout = layoutName
}

// safeCheck runs check, turning a panic, or a fault from following a
// misread pointer, into an error (debug.SetPanicOnFault makes such a fault
// a panic instead of a crash).
func safeCheck(check func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return check()
}
