//go:build go1.28 || mapscope_model

package mapscope

import (
	"errors"
	"time"
)

// Go 1.28 and later: no layout has been checked against these releases, so
// nothing is read from the runtime. The mapscope_model tag selects this file
// on any release (to test the fallback), and keeps the constraint from
// implying a minimum Go version: a file whose constraint is go1.28 alone
// would be compiled as Go 1.28 code, which go1.27 refuses ("file requires
// newer Go version"), so `go test -tags go1.28` could not build on it. Every map's buckets and memory come
// from the model (model.go), marked modelled, and growths are derived from
// the modelled bucket count at report time, without durations.

const (
	layoutName        = "model"
	layoutIntrospects = false
)

// readShape is never called: introspecting() is false.
func readShape(h header, sz typeSizes) shape { return shape{Layout: layoutName, Modelled: true} }

// makeBuckets is the model's bucket count for make(map, hint).
func makeBuckets(hint uint64) uint64 { return modelBuckets(hint) }

// writeProbe does nothing without a layout.
type writeProbe struct{}

func (p *writeProbe) mayGrow(h header) bool             { return false }
func (p *writeProbe) pending(h header, timed bool) bool { return false }
func (p *writeProbe) after(h header, timed bool, t0 time.Time) growthNote {
	return growthNote{}
}
func (p *writeProbe) abandon() (finishedGrowth, bool) { return finishedGrowth{}, false }

func checkLayout() error { return errors.New("no layout for this Go release") }
