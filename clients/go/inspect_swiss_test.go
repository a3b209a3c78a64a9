//go:build go1.24 && !go1.28 && (go1.26 || goexperiment.swissmap) && !mapscope_model

package mapscope

import "testing"

// TestSwissCapacityFollowsUsed fills a map to 100,000 entries one insert
// at a time and checks every reading: used is len, capacity (8 x buckets)
// holds the entries at most 7/8 full (a lone group holds 8), the map's
// doublings counted by the growth book are the powers of two its capacity
// crossed, 14 for 100k entries, while the tables grew or split far more
// often (each table event is not a growth of the map).
func TestSwissCapacityFollowsUsed(t *testing.T) {
	m := make(map[int]int)
	var book growthBook
	book.rebase(1)
	tableEvents, last := 0, uint64(1)
	var p writeProbe
	measured := 0
	for i := 0; i < 100_000; i++ {
		h := headerOf(m)
		timed := p.mayGrow(h)
		m[i] = i
		if n := p.after(h, timed, now()); n.finished.ok {
			measured++
		}
		sm := h.swiss()
		if sm.used != uint64(len(m)) {
			t.Fatalf("used %d, len %d", sm.used, len(m))
		}
		s := readShape(h, sizesOf[int, int]())
		capacity := s.Buckets * 8
		switch {
		case sm.dirLen == 0 && uint64(len(m)) > capacity:
			t.Fatalf("small map: %d entries in %d slots", len(m), capacity)
		case sm.dirLen > 0 && uint64(len(m))*8 > capacity*7:
			t.Fatalf("%d entries in %d slots: over 7/8", len(m), capacity)
		case s.Growing || s.OverflowBuckets != 0 || s.Layout != "swiss":
			t.Fatalf("swiss shape %+v", s)
		}
		if s.Buckets != last {
			tableEvents++
			last = s.Buckets
		}
		book.catchUp(s.Buckets)
	}
	if err := checkSwiss(headerOf(m).swiss(), len(m)); err != nil {
		t.Fatal(err)
	}
	if book.counts.Double != 14 {
		t.Errorf("100k inserts: %d doublings, want 14", book.counts.Double)
	}
	if tableEvents <= 14 {
		t.Errorf("%d capacity changes: expected table splits between doublings", tableEvents)
	}
	// Timed at the write: the small group's move to a table, the single
	// table's doublings up to 1024 slots and its first split.
	if measured != 8 {
		t.Errorf("%d growths predicted and timed, want 8", measured)
	}
	t.Logf("100k entries: %d groups in %d tables, %d capacity changes, %d doublings (%d timed)",
		readShape(headerOf(m), sizesOf[int, int]()).Buckets, readShape(headerOf(m), sizesOf[int, int]()).Tables,
		tableEvents, book.counts.Double, measured)
}

// TestSwissNeverEvacuates: a swiss growth finishes inside its insert.
func TestSwissNeverEvacuates(t *testing.T) {
	m := make(map[int]int)
	for i := 0; i < 13<<10/2+1; i++ {
		m[i] = i
		if s := inspectMap(m, 0, 0); s.Growing || s.EvacuatedOldBuckets != 0 {
			t.Fatalf("evacuation in a swiss map: %+v", s)
		}
	}
}

// TestSwissDeletesKeepCapacity: like classic maps, swiss maps keep their
// capacity after deletes.
func TestSwissDeletesKeepCapacity(t *testing.T) {
	m := make(map[int]int)
	for i := 0; i < 100_000; i++ {
		m[i] = i
	}
	before := inspectMap(m, 0, 0).Buckets
	for i := 0; i < 90_000; i++ {
		delete(m, i)
	}
	if after := inspectMap(m, 0, 0).Buckets; after != before {
		t.Errorf("deletes changed the buckets: %d -> %d", before, after)
	}
}
