package mapscope

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func observedOf(o *Observed) tracked { return o.t }

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, want) {
			t.Errorf("panic %v, want one naming %q", r, want)
		}
	}()
	f()
}

func TestObserveRejectsNil(t *testing.T) {
	ownRegistry(t)
	m := map[int]int{}
	mustPanic(t, "locker is nil", func() { Observe("x", &m, nil) })
	mustPanic(t, "m is nil", func() { Observe[int, int]("x", nil, &sync.Mutex{}) })
}

func TestObserveDerivesGrowths(t *testing.T) {
	r := ownRegistry(t)
	fakeClock(t, time.Millisecond)
	var mu sync.Mutex
	m := map[int]int{}
	o := Observe("observed", &m, &mu, Labels{"tier": "a"})
	if got := r.tracked(); len(got) != 1 || got[0] != observedOf(o) {
		t.Fatalf("not registered: %v", got)
	}
	var w wireMap
	for round := 1; round <= 5; round++ {
		mu.Lock()
		for i := 0; i < 2000*round; i++ {
			m[i] = i
		}
		mu.Unlock()
		w = observedOf(o).snapshot()
	}
	doublings := uint64(level(w.Stats.Buckets))
	pending := uint64(0)
	if w.Stats.Evacuation != nil {
		pending = 1
	}
	ev := events(r, "growth")
	if w.Counters.Growths.Double != doublings || uint64(len(ev))+pending != doublings {
		t.Fatalf("%d buckets: %d doublings counted, %d events (+%d in progress)", w.Stats.Buckets, w.Counters.Growths.Double, len(ev), pending)
	}
	for _, e := range ev {
		if e.DurationSeconds != nil || e.Map != "observed" || e.Labels["tier"] != "a" {
			t.Fatalf("event %+v: an observed growth has no measured duration", e)
		}
	}
	c := w.Counters
	if c.Inserts != 0 || c.Updates != 0 || c.Removes != 0 || c.GrowthSeconds.Double != 0 {
		t.Fatalf("counters %+v: plain writes are not seen", c)
	}
	if w.Stats.Entries != 10_000 || w.Stats.PeakEntries != 10_000 || w.Stats.MemoryBytes == 0 {
		t.Fatalf("stats %+v", w.Stats)
	}
	if a, ok := observedOf(o).(addressed); !ok || a.mapAddress() != headerOf(m).addr() {
		t.Fatalf("mapAddress")
	}
	mu.Lock()
	for i := 0; i < 9000; i++ {
		delete(m, i)
	}
	mu.Unlock()
	w2 := observedOf(o).snapshot()
	if w2.Stats.Entries != 1000 || w2.Stats.PeakEntries != 10_000 || w2.Stats.Buckets != w.Stats.Buckets {
		t.Fatalf("after deletes: %+v (a Go map keeps its buckets)", w2.Stats)
	}
	o.Stop()
	o.Stop()
	if len(r.tracked()) != 0 {
		t.Fatal("still registered after Stop")
	}
}

// TestObserveStalledEvacuation: an observed classic map whose writes stop
// mid-growth shows the evacuation; the growth's event comes when it is
// seen finished.
func TestObserveStalledEvacuation(t *testing.T) {
	if layoutInfoName() != "classic" {
		t.Skip("only classic maps evacuate incrementally")
	}
	r := ownRegistry(t)
	var mu sync.Mutex
	m := map[int]int{}
	o := observedOf(Observe("stalled", &m, &mu))
	n := 13<<10/2 + 1
	for i := 0; i < n; i++ {
		m[i] = i
	}
	w := o.snapshot()
	e := w.Stats.Evacuation
	if e == nil || e.OldBuckets != 1024 || w.Counters.Growths.Double != 11 || len(events(r, "growth")) != 10 {
		t.Fatalf("evacuation %+v, growths %+v, %d events", e, w.Counters.Growths, len(events(r, "growth")))
	}
	if w.Counters.EvacuatedBuckets != 1023+e.EvacuatedOldBuckets {
		t.Fatalf("evacuated %d, want 1023 + %d", w.Counters.EvacuatedBuckets, e.EvacuatedOldBuckets)
	}
	if again := o.snapshot(); again.Stats.Evacuation == nil || again.Counters.Growths.Double != 11 {
		t.Fatalf("a stalled evacuation is counted once: %+v", again.Counters.Growths)
	}
	for i := 0; i < 1024; i++ {
		m[i] = i
	}
	w = o.snapshot()
	if w.Stats.Evacuation != nil || w.Counters.Growths.Double != 11 || len(events(r, "growth")) != 11 || w.Counters.EvacuatedBuckets != 2047 {
		t.Fatalf("after the writes: %+v, %+v, %d events, evacuated %d", w.Stats.Evacuation, w.Counters.Growths,
			len(events(r, "growth")), w.Counters.EvacuatedBuckets)
	}
}

// TestObserveSameSizeGrowth: churn makes a classic map grow at the same
// size; a reading that sees it in progress counts it once.
func TestObserveSameSizeGrowth(t *testing.T) {
	if layoutInfoName() != "classic" {
		t.Skip("only classic maps grow at the same size")
	}
	r := ownRegistry(t)
	var mu sync.Mutex
	m := map[int]int{}
	const size = 6000
	for i := 0; i < size; i++ {
		m[i] = i
	}
	o := observedOf(Observe("churned", &m, &mu))
	var w wireMap
	for i := size; i < 5_000_000 && w.Counters.Growths.SameSize == 0; i++ {
		m[i] = i
		delete(m, i-size)
		w = o.snapshot()
	}
	if w.Counters.Growths.SameSize != 1 || w.Stats.Evacuation == nil || w.Stats.Evacuation.Kind != "same_size" {
		t.Skipf("no same-size growth seen: %+v", w.Counters.Growths)
	}
	for i := 0; i < 2048 && w.Stats.Evacuation != nil; i++ {
		m[i+10_000_000] = i
		delete(m, i+10_000_000)
		w = o.snapshot()
	}
	ev := events(r, "growth")
	if w.Counters.Growths.SameSize != 1 || len(ev) != 1 || ev[0].GrowthKind != "same_size" || w.Counters.Growths.Double != 0 {
		t.Fatalf("growths %+v, events %+v", w.Counters.Growths, ev)
	}
}

// TestObserveWithRLocker: the reporter reads under the application's
// RWMutex (RLocker) while the application writes under Lock.
func TestObserveWithRLocker(t *testing.T) {
	r := ownRegistry(t)
	var mu sync.RWMutex
	m := map[string]int{}
	o := observedOf(Observe("rw", &m, mu.RLocker()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20_000; i++ {
			mu.Lock()
			m[strings.Repeat("k", i%50)+string(rune('a'+i%26))] = i
			if i%1000 == 0 {
				m = make(map[string]int) // replaced: followed
			}
			mu.Unlock()
		}
	}()
	for {
		select {
		case <-done:
			w := o.snapshot()
			if w.Stats.Entries == 0 || w.Stats.Buckets == 0 {
				t.Fatalf("stats %+v", w.Stats)
			}
			t.Logf("%d growth events over map replacements", len(events(r, "growth")))
			return
		default:
			o.snapshot()
		}
	}
}

// TestObserveReplacedMap: a map the application replaces starts a new
// count: its history is unknown, nothing is counted for the swap.
func TestObserveReplacedMap(t *testing.T) {
	ownRegistry(t)
	var mu sync.Mutex
	m := map[int]int{}
	o := observedOf(Observe("replaced", &m, &mu))
	for i := 0; i < 1000; i++ {
		m[i] = i
	}
	before := o.snapshot().Counters.Growths.Double
	m = make(map[int]int, 100_000)
	for i := 0; i < 1000; i++ {
		m[i] = i
	}
	if w := o.snapshot(); w.Counters.Growths.Double != before {
		t.Fatalf("a presized replacement counted growths: %d -> %d", before, w.Counters.Growths.Double)
	}
}
