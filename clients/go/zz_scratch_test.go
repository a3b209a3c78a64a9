package mapscope

import "testing"

func (m *Map[K, V]) getNoDefer(k K) (V, bool) {
	if !m.lock.tryRLock() && !m.lockRead() {
		v, ok := m.m[k]
		return v, ok
	}
	v, ok := m.m[k]
	m.lock.runlock()
	return v, ok
}

func BenchmarkZGet(b *testing.B) {
	var m Map[int, int]
	for i := 0; i < benchEntries; i++ {
		m.Set(i, i)
	}
	b.Run("defer", func(b *testing.B) {
		s := 0
		for i := 0; i < b.N; i++ {
			v, _ := m.Get(i & benchMask)
			s += v
		}
		sink = s
	})
	b.Run("nodefer", func(b *testing.B) {
		s := 0
		for i := 0; i < b.N; i++ {
			v, _ := m.getNoDefer(i & benchMask)
			s += v
		}
		sink = s
	})
}
