package mapscope

import "unsafe"

// What every layout shares: a map value is one pointer to the runtime's
// header (runtime/map.go's *hmap for classic maps,
// internal/runtime/maps.Map for swiss maps; the compiler treats every map
// type as pointer-shaped), and a map's key and element are stored inline
// up to 128 bytes and behind a pointer above (abi.MapMaxKeyBytes and
// abi.MapMaxElemBytes, the same in every version since Go 1.0's hashmap).

// header is a map's runtime header: the pointer its map value holds. It is
// only read under the map's coordination.
type header struct{ p unsafe.Pointer }

// headerOf returns m's runtime header; nil for a nil map.
func headerOf[K comparable, V any](m map[K]V) header {
	return header{*(*unsafe.Pointer)(unsafe.Pointer(&m))}
}

// addr is the header's address, the value a crash traceback prints for the
// map argument of runtime.mapassign and friends.
func (h header) addr() uintptr { return uintptr(h.p) }

// maxInline is the largest key or element a bucket or slot holds inline
// (abi.MapMaxKeyBytes, abi.MapMaxElemBytes).
const maxInline = 128

// ptrSize is the size of a pointer (goarch.PtrSize).
const ptrSize = unsafe.Sizeof(uintptr(0))

// typeSizes are the sizes one map type's storage is made of: the classic
// bucket, the swiss group, and the separate allocations of keys and
// elements stored indirectly.
type typeSizes struct {
	// bucket is the classic bucket: 8 tophash bytes, 8 keys, 8 elements
	// and the overflow pointer (cmd/compile reflectdata.MapBucketType).
	bucket uintptr
	// group is the swiss group: an 8-byte control word and 8 slots of
	// {key, elem} (cmd/compile reflectdata.MapGroupType, interleaved
	// layout; the GOEXPERIMENT=mapsplitgroup layout differs by padding
	// only).
	group uintptr
	// indirect is what each entry allocates outside the array: the key
	// and/or element when larger than 128 bytes.
	indirect uintptr
}

type classicBucket[K comparable, V any] struct {
	top   [8]uint8
	keys  [8]K
	elems [8]V
	_     unsafe.Pointer
}

type swissSlot[K any, V any] struct {
	key  K
	elem V
}

type swissGroup[K any, V any] struct {
	ctrl  uint64
	slots [8]swissSlot[K, V]
}

// sizesOf computes K and V's storage sizes with the compiler's own struct
// layout (including its rule that a struct ending in a zero-size field gets
// a byte of padding, cmd/compile types.CalcStructSize), choosing the
// pointer variant the runtime uses for keys or elements over 128 bytes.
func sizesOf[K comparable, V any]() typeSizes {
	var k K
	var v V
	ks, vs := unsafe.Sizeof(k), unsafe.Sizeof(v)
	s := typeSizes{}
	switch {
	case ks > maxInline && vs > maxInline:
		s.bucket = unsafe.Sizeof(classicBucket[*K, *V]{})
		s.group = unsafe.Sizeof(swissGroup[*K, *V]{})
		s.indirect = ks + vs
	case ks > maxInline:
		s.bucket = unsafe.Sizeof(classicBucket[*K, V]{})
		s.group = unsafe.Sizeof(swissGroup[*K, V]{})
		s.indirect = ks
	case vs > maxInline:
		s.bucket = unsafe.Sizeof(classicBucket[K, *V]{})
		s.group = unsafe.Sizeof(swissGroup[K, *V]{})
		s.indirect = vs
	default:
		s.bucket = unsafe.Sizeof(classicBucket[K, V]{})
		s.group = unsafe.Sizeof(swissGroup[K, V]{})
	}
	return s
}
