//go:build (!go1.24 || (!go1.26 && !goexperiment.swissmap)) && !mapscope_model

package mapscope

import "testing"

// insertsChecked is how far the growth-rule test fills a map: 1e6 as the
// layout was verified, 100,000 with -short.
func insertsChecked() int {
	if testing.Short() {
		return 100_000
	}
	return 1_000_000
}

// TestClassicFollowsTheGrowthRule fills a map one insert at a time and
// checks, at every step, the header against Go's rule and the model: B is
// the smallest with n <= 6.5 * 2^B, count is len, an evacuation in
// progress is a doubling whose mark is below the old bucket count, and
// mayGrow predicted exactly the inserts that grew. The model is then exact
// at every n in 0..1e6 (0 mismatches), and after deletes.
func TestClassicFollowsTheGrowthRule(t *testing.T) {
	m := make(map[int]int)
	var p writeProbe
	growths, mismatches := 0, 0
	for i := 0; i < insertsChecked(); i++ {
		h := headerOf(m)
		b0 := h.hmap().b
		predicted := p.mayGrow(h)
		m[i] = i
		hm := h.hmap()
		n := uint64(len(m))
		if hm.count != len(m) {
			t.Fatalf("count %d, len %d", hm.count, len(m))
		}
		s := readShape(h, sizesOf[int, int]())
		if s.Buckets != modelShape(n, 0).Buckets {
			mismatches++
		}
		if uint64(1)<<hm.b != s.Buckets || hm.b != modelB(n) {
			t.Fatalf("after %d inserts: B %d, buckets %d, rule says B %d", n, hm.b, s.Buckets, modelB(n))
		}
		if s.Growing && (s.SameSize || s.OldBuckets != s.Buckets/2 || s.EvacuatedOldBuckets >= s.OldBuckets) {
			t.Fatalf("after %d inserts: evacuation %+v", n, s)
		}
		if grew := hm.b != b0; grew != predicted {
			t.Fatalf("insert %d: grew %v, mayGrow said %v", n, grew, predicted)
		}
		if hm.b != b0 {
			growths++
		}
	}
	if mismatches != 0 {
		t.Errorf("model: %d mismatches", mismatches)
	}
	t.Logf("%d inserts, %d doublings, final B %d", len(m), growths, headerOf(m).hmap().b)

	// Deletes keep B: the model follows the peak.
	peak := uint64(len(m))
	for i := 0; i < len(m)*9/10; i++ {
		delete(m, i)
	}
	s := readShape(headerOf(m), sizesOf[int, int]())
	if want := modelShape(peak, 0).Buckets; s.Buckets != want {
		t.Errorf("after deleting 90%%: %d buckets, model (peak %d) says %d", s.Buckets, peak, want)
	}
	if s.Buckets == modelShape(uint64(len(m)), 0).Buckets {
		t.Errorf("after deleting 90%%: %d buckets, as if following the current %d entries", s.Buckets, len(m))
	}
}

func TestClassicModelAfterDeletes(t *testing.T) {
	m := make(map[int]int)
	for i := 0; i < 100_000; i++ {
		m[i] = i
	}
	for i := 0; i < 90_000; i++ {
		delete(m, i)
	}
	s := inspectMap(m, 100_000, 0)
	if s.Buckets != 16384 || modelShape(100_000, 0).Buckets != 16384 {
		t.Errorf("100k inserts, 90%% deleted: read %d buckets, model %d; want 16384", s.Buckets, modelShape(100_000, 0).Buckets)
	}
}

// TestClassicStalledEvacuation: 6.5 * 2^B + 1 inserts start a growth whose
// evacuation then stops with the writes, half done at most.
func TestClassicStalledEvacuation(t *testing.T) {
	for _, b := range []uint{3, 10, 14} {
		m := make(map[int]int)
		n := 13<<b/2 + 1
		for i := 0; i < n; i++ {
			m[i] = i
		}
		for round := 0; round < 3; round++ { // reads do not evacuate
			_ = m[0]
			s := inspectMap(m, uint64(n), 0)
			if !s.Growing || s.SameSize || s.OldBuckets != 1<<b || s.Buckets != 2<<b || s.EvacuatedOldBuckets >= s.OldBuckets {
				t.Fatalf("B %d, %d inserts: %+v, want an evacuation of %d old buckets in progress", b, n, s, 1<<b)
			}
			w := wireStatsOf(uint64(n), uint64(n), s)
			if w.Evacuation == nil || w.Evacuation.Kind != "double" || w.Evacuation.OldBuckets != 1<<b {
				t.Fatalf("wire evacuation %+v", w.Evacuation)
			}
		}
		// Writes finish it: at most 2^B of them.
		for i := 0; i < 1<<b && inspectMap(m, 0, 0).Growing; i++ {
			m[i] = i
		}
		if s := inspectMap(m, 0, 0); s.Growing {
			t.Fatalf("B %d: still growing after %d writes: %+v", b, 1<<b, s)
		}
	}
}

// TestClassicSameSizeGrowth provokes overflow buckets with churn (inserts
// of new keys and deletes of old ones at a steady size) until a same-size
// growth shows.
func TestClassicSameSizeGrowth(t *testing.T) {
	m := make(map[int]int)
	const size = 6000 // below 6.5 * 1024: B stays 10
	for i := 0; i < size; i++ {
		m[i] = i
	}
	seen := false
	for i := size; i < 20_000_000 && !seen; i++ {
		m[i] = i
		delete(m, i-size)
		s := inspectMap(m, 0, 0)
		if s.Buckets != 1024 {
			t.Fatalf("churn changed the bucket count: %+v", s)
		}
		if s.Growing {
			if !s.SameSize || s.OldBuckets != 1024 {
				t.Fatalf("growth %+v, want same-size", s)
			}
			seen = true
		}
	}
	if !seen {
		t.Skip("no same-size growth in 20M churn writes")
	}
}
