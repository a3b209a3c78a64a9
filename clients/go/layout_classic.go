//go:build (!go1.24 || (!go1.26 && !goexperiment.swissmap)) && !mapscope_model

package mapscope

import (
	"fmt"
	"time"
	"unsafe"
)

// The classic layout: runtime/map.go up to Go 1.23, runtime/map_noswiss.go
// in Go 1.24 and 1.25 built with GOEXPERIMENT=noswissmap (Go 1.26 removed
// it). Checked against go1.22.10, go1.23.9, go1.24.11 and go1.25.5.

const (
	layoutName        = "classic"
	layoutIntrospects = true
)

// hmap is the prefix of runtime.hmap that is read. The fields after
// nevacuate (clearSeq, added in Go 1.24's map_noswiss.go, and extra) are
// not. The compiler keeps its own copy of this layout
// (cmd/compile/internal/reflectdata.MapType), so it changes only with a
// release.
type hmap struct {
	count      int
	flags      uint8
	b          uint8
	noverflow  uint16
	hash0      uint32
	buckets    unsafe.Pointer
	oldbuckets unsafe.Pointer
	nevacuate  uintptr
}

// sameSizeGrow is runtime/map.go's flag: the growth in progress keeps B.
const sameSizeGrow = 8

func (h header) hmap() *hmap { return (*hmap)(h.p) }

// readShape reads a classic map's header. B, noverflow, oldbuckets,
// nevacuate and the sameSizeGrow flag are the runtime's own state; the
// bytes are an estimate (classicMemory).
func readShape(h header, sz typeSizes) shape {
	if h.p == nil {
		return shape{Layout: layoutName}
	}
	m := h.hmap()
	s := shape{
		Layout:          layoutName,
		Buckets:         uint64(1) << m.b,
		OverflowBuckets: uint64(m.noverflow),
	}
	if m.b > 15 {
		// incrnoverflow counts an overflow bucket with probability
		// 1/2^(B-15) once B > 15.
		s.OverflowBuckets <<= m.b - 15
	}
	oldB := m.b
	if m.oldbuckets != nil {
		s.Growing = true
		s.SameSize = m.flags&sameSizeGrow != 0
		if !s.SameSize {
			oldB--
		}
		s.OldBuckets = uint64(1) << oldB
		s.EvacuatedOldBuckets = uint64(m.nevacuate)
	}
	if m.buckets == nil {
		// B = 0 and nothing written yet: mapassign allocates the first
		// bucket.
		s.MemoryBytes = classicHeaderBytes
		return s
	}
	s.MemoryBytes = classicMemory(sz, m.b, s.OverflowBuckets, s.Growing, oldB, uint64(m.count))
	return s
}

// makeBuckets is the bucket count make(map[K]V, hint) starts with: makemap
// picks the smallest B with !overLoadFactor(hint, B).
func makeBuckets(hint uint64) uint64 { return modelBuckets(hint) }

// writeProbe times one Map's growths (map.go). Its fields are written
// under the Map's write lock.
//
// A classic growth is incremental: hashGrow, called by the insert that
// finds overLoadFactor(count+1, B) or tooManyOverflowBuckets(noverflow, B)
// while no growth runs, allocates the new array; every later write
// evacuates one or two old buckets (growWork), and the growth ends when
// advanceEvacuationMark sets oldbuckets to nil. So the probe predicts the
// start from the header before a write (a few loads, no clock), reads the
// clock only when a growth may start, and checks oldbuckets after each
// write while a growth runs: the duration is finish - start, wall time.
type writeProbe struct {
	growing    bool
	kind       GrowthKind
	start      time.Time
	oldBuckets uint64
	b0         uint8 // B before the write being timed
}

// mayGrow reports whether the next write, if it inserts a new key, starts
// a growth: mapassign's condition, read from the header.
func (p *writeProbe) mayGrow(h header) bool {
	m := h.hmap()
	if m.oldbuckets != nil {
		return false
	}
	if overLoadFactor(uint64(m.count)+1, m.b) || tooManyOverflowBuckets(m.noverflow, m.b) {
		p.b0 = m.b
		return true
	}
	return false
}

// pending reports whether after has something to do: the write was timed,
// or it finished the growth in progress (one load per write while a growth
// runs).
func (p *writeProbe) pending(h header, timed bool) bool {
	return timed || (p.growing && h.hmap().oldbuckets == nil)
}

// after looks at the header after a write. timed says mayGrow returned
// true and the clock read t0 before the write.
func (p *writeProbe) after(h header, timed bool, t0 time.Time) growthNote {
	var n growthNote
	m := h.hmap()
	if timed && !p.growing && (m.oldbuckets != nil || m.b != p.b0) {
		p.growing = true
		p.start = t0
		if m.b != p.b0 {
			p.kind = GrowthDouble
			p.oldBuckets = uint64(1) << p.b0
		} else {
			p.kind = GrowthSameSize
			p.oldBuckets = uint64(1) << m.b
		}
		n.started = p.kind
		n.level = int(m.b)
	}
	if p.growing && m.oldbuckets == nil {
		// Evacuated (or abandoned by clear): small maps finish in the
		// write that started them.
		n.finished = p.finish(now())
	}
	return n
}

// abandon ends the growth in progress now: the map is being replaced.
func (p *writeProbe) abandon() (finishedGrowth, bool) {
	if !p.growing {
		return finishedGrowth{}, false
	}
	return p.finish(now()), true
}

func (p *writeProbe) finish(at time.Time) finishedGrowth {
	p.growing = false
	return finishedGrowth{kind: p.kind, at: at, duration: at.Sub(p.start), oldBuckets: p.oldBuckets, ok: true}
}

// checkLayout is the start-up self-check: it fills a map one insert at a
// time and checks, at every step, that count is len, that B is the growth
// rule's (model.go), that a growth in progress is a doubling whose
// evacuation mark is below the old bucket count, and that mayGrow predicted
// exactly the inserts that grew; then that make's hint sets B.
func checkLayout() error {
	m := make(map[uint64]uint64)
	var p writeProbe
	for i := uint64(0); i < 600; i++ {
		h := headerOf(m)
		if h.p == nil {
			return fmt.Errorf("nil header")
		}
		before := h.hmap().b
		predicted := p.mayGrow(h)
		m[i] = i
		hm := h.hmap()
		if hm.count != len(m) {
			return fmt.Errorf("count %d, len %d", hm.count, len(m))
		}
		if want := modelB(uint64(len(m))); hm.b != want {
			return fmt.Errorf("B %d after %d inserts, want %d", hm.b, len(m), want)
		}
		if hm.buckets == nil {
			return fmt.Errorf("no buckets after %d inserts", len(m))
		}
		if hm.oldbuckets != nil {
			if hm.flags&sameSizeGrow != 0 || hm.b == 0 {
				return fmt.Errorf("growth at B %d with flags %#x after %d inserts", hm.b, hm.flags, len(m))
			}
			if old := uintptr(1) << (hm.b - 1); hm.nevacuate >= old {
				return fmt.Errorf("nevacuate %d of %d old buckets", hm.nevacuate, old)
			}
		}
		if grew := hm.b != before; grew != predicted {
			return fmt.Errorf("insert %d: grew %v, predicted %v", i+1, grew, predicted)
		}
	}
	hint := 1000
	if hm := headerOf(make(map[uint64]uint64, hint)).hmap(); uint64(1)<<hm.b != makeBuckets(uint64(hint)) || hm.count != 0 {
		return fmt.Errorf("make(map, %d): B %d, count %d", hint, hm.b, hm.count)
	}
	return nil
}
