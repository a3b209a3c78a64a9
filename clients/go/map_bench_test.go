package mapscope

import (
	"sync"
	"testing"
)

// The cost of a Map next to the code it replaces: a plain map (one
// goroutine only), the same map behind a sync.RWMutex (what a careful user
// writes, inline: mu.RLock(); v := m[k]; mu.RUnlock()), and sync.Map. Each
// loop calls its map directly, as an application would. Keys are ints;
// the maps hold benchEntries entries before a Get or an update.
//
//	go test -run '^$' -bench . -benchtime 1s -count 3

const benchEntries = 1 << 12
const benchMask = benchEntries - 1

const insertMask = 1<<16 - 1

var sink int

type rwMap struct {
	mu sync.RWMutex
	m  map[int]int
}

func newPlain() map[int]int {
	m := make(map[int]int)
	for i := 0; i < benchEntries; i++ {
		m[i] = i
	}
	return m
}

func newRW() *rwMap { return &rwMap{m: newPlain()} }

func newSync() *sync.Map {
	m := new(sync.Map)
	for i := 0; i < benchEntries; i++ {
		m.Store(i, i)
	}
	return m
}

func newScope() *Map[int, int] {
	m := new(Map[int, int])
	for i := 0; i < benchEntries; i++ {
		m.Set(i, i)
	}
	return m
}

func syncGet(m *sync.Map, k int) int {
	v, _ := m.Load(k)
	n, _ := v.(int)
	return n
}

// BenchmarkGetHit reads keys that are present.
func BenchmarkGetHit(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		m := newPlain()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			v := m[i&benchMask]
			s += v
		}
		sink = s
	})
	b.Run("rwmutex", func(b *testing.B) {
		m := newRW()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			m.mu.RLock()
			v := m.m[i&benchMask]
			m.mu.RUnlock()
			s += v
		}
		sink = s
	})
	b.Run("syncmap", func(b *testing.B) {
		m := newSync()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			v := syncGet(m, i&benchMask)
			s += v
		}
		sink = s
	})
	b.Run("mapscope", func(b *testing.B) {
		m := newScope()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			v, _ := m.Get(i & benchMask)
			s += v
		}
		sink = s
	})
}

// BenchmarkSetUpdate overwrites keys that are present.
func BenchmarkSetUpdate(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		m := newPlain()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m[i&benchMask] = i
		}
	})
	b.Run("rwmutex", func(b *testing.B) {
		m := newRW()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m.mu.Lock()
			m.m[i&benchMask] = i
			m.mu.Unlock()
		}
	})
	b.Run("syncmap", func(b *testing.B) {
		m := newSync()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m.Store(i&benchMask, i)
		}
	})
	b.Run("mapscope", func(b *testing.B) {
		m := newScope()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m.Set(i&benchMask, i)
		}
	})
}

// BenchmarkSetInsert inserts fresh keys into a new map that starts empty,
// 65,536 of them per map: the allocations and growths are part of the
// cost.
func BenchmarkSetInsert(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		var m map[int]int
		for i := 0; i < b.N; i++ {
			if i&insertMask == 0 {
				m = map[int]int{}
			}
			m[i&insertMask] = i
		}
	})
	b.Run("rwmutex", func(b *testing.B) {
		var m *rwMap
		for i := 0; i < b.N; i++ {
			if i&insertMask == 0 {
				m = &rwMap{m: map[int]int{}}
			}
			m.mu.Lock()
			m.m[i&insertMask] = i
			m.mu.Unlock()
		}
	})
	b.Run("syncmap", func(b *testing.B) {
		var m *sync.Map
		for i := 0; i < b.N; i++ {
			if i&insertMask == 0 {
				m = new(sync.Map)
			}
			m.Store(i&insertMask, i)
		}
	})
	b.Run("mapscope", func(b *testing.B) {
		var m *Map[int, int]
		for i := 0; i < b.N; i++ {
			if i&insertMask == 0 {
				m = new(Map[int, int])
			}
			m.Set(i&insertMask, i)
		}
	})
}

// BenchmarkMixed is 9 Gets for 1 update, one goroutine.
func BenchmarkMixed(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		m := newPlain()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			if i%10 == 0 {
				m[i&benchMask] = i
			} else {
				v := m[i&benchMask]
				s += v
			}
		}
		sink = s
	})
	b.Run("rwmutex", func(b *testing.B) {
		m := newRW()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			if i%10 == 0 {
				m.mu.Lock()
				m.m[i&benchMask] = i
				m.mu.Unlock()
			} else {
				m.mu.RLock()
				v := m.m[i&benchMask]
				m.mu.RUnlock()
				s += v
			}
		}
		sink = s
	})
	b.Run("syncmap", func(b *testing.B) {
		m := newSync()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			if i%10 == 0 {
				m.Store(i&benchMask, i)
			} else {
				v := syncGet(m, i&benchMask)
				s += v
			}
		}
		sink = s
	})
	b.Run("mapscope", func(b *testing.B) {
		m := newScope()
		b.ResetTimer()
		s := 0
		for i := 0; i < b.N; i++ {
			if i%10 == 0 {
				m.Set(i&benchMask, i)
			} else {
				v, _ := m.Get(i & benchMask)
				s += v
			}
		}
		sink = s
	})
}

// BenchmarkParallelGet reads from every P at once.
func BenchmarkParallelGet(b *testing.B) {
	b.Run("rwmutex", func(b *testing.B) {
		m := newRW()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i, s := 0, 0
			for pb.Next() {
				m.mu.RLock()
				v := m.m[i&benchMask]
				m.mu.RUnlock()
				s += v
				i++
			}
			sink = s
		})
	})
	b.Run("syncmap", func(b *testing.B) {
		m := newSync()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i, s := 0, 0
			for pb.Next() {
				v := syncGet(m, i&benchMask)
				s += v
				i++
			}
			sink = s
		})
	})
	b.Run("mapscope", func(b *testing.B) {
		m := newScope()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i, s := 0, 0
			for pb.Next() {
				v, _ := m.Get(i & benchMask)
				s += v
				i++
			}
			sink = s
		})
	})
}

// BenchmarkParallelMixed is 9 Gets for 1 update on every P at once. For a
// Map, a write that finds another goroutine in the map (or a read that
// finds a writer) is a concurrent_write misuse, counted (misuse/op), its
// event rate-limited: this measures a program the Map reports.
func BenchmarkParallelMixed(b *testing.B) {
	b.Run("rwmutex", func(b *testing.B) {
		defer swapStd()()
		m := newRW()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i, s := 0, 0
			for pb.Next() {
				if i%10 == 0 {
					m.mu.Lock()
					m.m[i&benchMask] = i
					m.mu.Unlock()
				} else {
					m.mu.RLock()
					v := m.m[i&benchMask]
					m.mu.RUnlock()
					s += v
				}
				i++
			}
			sink = s
		})
	})
	b.Run("syncmap", func(b *testing.B) {
		defer swapStd()()
		m := newSync()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i, s := 0, 0
			for pb.Next() {
				if i%10 == 0 {
					m.Store(i&benchMask, i)
				} else {
					v := syncGet(m, i&benchMask)
					s += v
				}
				i++
			}
			sink = s
		})
	})
	b.Run("mapscope", func(b *testing.B) {
		defer swapStd()()
		m := newScope()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i, s := 0, 0
			for pb.Next() {
				if i%10 == 0 {
					m.Set(i&benchMask, i)
				} else {
					v, _ := m.Get(i & benchMask)
					s += v
				}
				i++
			}
			sink = s
		})
		b.ReportMetric(float64(m.concurrent.Load())/float64(b.N), "misuse/op")
	})
}

// swapStd gives a benchmark its own registry; the returned func restores.
func swapStd() func() {
	saved := std
	std = newRegistry(defaultEventBuffer)
	return func() { std = saved }
}

// BenchmarkSnapshot is the reporter's cost per map and report: lock, read
// the header (a classic map) or walk the directory (a swiss map of 100,000
// entries: 128 tables), build the wire stats.
func BenchmarkSnapshot(b *testing.B) {
	defer swapStd()()
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
