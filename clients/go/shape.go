package mapscope

// shape is what introspection reads off a real Go map (or, on a Go
// version whose layout has not been checked, what the model computes).
// Read it only under the map's coordination: the caller holds the lock
// that orders it with every write. Reading a header while its owner writes
// is a data race the race detector does not always catch: unsynchronised
// walks of a swiss directory gave capacity < count hundreds of times in
// millions of reads (README.md, "What cannot be done").
type shape struct {
	// Layout is "classic", "swiss" or "model".
	Layout string
	// Buckets is 2^B for a classic map (the new array during a growth),
	// and capacity/8 for a swiss map (the whole map, all tables). A map
	// that has not allocated its storage yet has 1, a nil map 0.
	Buckets uint64
	// OverflowBuckets is a classic map's noverflow (scaled by 2^(B-15)
	// above B = 15, where incrnoverflow counts only that fraction); 0 for
	// swiss.
	OverflowBuckets uint64
	// Growing: a classic map's evacuation is in progress (oldbuckets != nil).
	// Never true for swiss maps, whose growth happens inside one write.
	Growing bool
	// SameSize: the growth in progress keeps the bucket count.
	SameSize bool
	// OldBuckets is the old array's bucket count during a growth.
	OldBuckets uint64
	// EvacuatedOldBuckets is nevacuate during a growth: every old bucket
	// below it is evacuated (evacuate may have moved some above it too).
	EvacuatedOldBuckets uint64
	// MemoryBytes estimates the heap bytes the map holds (see
	// classicMemory and swissMemory): the arrays, the header, overflow
	// buckets, tables and directory, and keys or elements stored
	// separately; not size-class rounding.
	MemoryBytes uint64
	// Modelled: the numbers come from the model, not from the map.
	Modelled bool
	// Tables is a swiss map's number of distinct tables (0 for a small map
	// of one group, and for classic maps).
	Tables uint64
}

// inspectMap reads m's shape. peak is the most entries m has held and hint
// the size hint it was made with; only the model uses them. The caller
// holds m's coordination.
func inspectMap[K comparable, V any](m map[K]V, peak, hint uint64) shape {
	sz := sizesOf[K, V]()
	if introspecting() {
		return readShape(headerOf(m), sz)
	}
	if m == nil {
		return shape{Layout: "model", Modelled: true}
	}
	return modelShapeOf(sz, peak, hint, uint64(len(m)))
}

// modelShape is the classic layout's bucket count computed from the peak
// entries and the size hint: the smallest B with max(peak, hint) <=
// 6.5 * 2^B (any count up to 8 fits B = 0), as makemap and mapassign
// decide it (see model.go). MemoryBytes is left 0: it needs the key and
// element sizes (modelShapeOf).
func modelShape(peak, hint uint64) shape {
	return shape{Layout: "model", Buckets: modelBuckets(max(peak, hint)), Modelled: true}
}

// layoutInfo names the layout introspection reads ("classic", "swiss" or
// "model") and, when it reads none, why: the start-up self-check failed,
// or the Go release is newer than the layouts checked. The reporter puts
// both in the sdk field. The first call runs the self-check.
func layoutInfo() (layout, note string) {
	introspecting()
	return introspection.layout, introspection.note
}
