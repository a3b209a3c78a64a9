package mapscope

// shape is what introspection reads off a real Go map (or, on a Go
// version whose layout has not been checked, what the model computes).
// Read it only under the map's coordination: the caller holds the lock
// that orders it with every write (see "Reading a map from another
// goroutine" in README.md).
type shape struct {
	// Layout is "classic", "swiss" or "model".
	Layout string
	// Buckets is 2^B for a classic map (the new array during a growth),
	// and capacity/8 for a swiss map (the whole map, all tables).
	Buckets uint64
	// OverflowBuckets is a classic map's noverflow; 0 for swiss.
	OverflowBuckets uint64
	// Growing: a classic map's evacuation is in progress (oldbuckets != nil).
	// Never true for swiss maps, whose growth happens inside one write.
	Growing bool
	// SameSize: the growth in progress keeps the bucket count.
	SameSize bool
	// OldBuckets is the old array's bucket count during a growth.
	OldBuckets uint64
	// EvacuatedOldBuckets is nevacuate during a growth.
	EvacuatedOldBuckets uint64
	// MemoryBytes estimates the heap bytes the map holds.
	MemoryBytes uint64
	// Modelled: the numbers come from the model, not from the map.
	Modelled bool
}

// inspectMap reads m's shape. peak is the most entries m has held and hint
// the size hint it was made with; only the model uses them. The caller
// holds m's coordination.
//
// Replaced by the layout-specific implementation (introspection work in
// progress); until then every map is modelled.
func inspectMap[K comparable, V any](m map[K]V, peak, hint uint64) shape {
	return modelShape(peak, hint)
}

// modelShape is the classic layout's bucket count computed from the peak
// entries and the size hint: the smallest B with peak <= 6.5 * 2^B.
func modelShape(peak, hint uint64) shape {
	n := peak
	if hint > n {
		n = hint
	}
	b := uint(0)
	for n > 8 && n*2 > 13<<b {
		b++
	}
	return shape{Layout: "model", Buckets: 1 << b, Modelled: true}
}

// layoutInfo names the layout introspection reads ("classic", "swiss" or
// "model") and, when introspection was switched off by the start-up
// self-check, why. The reporter puts both in the sdk field.
func layoutInfo() (layout, note string) {
	return "model", ""
}
