package mapscope

import "math/bits"

// The model: what a classic Go map (runtime/map.go before Go 1.24, and
// GOEXPERIMENT=noswissmap on 1.24–1.25) holds, computed from the most
// entries it ever held and the hint it was made with. It is exact for
// classic maps and stands in for introspection where the layout is not
// verified (Go 1.28 and later, or a failed start-up self-check); its
// numbers are then marked modelled.
//
// Two facts make it exact:
//   - makemap picks the smallest B with !overLoadFactor(hint, B), and an
//     insert that finds overLoadFactor(count+1, B) starts a growth to B+1,
//     so B after n inserts is the smallest B with !overLoadFactor(n, B),
//     and never less than the hint's B;
//   - a map never shrinks (golang/go#20135): deletes keep B, so B follows
//     the PEAK entry count, not the current one.
//
// One case it cannot see: a same-size growth (too many overflow buckets)
// running while inserts pass the next threshold defers that doubling to
// the next insert after the evacuation; until then B is one lower.

// loadFactorNum and loadFactorDen are runtime/map.go's: 13/2 = 6.5 entries
// per bucket on average.
const (
	loadFactorNum = 13
	loadFactorDen = 2
	bucketCount   = 8 // abi.MapBucketCount
)

// overLoadFactor is runtime/map.go's overLoadFactor: count entries placed
// in 2^b buckets are over the load factor. Note the integer division: for
// b = 0 the bound is 0, so the rule is just count > 8.
func overLoadFactor(count uint64, b uint8) bool {
	return count > bucketCount && count > loadFactorNum*((uint64(1)<<b)/loadFactorDen)
}

// tooManyOverflowBuckets is runtime/map.go's tooManyOverflowBuckets: as
// many overflow buckets as buckets (with B capped at 15) starts a
// same-size growth.
func tooManyOverflowBuckets(noverflow uint16, b uint8) bool {
	if b > 15 {
		b = 15
	}
	return noverflow >= uint16(1)<<(b&15)
}

// modelB is the B a classic map has after holding at most n entries, or
// after make(map, n): the smallest b with !overLoadFactor(n, b).
func modelB(n uint64) uint8 {
	b := uint8(0)
	for b < 63 && overLoadFactor(n, b) {
		b++
	}
	return b
}

// modelBuckets is 2^modelB(n).
func modelBuckets(n uint64) uint64 { return 1 << modelB(n) }

// level is log2 of a bucket count, rounded down: how many doublings a map
// of one bucket needs to reach it. A map without buckets (nil) is -1.
func level(buckets uint64) int {
	if buckets == 0 {
		return -1
	}
	return bits.Len64(buckets) - 1
}

// classicArray is the number of buckets makeBucketArray allocates for 2^b:
// from b = 4 on it adds 2^(b-4) preallocated overflow buckets (the size
// class rounding it then applies is left out).
func classicArray(b uint8) uint64 {
	n := uint64(1) << b
	if b >= 4 {
		n += uint64(1) << (b - 4)
	}
	return n
}

// classicHeaderBytes is runtime.hmap's size on 64-bit platforms (56 with
// the clearSeq field of Go 1.24's noswiss maps; the difference is noise).
const classicHeaderBytes = 48

// classicMemory estimates the heap bytes of a classic map with 2^b buckets
// and overflow overflow buckets, plus the old array of oldB buckets while
// growing: the arrays (with their preallocated overflow buckets), the
// overflow buckets beyond those, the header, and each entry's separately
// allocated key or element when larger than 128 bytes. Old overflow
// buckets during a growth are not counted (noverflow restarts at 0 when a
// growth starts, hashGrow), nor are size-class roundings: an estimate.
func classicMemory(sz typeSizes, b uint8, overflow uint64, growing bool, oldB uint8, entries uint64) uint64 {
	mem := uint64(classicHeaderBytes) + classicArray(b)*uint64(sz.bucket)
	if prealloc := classicArray(b) - uint64(1)<<b; overflow > prealloc {
		mem += (overflow - prealloc) * uint64(sz.bucket)
	}
	if growing {
		mem += classicArray(oldB) * uint64(sz.bucket)
	}
	return mem + entries*uint64(sz.indirect)
}

// modelShapeOf is modelShape with the memory estimate for K and V.
func modelShapeOf(sz typeSizes, peak, hint, entries uint64) shape {
	s := modelShape(peak, hint)
	s.MemoryBytes = classicMemory(sz, modelB(max(peak, hint)), 0, false, 0, entries)
	return s
}
