package mapscope

import (
	"sync"
	"testing"
)

// The cost of a Map next to the code it replaces: a plain map (one
// goroutine only), the same map behind a sync.RWMutex (what a careful user
// writes), and sync.Map. Keys are ints; the maps hold benchEntries entries
// before a Get or an update.
//
//	go test -run '^$' -bench . -benchtime 1s -count 3

const benchEntries = 1 << 12
const benchMask = benchEntries - 1

// benchMap is the interface the benchmarks drive; each implementation is
// what a user would write, so the calls are direct method calls.
type benchMap interface {
	get(k int) (int, bool)
	set(k, v int)
}

type plainMap map[int]int

func (m plainMap) get(k int) (int, bool) { v, ok := m[k]; return v, ok }
func (m plainMap) set(k, v int)          { m[k] = v }

type rwMap struct {
	mu sync.RWMutex
	m  map[int]int
}

func (m *rwMap) get(k int) (int, bool) {
	m.mu.RLock()
	v, ok := m.m[k]
	m.mu.RUnlock()
	return v, ok
}

func (m *rwMap) set(k, v int) {
	m.mu.Lock()
	m.m[k] = v
	m.mu.Unlock()
}

type syncMap struct{ m sync.Map }

func (m *syncMap) get(k int) (int, bool) {
	v, ok := m.m.Load(k)
	if !ok {
		return 0, false
	}
	return v.(int), true
}
func (m *syncMap) set(k, v int) { m.m.Store(k, v) }

type scopeMap struct{ m Map[int, int] }

func (m *scopeMap) get(k int) (int, bool) { return m.m.Get(k) }
func (m *scopeMap) set(k, v int)          { m.m.Set(k, v) }

type benchImpl struct {
	name     string
	make     func() benchMap
	parallel bool // safe for several goroutines
}

var benchImpls = []benchImpl{
	{"plain", func() benchMap { return plainMap{} }, false},
	{"rwmutex", func() benchMap { return &rwMap{m: map[int]int{}} }, true},
	{"syncmap", func() benchMap { return &syncMap{} }, true},
	{"mapscope", func() benchMap { return &scopeMap{} }, true},
}

func filled(impl benchImpl) benchMap {
	m := impl.make()
	for i := 0; i < benchEntries; i++ {
		m.set(i, i)
	}
	return m
}

func BenchmarkGetHit(b *testing.B) {
	for _, impl := range benchImpls {
		b.Run(impl.name, func(b *testing.B) {
			m := filled(impl)
			b.ResetTimer()
			s := 0
			for i := 0; i < b.N; i++ {
				v, _ := m.get(i & benchMask)
				s += v
			}
			sink = s
		})
	}
}

func BenchmarkSetUpdate(b *testing.B) {
	for _, impl := range benchImpls {
		b.Run(impl.name, func(b *testing.B) {
			m := filled(impl)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.set(i&benchMask, i)
			}
		})
	}
}

// BenchmarkSetInsert inserts fresh keys into a map that starts empty: the
// growths are part of the cost.
func BenchmarkSetInsert(b *testing.B) {
	for _, impl := range benchImpls {
		b.Run(impl.name, func(b *testing.B) {
			m := impl.make()
			for i := 0; i < b.N; i++ {
				m.set(i, i)
			}
		})
	}
}

// BenchmarkMixed is 9 Gets for 1 update, one goroutine.
func BenchmarkMixed(b *testing.B) {
	for _, impl := range benchImpls {
		b.Run(impl.name, func(b *testing.B) {
			m := filled(impl)
			b.ResetTimer()
			s := 0
			for i := 0; i < b.N; i++ {
				if i%10 == 0 {
					m.set(i&benchMask, i)
				} else {
					v, _ := m.get(i & benchMask)
					s += v
				}
			}
			sink = s
		})
	}
}

func BenchmarkParallelGet(b *testing.B) {
	for _, impl := range benchImpls {
		if !impl.parallel {
			continue
		}
		b.Run(impl.name, func(b *testing.B) {
			m := filled(impl)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i, s := 0, 0
				for pb.Next() {
					v, _ := m.get(i & benchMask)
					s += v
					i++
				}
				sink = s
			})
		})
	}
}

// BenchmarkParallelMixed is 9 Gets for 1 update on each goroutine. For a
// Map, a write that finds another goroutine in the map is a
// concurrent_write misuse (counted, its event rate-limited): this
// measures a program the Map reports.
func BenchmarkParallelMixed(b *testing.B) {
	for _, impl := range benchImpls {
		if !impl.parallel {
			continue
		}
		b.Run(impl.name, func(b *testing.B) {
			saved := std
			std = newRegistry(defaultEventBuffer)
			defer func() { std = saved }()
			m := filled(impl)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i, s := 0, 0
				for pb.Next() {
					if i%10 == 0 {
						m.set(i&benchMask, i)
					} else {
						v, _ := m.get(i & benchMask)
						s += v
					}
					i++
				}
				sink = s
			})
			if sm, ok := m.(*scopeMap); ok {
				b.ReportMetric(float64(sm.m.concurrent.Load())/float64(b.N), "misuse/op")
			}
		})
	}
}

var sink int

// BenchmarkSnapshot is the reporter's cost per map and report: lock, read
// the header (a classic map) or walk the directory (a swiss map of 100,000
// entries: 128 tables), build the wire stats.
func BenchmarkSnapshot(b *testing.B) {
	saved := std
	std = newRegistry(defaultEventBuffer)
	defer func() { std = saved }()
	var mu sync.Mutex
	m := make(map[int]int)
	for i := 0; i < 100_000; i++ {
		m[i] = i
	}
	o := Observe("bench", &m, &mu)
	defer o.Stop()
	l, _ := layoutInfo()
	b.Run("observe-100k-"+l, func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			o.t.snapshot()
		}
	})
	var sm Map[int, int]
	for i := 0; i < 100_000; i++ {
		sm.Set(i, i)
	}
	b.Run("map-100k-"+l, func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			sm.snapshot()
		}
	})
}
