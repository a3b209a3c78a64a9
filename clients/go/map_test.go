package mapscope

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ownRegistry gives the test a fresh std registry.
func ownRegistry(t *testing.T) *registry {
	t.Helper()
	saved := std
	std = newRegistry(100_000)
	t.Cleanup(func() { std = saved })
	return std
}

// fakeClock makes now advance by step at each reading.
func fakeClock(t *testing.T, step time.Duration) {
	t.Helper()
	var mu sync.Mutex
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	saved := now
	now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		at = at.Add(step)
		return at
	}
	t.Cleanup(func() { now = saved })
}

// waitFor polls cond (a state another goroutine reaches) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func events(r *registry, kind string) []wireEvent {
	var out []wireEvent
	for _, e := range r.pending(1 << 30) {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// sleepers is how many goroutines sleep in m's slow paths.
func (m *Map[K, V]) sleepers() int {
	return int(m.lock.parked.Load())
}

func TestMapZeroValueIsUsable(t *testing.T) {
	r := ownRegistry(t)
	var m Map[string, int]
	if v, ok := m.Get("a"); ok || v != 0 || m.Len() != 0 {
		t.Fatalf("empty map: %v %v %d", v, ok, m.Len())
	}
	m.Delete("a")
	m.Clear()
	m.Compact()
	m.Range(func(string, int) bool { t.Fatal("entry in an empty map"); return true })
	m.Set("a", 1)
	if v, ok := m.Get("a"); !ok || v != 1 || m.Len() != 1 {
		t.Fatalf("after Set: %v %v %d", v, ok, m.Len())
	}
	if len(r.tracked()) != 0 {
		t.Fatalf("a zero-value Map is reported before Register")
	}
	if id := m.id(); id.name != "_unnamed" {
		t.Fatalf("unnamed map id %q", id.name)
	}
	m.Register("zero", Labels{"tenant": "acme"})
	if got := r.tracked(); len(got) != 1 || got[0].id().name != "zero" || got[0].id().labels["tenant"] != "acme" {
		t.Fatalf("registered: %v", got)
	}
	w := m.snapshot()
	if w.Name != "zero" || w.Stats.Entries != 1 || w.Counters.Inserts != 1 || w.Stats.Buckets != 1 {
		t.Fatalf("snapshot %+v", w)
	}
	m.Unregister()
	m.Unregister()
	if len(r.tracked()) != 0 {
		t.Fatalf("still reported after Unregister")
	}
}

func TestMapCountsInsertsUpdatesRemoves(t *testing.T) {
	ownRegistry(t)
	m := NewMap[int, string]("counts", Capacity(100))
	for i := 0; i < 10; i++ {
		m.Set(i, "a")
	}
	for i := 0; i < 4; i++ {
		m.Set(i, "b") // updates
	}
	m.Delete(0)
	m.Delete(0)  // absent: not a remove
	m.Delete(99) // absent
	w := m.snapshot()
	c := w.Counters
	if c.Inserts != 10 || c.Updates != 4 || c.Removes != 1 || w.Stats.Entries != 9 || w.Stats.PeakEntries != 10 {
		t.Fatalf("counters %+v, stats %+v", c, w.Stats)
	}
	if v, _ := m.Get(1); v != "b" {
		t.Fatalf("Get(1) = %q", v)
	}
	m.Clear()
	if w := m.snapshot(); w.Counters.Removes != 10 || w.Stats.Entries != 0 || w.Stats.PeakEntries != 10 {
		t.Fatalf("after Clear: %+v %+v", w.Counters, w.Stats)
	}
	if want := makeBuckets(100); introspecting() && w.Stats.Buckets != want {
		t.Fatalf("Capacity(100): %d buckets, want %d", w.Stats.Buckets, want)
	}
}

// TestMapSecondWriterIsCountedAndWaits: a writer that finds another writer
// holding the map is counted, recorded at its own call site, and waits.
func TestMapSecondWriterIsCountedAndWaits(t *testing.T) {
	r := ownRegistry(t)
	m := NewMap[string, int]("writers")
	if !m.lock.tryLock() { // another writer, mid-write
		t.Fatal("lock taken")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Set("a", 1) // the misuse site
	}()
	waitFor(t, "the misuse count", func() bool { return m.concurrent.Load() == 1 })
	waitFor(t, "the writer to sleep", func() bool { return m.sleepers() == 1 })
	if _, ok := m.m["a"]; ok {
		t.Fatal("the second writer wrote while the first held the map")
	}
	m.lock.unlock()
	<-done
	if v, ok := m.Get("a"); !ok || v != 1 {
		t.Fatalf("the waiting write was lost: %v %v", v, ok)
	}
	ev := events(r, "misuse")
	if len(ev) != 1 || ev[0].MisuseKind != "concurrent_write" || ev[0].Map != "writers" {
		t.Fatalf("events %+v", ev)
	}
	if fn := ev[0].Attributes["code.function"]; !strings.Contains(fn, "TestMapSecondWriterIsCountedAndWaits.func") {
		t.Errorf("site %q: want the test's goroutine (the caller of Set)", fn)
	}
	if f := ev[0].Attributes["code.filepath"]; filepath.Base(f) != "map_test.go" {
		t.Errorf("site file %q", f)
	}
	if w := m.snapshot(); w.Counters.Misuse["concurrent_write"] != 1 {
		t.Errorf("misuse counters %v", w.Counters.Misuse)
	}
}

// TestMapReaderFindingAWriter: a read while a writer holds the map is a
// misuse too ("concurrent map read and map write").
func TestMapReaderFindingAWriter(t *testing.T) {
	r := ownRegistry(t)
	m := NewMap[string, int]("reader")
	m.Set("a", 1)
	m.lock.tryLock()
	got := make(chan int)
	go func() {
		v, _ := m.Get("a")
		got <- v
	}()
	waitFor(t, "the misuse count", func() bool { return m.concurrent.Load() == 1 })
	waitFor(t, "the reader to sleep", func() bool { return m.sleepers() == 1 })
	m.m["a"] = 2 // the writer's write
	m.lock.unlock()
	if v := <-got; v != 2 {
		t.Fatalf("the reader read %d during the write", v)
	}
	ev := events(r, "misuse")
	if len(ev) != 1 || ev[0].MisuseKind != "concurrent_write" {
		t.Fatalf("events %+v", ev)
	}
	if fn := ev[0].Attributes["code.function"]; !strings.Contains(fn, "TestMapReaderFindingAWriter.func") {
		t.Errorf("site %q: want the test's goroutine (the caller of Get)", fn)
	}
}

// TestMapReadersShare: two readers at once are not a misuse, and neither
// waits.
func TestMapReadersShare(t *testing.T) {
	ownRegistry(t)
	m := NewMap[string, int]("readers")
	m.Set("a", 1)
	if !m.lock.tryRLock() { // another reader, mid-read
		t.Fatal("read lock refused")
	}
	got := make(chan int)
	go func() {
		v, _ := m.Get("a")
		got <- v
	}()
	if v := <-got; v != 1 { // returned while the first reader holds the map
		t.Fatalf("Get = %d", v)
	}
	m.lock.runlock()
	if n := m.concurrent.Load(); n != 0 {
		t.Fatalf("readers counted as misuse: %d", n)
	}
}

// TestMapReporterIsNotAMisuse: a write that waits for the reporter's
// snapshot is not counted.
func TestMapReporterIsNotAMisuse(t *testing.T) {
	ownRegistry(t)
	m := NewMap[string, int]("reported")
	m.watch.Add(watchBenign + watchGen) // snapshot, mid-read
	m.lock.tryRLock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Set("a", 1)
	}()
	waitFor(t, "the writer to sleep", func() bool { return m.sleepers() == 1 })
	m.lock.runlock()
	m.watch.Add(watchGen - watchBenign)
	<-done
	if n := m.concurrent.Load(); n != 0 {
		t.Fatalf("waiting for the reporter counted as misuse: %d", n)
	}
}

// TestMapWriterDuringRange: Range holds the map; another goroutine's write
// is a misuse and waits for the iteration to end; another goroutine's
// read waits without being one.
func TestMapWriterDuringRange(t *testing.T) {
	ownRegistry(t)
	m := NewMap[int, int]("ranged")
	for i := 0; i < 10; i++ {
		m.Set(i, i)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	ranged := make(chan int)
	go func() {
		n := 0
		m.Range(func(k, v int) bool {
			if n == 0 {
				close(inside)
				<-release
			}
			n++
			return true
		})
		ranged <- n
	}()
	<-inside
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		m.Get(1)
	}()
	waitFor(t, "the reader to sleep", func() bool { return m.sleepers() == 1 })
	if n := m.concurrent.Load(); n != 0 {
		t.Fatalf("a read during Range counted as misuse")
	}
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		m.Set(100, 100)
	}()
	waitFor(t, "the misuse count", func() bool { return m.concurrent.Load() == 1 })
	waitFor(t, "the writer to sleep", func() bool { return m.sleepers() == 2 })
	close(release)
	if n := <-ranged; n != 10 {
		t.Fatalf("Range saw %d entries", n)
	}
	<-readDone
	<-writeDone
	if m.Len() != 11 {
		t.Fatalf("Len %d", m.Len())
	}
}

// TestMapCallbackUsesTheMap: Range's callback may read and write the map
// it iterates; a new key is iterate_while_mutating, updates and deletes
// are not.
func TestMapCallbackUsesTheMap(t *testing.T) {
	r := ownRegistry(t)
	m := NewMap[int, int]("iterated")
	for i := 0; i < 100; i++ {
		m.Set(i, i)
	}
	inserted := 0
	m.Range(func(k, v int) bool {
		if got, ok := m.Get(k); !ok || got != v {
			t.Errorf("Get(%d) in Range = %d %v", k, got, ok)
		}
		m.Set(k, v+1) // update
		if k%2 == 0 {
			m.Delete(k)
		}
		if k == 7 {
			m.Set(1000, 0) // insert: the misuse site
			inserted++
			m.Range(func(int, int) bool { return false }) // nested
			m.Compact()                                   // no-op inside Range
			_ = m.Len()
		}
		return true
	})
	if inserted != 1 || m.mutatedInRange.Load() != 1 || m.concurrent.Load() != 0 {
		t.Fatalf("iterate_while_mutating %d, concurrent %d", m.mutatedInRange.Load(), m.concurrent.Load())
	}
	ev := events(r, "misuse")
	if len(ev) != 1 || ev[0].MisuseKind != "iterate_while_mutating" {
		t.Fatalf("events %+v", ev)
	}
	if fn := ev[0].Attributes["code.function"]; !strings.Contains(fn, "TestMapCallbackUsesTheMap.func") {
		t.Errorf("site %q", fn)
	}
	m.Set(2000, 0) // outside Range: a plain insert
	if m.mutatedInRange.Load() != 1 {
		t.Fatalf("an insert outside Range counted")
	}
	if w := m.snapshot(); w.Counters.Misuse["iterate_while_mutating"] != 1 {
		t.Fatalf("misuse %v", w.Counters.Misuse)
	}
}

// TestMapUnderConcurrentMisuse: goroutines that share a Map without any
// coordination never crash it; every operation lands.
func TestMapUnderConcurrentMisuse(t *testing.T) {
	ownRegistry(t)
	m := NewMap[int, int]("stress")
	const goroutines = 8
	ops := 20_000
	if testing.Short() || raceEnabled {
		ops = 5_000
	}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < ops; i++ {
				k := rng.Intn(5000)
				switch op := rng.Intn(100); {
				case op < 40:
					m.Set(k, i)
				case op < 50:
					m.Delete(k)
				case op < 95:
					m.Get(k)
				case op < 99:
					m.Len()
				default:
					m.Range(func(k, v int) bool {
						if k%10 == 0 {
							m.Set(k, v) // update from the callback
						}
						return k%50 != 0
					})
				}
			}
		}(g)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-done:
				return
			default:
				m.snapshot()
			}
		}
	}()
	wg.Wait()
	done <- struct{}{}
	w := m.snapshot()
	if got := int(w.Counters.Inserts - w.Counters.Removes); got != m.Len() {
		t.Fatalf("inserts - removes = %d, Len %d", got, m.Len())
	}
	if m.lock.state.Load() != 0 || m.watch.Load()&(benignMask|rangeMask) != 0 {
		t.Fatalf("lock state %#x, watch %#x after the storm", m.lock.state.Load(), m.watch.Load())
	}
	t.Logf("concurrent_write counted %d times", w.Counters.Misuse["concurrent_write"])
}

// TestMapCompactIsAShrink: Compact gives the buckets back and is reported
// as a shrink with its duration.
func TestMapCompactIsAShrink(t *testing.T) {
	r := ownRegistry(t)
	fakeClock(t, time.Millisecond)
	m := NewMap[int, int]("compacted")
	for i := 0; i < 100_000; i++ {
		m.Set(i, i)
	}
	for i := 100; i < 100_000; i++ {
		m.Delete(i)
	}
	before := m.snapshot()
	m.Compact()
	after := m.snapshot()
	if after.Counters.Growths.Shrink != 1 || after.Counters.GrowthSeconds.Shrink != 0.001 {
		t.Fatalf("shrink counters %+v %+v", after.Counters.Growths, after.Counters.GrowthSeconds)
	}
	if after.Stats.Buckets >= before.Stats.Buckets || after.Stats.MemoryBytes >= before.Stats.MemoryBytes {
		t.Fatalf("buckets %d -> %d, memory %d -> %d", before.Stats.Buckets, after.Stats.Buckets,
			before.Stats.MemoryBytes, after.Stats.MemoryBytes)
	}
	if want := makeBuckets(100); after.Stats.Buckets != want {
		t.Fatalf("compacted to %d buckets, want %d", after.Stats.Buckets, want)
	}
	if after.Stats.Entries != 100 || after.Stats.PeakEntries != 100_000 || after.Counters.Growths.Double != before.Counters.Growths.Double {
		t.Fatalf("stats %+v, growths %+v", after.Stats, after.Counters.Growths)
	}
	var shrinks []wireEvent
	for _, e := range events(r, "growth") {
		if e.GrowthKind == "shrink" {
			shrinks = append(shrinks, e)
		}
	}
	if len(shrinks) != 1 || shrinks[0].DurationSeconds == nil || *shrinks[0].DurationSeconds != 0.001 {
		t.Fatalf("shrink events %+v", shrinks)
	}
	for i := 0; i < 100; i++ {
		if v, ok := m.Get(i); !ok || v != i {
			t.Fatalf("Get(%d) after Compact = %d %v", i, v, ok)
		}
	}
	m.Compact() // already compact
	if w := m.snapshot(); w.Counters.Growths.Shrink != 1 {
		t.Fatalf("a second Compact shrank again: %+v", w.Counters.Growths)
	}
}

// TestMapGrowthsAreCountedOnce fills a Map to 100,000 entries and checks
// that its doublings are the whole map's, each counted once with one
// event, and timed where the layout allows (classic: all; swiss: those of a
// one-group or one-table map; model: none).
func TestMapGrowthsAreCountedOnce(t *testing.T) {
	r := ownRegistry(t)
	fakeClock(t, time.Millisecond)
	m := NewMap[int, int]("grown")
	for i := 0; i < 100_000; i++ {
		m.Set(i, i)
		if i%10_000 == 0 {
			m.snapshot() // the reporter, now and then
		}
	}
	w := m.snapshot()
	doublings := uint64(level(w.Stats.Buckets))
	if w.Counters.Growths.Double != doublings || doublings != 14 {
		t.Fatalf("%d doublings counted, %d buckets (%d doublings)", w.Counters.Growths.Double, w.Stats.Buckets, doublings)
	}
	var measured, total int
	var seconds float64
	for _, e := range events(r, "growth") {
		total++
		if e.DurationSeconds != nil {
			measured++
			seconds += *e.DurationSeconds
		}
	}
	if total != int(doublings) {
		t.Fatalf("%d growth events for %d doublings", total, doublings)
	}
	want := map[string]int{"classic": 14, "swiss": 8, "model": 0}[layoutInfoName()]
	if measured != want {
		t.Errorf("%s: %d growths timed, want %d", layoutInfoName(), measured, want)
	}
	if diff := seconds - w.Counters.GrowthSeconds.Double; diff > 1e-9 || diff < -1e-9 || (measured > 0) != (seconds > 0) {
		t.Errorf("event seconds %v, counter %v", seconds, w.Counters.GrowthSeconds.Double)
	}
	if w.Counters.EvacuatedBuckets != w.Stats.Buckets-1 {
		t.Errorf("evacuated %d old buckets over doublings from 1 to %d", w.Counters.EvacuatedBuckets, w.Stats.Buckets)
	}
	t.Logf("%s: %d doublings, %d timed, %.3f s", layoutInfoName(), doublings, measured, seconds)
}

func layoutInfoName() string {
	l, _ := layoutInfo()
	return l
}

// TestMapStalledGrowth: a classic Map whose writes stop mid-growth reports
// the evacuation, and the growth's event comes when writes finish it.
func TestMapStalledGrowth(t *testing.T) {
	if layoutInfoName() != "classic" {
		t.Skip("only classic maps evacuate incrementally")
	}
	r := ownRegistry(t)
	fakeClock(t, time.Millisecond)
	m := NewMap[int, int]("stalled")
	n := 13<<10/2 + 1 // starts the growth from 1024 to 2048 buckets
	for i := 0; i < n; i++ {
		m.Set(i, i)
	}
	w := m.snapshot()
	e := w.Stats.Evacuation
	if e == nil || e.Kind != "double" || e.OldBuckets != 1024 || e.EvacuatedOldBuckets >= 1024 || w.Counters.Growths.Double != 11 {
		t.Fatalf("evacuation %+v, growths %+v", e, w.Counters.Growths)
	}
	if got := len(events(r, "growth")); got != 10 {
		t.Fatalf("%d growth events before the growth finished, want 10", got)
	}
	for i := 0; i < 1024 && m.snapshot().Stats.Evacuation != nil; i++ {
		m.Set(i, i) // updates help evacuate
	}
	w = m.snapshot()
	if w.Stats.Evacuation != nil || len(events(r, "growth")) != 11 || w.Counters.EvacuatedBuckets != 2047 {
		t.Fatalf("after the writes: %+v, %d events, evacuated %d", w.Stats.Evacuation, len(events(r, "growth")), w.Counters.EvacuatedBuckets)
	}
}

// TestMapCopyIsReportedByVet runs go vet on a program that copies a Map.
func TestMapCopyIsReportedByVet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		t.Skipf("no go command: %v", err)
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module vetcopy\n\ngo 1.22\n\nrequire github.com/mapscope/mapscope/clients/go v0.0.0\n\n" +
			"replace github.com/mapscope/mapscope/clients/go => " + strconv.Quote(here) + "\n",
		"main.go": `package main

import mapscope "github.com/mapscope/mapscope/clients/go"

func main() {
	var a mapscope.Map[string, int]
	a.Set("x", 1)
	b := a
	b.Set("y", 2)
}
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goTool, "vet", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOPROXY=off", "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "assignment copies lock value") {
		t.Fatalf("go vet did not report the copy (err %v):\n%s", err, out)
	}
}

// TestMapLockExcludes checks mapLock itself: writers exclude everyone,
// readers only writers, through the fast and the slow paths, with no lost
// wake-up (the test would hang). Under -race, a broken exclusion is a
// reported race on the plain counters.
func TestMapLockExcludes(t *testing.T) {
	var l mapLock
	var value, copyOf int
	const goroutines, rounds = 6, 3000
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				if (i+g)%3 == 0 {
					if !l.tryLock() {
						l.lockSlow()
					}
					value++
					copyOf = value
					l.unlock()
				} else {
					if !l.tryRLock() {
						l.rlockSlow()
					}
					if copyOf != value {
						t.Errorf("torn read: %d != %d", copyOf, value)
					}
					l.runlock()
				}
			}
		}(g)
	}
	wg.Wait()
	if want := goroutines * rounds / 3; value != want || l.state.Load() != 0 {
		t.Fatalf("value %d, want %d; state %#x", value, want, l.state.Load())
	}
}

// TestMapFlushFromRange: the reporter's snapshot from inside the map's own
// Range callback reads without waiting for itself.
func TestMapFlushFromRange(t *testing.T) {
	ownRegistry(t)
	m := NewMap[int, int]("flushed")
	m.Set(1, 1)
	m.Range(func(int, int) bool {
		if w := m.snapshot(); w.Stats.Entries != 1 {
			t.Errorf("snapshot in Range: %+v", w.Stats)
		}
		return true
	})
}

// TestMapUnhashableKeyPanicsAndReleases: a key whose hash panics (an
// interface holding a slice) panics like a plain map, and the map stays
// usable (the lock was released).
func TestMapUnhashableKeyPanicsAndReleases(t *testing.T) {
	ownRegistry(t)
	var m Map[any, int]
	for _, op := range []func(){
		func() { m.Set([]int{1}, 1) },
		func() { m.Get([]int{1}) },
		func() { m.Delete([]int{1}) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "unhashable") {
					t.Errorf("panic %v, want hash of unhashable type", r)
				}
			}()
			op()
		}()
		m.Set("ok", 1) // would wait forever on a leaked lock
	}
	if v, _ := m.Get("ok"); v != 1 || m.lock.state.Load() != 0 {
		t.Fatalf("after the panics: %d, state %#x", v, m.lock.state.Load())
	}
}
