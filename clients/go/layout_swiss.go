//go:build go1.24 && !go1.28 && (go1.26 || goexperiment.swissmap) && !mapscope_model

package mapscope

import (
	"fmt"
	"math/bits"
	"time"
	"unsafe"
)

// The swiss layout: internal/runtime/maps (map.go, table.go, group.go),
// the default from Go 1.24 and the only layout from Go 1.26. The offsets
// read are the same in go1.24.11, go1.25.5, go1.26.6 and go1.27.3 (1.25
// added tombstonePossible in what was padding after writing). The build
// tag stops at go1.28: a newer release is modelled until checked.

const (
	layoutName        = "swiss"
	layoutIntrospects = true
)

// swissMap mirrors internal/runtime/maps.Map.
type swissMap struct {
	used        uint64
	seed        uintptr
	dirPtr      unsafe.Pointer
	dirLen      int
	globalDepth uint8
	globalShift uint8
	writing     uint8
	_           uint8 // tombstonePossible (1.25+), padding in 1.24
	clearSeq    uint64
}

// swissTable mirrors internal/runtime/maps.table (with its
// groupsReference inlined).
type swissTable struct {
	used       uint16
	capacity   uint16
	growthLeft uint16
	localDepth uint8
	index      int
	groups     unsafe.Pointer
	lengthMask uint64
}

const (
	groupSlots       = 8    // abi.MapGroupSlots
	maxTableCapacity = 1024 // maps.maxTableCapacity
	maxAvgGroupLoad  = 7    // maps.maxAvgGroupLoad: a table fills to 7/8
	swissHeaderBytes = 48   // sizeof(maps.Map)
	swissTableBytes  = 32   // sizeof(maps.table)
)

func (h header) swiss() *swissMap { return (*swissMap)(h.p) }

// table returns directory entry i (Map.directoryAt).
func (m *swissMap) table(i int) *swissTable {
	return *(**swissTable)(unsafe.Add(m.dirPtr, uintptr(i)*ptrSize))
}

// swissTotals walks the directory. Several entries point at one table (a
// table of localDepth d fills 2^(globalDepth-d) consecutive entries), so a
// table is counted when it differs from the previous entry, as Map.Clear
// does.
func (m *swissMap) totals() (capacity, tables uint64) {
	var last *swissTable
	for i := 0; i < m.dirLen; i++ {
		t := m.table(i)
		if t == last {
			continue
		}
		last = t
		capacity += uint64(t.capacity)
		tables++
	}
	return capacity, tables
}

// capacity is the map's slot count: 0 before the first group is
// allocated, 8 for a small map (one group, dirLen 0), the sum of its
// tables' capacities otherwise.
func (m *swissMap) capacity() uint64 {
	if m.dirLen == 0 {
		if m.dirPtr == nil {
			return 0
		}
		return groupSlots
	}
	c, _ := m.totals()
	return c
}

// readShape reads a swiss map. Buckets is the whole map's capacity / 8
// (groups), so its doublings are the whole map's, not each table's grows
// and splits. A swiss growth rehashes inside one write: never an
// evacuation in progress, never overflow buckets.
func readShape(h header, sz typeSizes) shape {
	s := shape{Layout: layoutName}
	if h.p == nil {
		return s
	}
	m := h.swiss()
	switch {
	case m.dirLen == 0 && m.dirPtr == nil:
		// Made without a hint above 8 and not written yet: the first
		// insert allocates one group (growToSmall). Reported as the one
		// bucket it will have, like a classic map's B = 0.
		s.Buckets = 1
		s.MemoryBytes = swissHeaderBytes
	case m.dirLen == 0:
		s.Buckets = 1
		s.MemoryBytes = swissHeaderBytes + uint64(sz.group)
	default:
		capacity, tables := m.totals()
		s.Buckets = capacity / groupSlots
		s.Tables = tables
		s.MemoryBytes = swissHeaderBytes + uint64(m.dirLen)*uint64(ptrSize) +
			tables*swissTableBytes + s.Buckets*uint64(sz.group)
	}
	s.MemoryBytes += m.used * uint64(sz.indirect)
	return s
}

// makeBuckets is the bucket count make(map[K]V, hint) starts with
// (maps.NewMap): up to 8 a lazily allocated group; above, hint*8/7 slots
// split over a power-of-two directory of tables of at most 1024 slots,
// each rounded up to a power of two.
func makeBuckets(hint uint64) uint64 {
	if hint <= groupSlots {
		return 1
	}
	target := hint * groupSlots / maxAvgGroupLoad
	dirSize := ceilPow2((target + maxTableCapacity - 1) / maxTableCapacity)
	perTable := max(ceilPow2(target/dirSize), groupSlots)
	return dirSize * perTable / groupSlots
}

func ceilPow2(n uint64) uint64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len64(n-1)
}

// writeProbe times one Map's growths (map.go). A swiss growth happens
// inside the insert that needs it (no evacuation follows), so a growth is
// timed by reading the clock around that insert. It can be predicted from
// the header only where one place decides: a small map (one group) grows
// when its 8 slots are full (putSlotSmall), a single-table map when the
// table's growthLeft is 0 (table.PutSlot, which then rehashes: grow to
// double capacity, or split at 1024 slots). A map of several tables grows
// in the table its key hashes to, which the header does not tell: those
// growths are seen at report time and carry no duration.
type writeProbe struct {
	cap0 uint64 // capacity before the write being timed
}

// mayGrow reports whether the next write, if it inserts a new key, may
// grow the map, in the cases the header can tell.
func (p *writeProbe) mayGrow(h header) bool {
	m := h.swiss()
	switch m.dirLen {
	case 0:
		if m.dirPtr != nil && m.used >= groupSlots {
			p.cap0 = groupSlots
			return true
		}
	case 1:
		if t := m.table(0); t.growthLeft == 0 {
			p.cap0 = uint64(t.capacity)
			return true
		}
	}
	return false
}

// pending reports whether after has something to do: only a timed write
// may have grown the map (no swiss growth outlives its write).
func (p *writeProbe) pending(h header, timed bool) bool { return timed }

// after looks at the map after a timed write: a grown capacity is one
// doubling of the whole map (a single table's grow or split, or the small
// group's move to a table), and it finished in that write.
func (p *writeProbe) after(h header, timed bool, t0 time.Time) growthNote {
	var n growthNote
	if !timed {
		return n
	}
	if c := h.swiss().capacity(); c > p.cap0 {
		end := now()
		n.started = GrowthDouble
		n.level = level(c / groupSlots)
		n.finished = finishedGrowth{kind: GrowthDouble, at: end, duration: end.Sub(t0), oldBuckets: p.cap0 / groupSlots, ok: true}
	}
	return n
}

// abandon: there is never a growth in progress.
func (p *writeProbe) abandon() (finishedGrowth, bool) { return finishedGrowth{}, false }

// checkLayout is the start-up self-check: it fills a map one insert at a
// time, past several table splits, and checks at every step that used is
// len, that the directory is 2^globalDepth entries with globalShift =
// 64 - globalDepth, that each table starts at its own index, has a
// power-of-two capacity of 8..1024 slots with lengthMask+1 groups, holds
// at most 7/8 of it, and that the tables' used sum to len; that mayGrow
// predicted every growth it can see; then that make's hint sets capacity.
func checkLayout() error {
	if ptrSize != 8 {
		return fmt.Errorf("32-bit platform not checked")
	}
	m := make(map[uint64]uint64)
	var p writeProbe
	for i := uint64(0); i < 3000; i++ {
		h := headerOf(m)
		if h.p == nil {
			return fmt.Errorf("nil header")
		}
		before := h.swiss().capacity()
		dirLen := h.swiss().dirLen
		predicted := dirLen <= 1 && before > 0 && p.mayGrow(h)
		m[i] = i
		if err := checkSwiss(h.swiss(), len(m)); err != nil {
			return fmt.Errorf("after %d inserts: %w", len(m), err)
		}
		after := h.swiss().capacity()
		if dirLen <= 1 && before > 0 && (after > before) != predicted {
			return fmt.Errorf("insert %d: capacity %d -> %d, predicted %v", i+1, before, after, predicted)
		}
		if after < before || (after > before && before > 0 && dirLen <= 1 && after != 2*before) {
			return fmt.Errorf("insert %d: capacity %d -> %d is not a doubling", i+1, before, after)
		}
	}
	hint := 1000
	h := headerOf(make(map[uint64]uint64, hint))
	if err := checkSwiss(h.swiss(), 0); err != nil {
		return fmt.Errorf("make(map, %d): %w", hint, err)
	}
	if got := h.swiss().capacity() / groupSlots; got != makeBuckets(uint64(hint)) {
		return fmt.Errorf("make(map, %d): %d groups, want %d", hint, got, makeBuckets(uint64(hint)))
	}
	return nil
}

func checkSwiss(m *swissMap, n int) error {
	if m.used != uint64(n) {
		return fmt.Errorf("used %d, len %d", m.used, n)
	}
	if m.dirLen == 0 {
		if n > groupSlots || (n > 0 && m.dirPtr == nil) {
			return fmt.Errorf("small map of %d entries, dirPtr %v", n, m.dirPtr)
		}
		return nil
	}
	if m.dirLen < 0 || m.dirLen > 1<<24 || m.dirLen != 1<<m.globalDepth || m.globalShift != 64-m.globalDepth || m.dirPtr == nil {
		return fmt.Errorf("directory of %d entries, depth %d, shift %d", m.dirLen, m.globalDepth, m.globalShift)
	}
	var used uint64
	for i := 0; i < m.dirLen; {
		t := m.table(i)
		if t == nil || t.localDepth > m.globalDepth || t.index != i {
			return fmt.Errorf("directory entry %d: table %p", i, t)
		}
		c := uint64(t.capacity)
		if c < groupSlots || c > maxTableCapacity || c&(c-1) != 0 || t.lengthMask+1 != c/groupSlots || t.groups == nil {
			return fmt.Errorf("table %d: capacity %d, %d groups", i, c, t.lengthMask+1)
		}
		if uint64(t.used)*groupSlots > c*maxAvgGroupLoad || uint64(t.used)+uint64(t.growthLeft) > c {
			return fmt.Errorf("table %d: used %d, growthLeft %d of %d", i, t.used, t.growthLeft, c)
		}
		used += uint64(t.used)
		span := 1 << (m.globalDepth - t.localDepth)
		for j := i + 1; j < i+span; j++ {
			if m.table(j) != t {
				return fmt.Errorf("directory entry %d does not repeat table %d", j, i)
			}
		}
		i += span
	}
	if used != m.used {
		return fmt.Errorf("tables hold %d, map %d", used, m.used)
	}
	return nil
}
