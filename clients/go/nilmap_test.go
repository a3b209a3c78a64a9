package mapscope

import (
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resetNilWrites gives the test default policies and a fresh budget.
func resetNilWrites(t *testing.T) {
	t.Helper()
	reset := func() {
		nilWrites.mu.Lock()
		defer nilWrites.mu.Unlock()
		nilWrites.defaultPolicy = NilMapPanic
		nilWrites.policies = map[string]NilMapPolicy{}
		nilWrites.healingOff = false
		nilWrites.budget = DefaultHealBudget
		nilWrites.windowStart, nilWrites.windowHeals, nilWrites.tripped = time.Time{}, 0, false
		nilWrites.total, nilWrites.heals, nilWrites.drops, nilWrites.trips = 0, 0, 0, 0
	}
	reset()
	t.Cleanup(reset)
	quietLogger(t)
}

// quietLogger discards the package's log lines until the test ends.
func quietLogger(t *testing.T) {
	saved := packageLogger.Load()
	packageLogger.Store(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { packageLogger.Store(saved) })
}

// plainNilWritePanic is what m[k] = v on a nil map panics with.
func plainNilWritePanic() (r any) {
	defer func() { r = recover() }()
	var m map[string]int
	m["k"] = 1
	return nil
}

// panicValue runs f and returns what it panicked with.
func panicValue(f func()) (r any) {
	defer func() { r = recover() }()
	f()
	return nil
}

// here is the caller's file and line + delta.
func here(delta int) (string, int) {
	_, file, line, _ := runtime.Caller(1)
	return file, line + delta
}

func onlyEvent(t *testing.T, reg *registry) wireEvent {
	t.Helper()
	events := reg.pending(100)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(events), events)
	}
	return events[0]
}

func checkSite(t *testing.T, e wireEvent, file string, line int) {
	t.Helper()
	if e.Attributes["code.filepath"] != file || e.Attributes["code.lineno"] != strconv.Itoa(line) {
		t.Errorf("site %s:%s (%s), want %s:%d", e.Attributes["code.filepath"], e.Attributes["code.lineno"], e.Attributes["code.function"], file, line)
	}
}

func TestPutPanicsLikeAPlainWrite(t *testing.T) {
	reg := freshRegistry(t, 100)
	resetNilWrites(t)
	var prefs map[string]string
	file, line := here(1)
	got := panicValue(func() { Put("prefs", &prefs, "theme", "dark") })
	if want := plainNilWritePanic(); got != want {
		t.Fatalf("Put panicked with %#v, a plain write with %#v", got, want)
	}
	if _, ok := got.(runtime.Error); !ok {
		t.Fatalf("%T is not a runtime.Error", got)
	}
	e := onlyEvent(t, reg)
	if e.Kind != "misuse" || e.MisuseKind != "nil_map_write" || e.Map != "prefs" {
		t.Errorf("event %+v", e)
	}
	checkSite(t, e, file, line)
	if !strings.HasSuffix(e.Attributes["code.function"], "TestPutPanicsLikeAPlainWrite.func1") {
		t.Errorf("function %q", e.Attributes["code.function"])
	}
	maps, _ := reg.snapshot()
	if len(maps) != 1 || maps[0].Name != "prefs" || maps[0].Counters.Misuse["nil_map_write"] != 1 {
		t.Errorf("maps %+v", maps)
	}
}

func TestPutWritesANonNilMap(t *testing.T) {
	reg := freshRegistry(t, 100)
	m := map[string]int{}
	Put("m", &m, "a", 1)
	if m["a"] != 1 || len(reg.pending(10)) != 0 {
		t.Fatalf("m %v, events %v", m, reg.pending(10))
	}
}

func TestPutHealAndDrop(t *testing.T) {
	freshRegistry(t, 100)
	resetNilWrites(t)
	SetNilMapPolicy("healed", NilMapHeal)
	SetNilMapPolicy("dropped", NilMapDrop)
	var healed, dropped map[string]int
	Put("healed", &healed, "a", 1)
	Put("dropped", &dropped, "a", 1)
	if healed["a"] != 1 || dropped != nil {
		t.Fatalf("healed %v, dropped %v", healed, dropped)
	}
	SetDefaultNilMapPolicy(NilMapDrop)
	var other map[int]int
	Put("other", &other, 1, 1)
	if s := Stats(); s.NilMapWrites != 3 || s.NilMapHeals != 1 || s.NilMapDrops != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestHealBudgetTripsAndResetsEachMinute(t *testing.T) {
	freshRegistry(t, 100)
	resetNilWrites(t)
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	setClock(t, &at)
	SetDefaultNilMapPolicy(NilMapHeal)
	SetHealBudget(3)
	heal := func() (healed bool) {
		var m map[string]int
		panicked := panicValue(func() { Put("prefs", &m, "k", 1) }) != nil
		return !panicked && m["k"] == 1
	}
	for i := 0; i < 3; i++ {
		if !heal() {
			t.Fatalf("heal %d refused within the budget", i)
		}
	}
	if heal() || heal() {
		t.Fatal("healed past the budget")
	}
	if s := Stats(); s.HealBudgetTrips != 1 || s.NilMapHeals != 3 || s.NilMapWrites != 5 {
		t.Errorf("stats %+v", s)
	}
	at = at.Add(59 * time.Second)
	if heal() {
		t.Fatal("healed in the same minute")
	}
	at = at.Add(2 * time.Second)
	if !heal() {
		t.Fatal("no heal in the next minute")
	}
	SetHealing(false)
	if heal() {
		t.Fatal("healed with healing switched off")
	}
}

func TestRecoverNilMapRecordsTheFaultingLine(t *testing.T) {
	reg := freshRegistry(t, 100)
	resetNilWrites(t)
	var file string
	var line int
	got := panicValue(func() {
		defer RecoverNilMap("prefs")
		var prefs map[string]string
		file, line = here(1)
		prefs["theme"] = "dark"
	})
	if want := plainNilWritePanic(); got != want {
		t.Fatalf("re-panicked with %#v, want %#v", got, want)
	}
	e := onlyEvent(t, reg)
	if e.Map != "prefs" || e.MisuseKind != "nil_map_write" {
		t.Errorf("event %+v", e)
	}
	checkSite(t, e, file, line)
}

// writeNil writes a nil map one call below its caller.
func writeNil(m map[int]int) { m[1] = 1 }

func TestRecoverNilMapSiteInACallee(t *testing.T) {
	reg := freshRegistry(t, 100)
	got := panicValue(func() {
		defer RecoverNilMap("m")
		writeNil(nil)
	})
	if got == nil {
		t.Fatal("no panic")
	}
	if fn := onlyEvent(t, reg).Attributes["code.function"]; !strings.HasSuffix(fn, ".writeNil") {
		t.Errorf("site function %q, want writeNil", fn)
	}
}

func TestRecoverNilMapPassesOtherPanics(t *testing.T) {
	reg := freshRegistry(t, 100)
	for _, value := range []any{"boom", runtimeErrorOf(func() { var a []int; _ = a[3] })} {
		got := panicValue(func() {
			defer RecoverNilMap("m")
			panic(value)
		})
		if got != value {
			t.Errorf("panic %v became %v", value, got)
		}
	}
	if n := len(reg.pending(10)); n != 0 {
		t.Errorf("%d events for panics that are not nil-map writes", n)
	}
	// No panic: nothing happens.
	func() { defer RecoverNilMap("m") }()
}

func runtimeErrorOf(f func()) any { return panicValue(f) }

func TestNilWriteCountedOnceThroughLayers(t *testing.T) {
	reg := freshRegistry(t, 100)
	resetNilWrites(t)
	var m map[string]int
	panicValue(func() {
		defer RecoverNilMap("outer")
		defer RecoverNilMap("inner")
		Put("m", &m, "k", 1) // Put records; the RecoverNilMaps must not
	})
	panicValue(func() {
		defer RecoverNilMap("outer")
		defer RecoverNilMap("inner")
		m["k"] = 1 // inner records; outer sees inner's re-panic
	})
	events := reg.pending(10)
	if len(events) != 2 || events[0].Map != "m" || events[1].Map != "inner" {
		t.Fatalf("events %+v", events)
	}
	if s := Stats(); s.NilMapWrites != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestInvalidNameCountsAsUnknown(t *testing.T) {
	reg := freshRegistry(t, 100)
	resetNilWrites(t)
	SetDefaultNilMapPolicy(NilMapDrop)
	var m map[string]int
	Put("__bad", &m, "k", 1)
	if e := onlyEvent(t, reg); e.Map != UnknownMap {
		t.Errorf("event map %q", e.Map)
	}
}
