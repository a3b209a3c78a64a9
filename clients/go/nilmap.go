package mapscope

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Writing to a nil map panics with the runtime.Error "assignment to entry in
// nil map". Put records such writes (nil_map_write, with the caller's code
// site and trace) and applies a policy; RecoverNilMap and Middleware record
// the ones made by plain m[k] = v statements, then let the panic go on.

// NilMapPolicy is what Put does with a write to a nil map.
type NilMapPolicy int32

const (
	// NilMapPanic panics exactly as a plain m[k] = v does (the default):
	// the write is recorded, then the runtime's own panic is raised.
	NilMapPanic NilMapPolicy = iota
	// NilMapHeal initialises the map (*m = make(map[K]V)) and writes, within
	// the process-wide heal budget (SetHealBudget); past it, and when
	// healing is switched off (SetHealing), it panics like NilMapPanic.
	NilMapHeal
	// NilMapDrop skips the write.
	NilMapDrop
)

// String is the policy's name: "panic", "heal" or "drop".
func (p NilMapPolicy) String() string {
	switch p {
	case NilMapPanic:
		return "panic"
	case NilMapHeal:
		return "heal"
	case NilMapDrop:
		return "drop"
	}
	return fmt.Sprintf("NilMapPolicy(%d)", int32(p))
}

// DefaultHealBudget is the heals allowed per minute, process-wide, before
// healing falls back to panicking. A nil map written this often is a bug
// on a hot path; hiding it would hide a lost-write bug too.
const DefaultHealBudget = 100

// UnknownMap is the map name used when a misuse cannot be attributed to a
// named map: Middleware's nil-map writes, names that the sidecar would
// reject, and crashes whose map the sidecar cannot name. The code site in
// the event says where it happened.
const UnknownMap = "_unknown"

// Put is m[k] = v, with *m possibly nil:
//
//	mapscope.Put("prefs", &u.prefs, "theme", "dark")
//
// A non-nil map is written directly (one pointer check more than a plain
// write). A nil one is recorded as a nil_map_write of the map called name,
// with the caller's code site, then handled by the name's policy
// (SetNilMapPolicy; NilMapPanic by default).
//
// Put does not synchronise: like m[k] = v, it needs the lock that guards *m.
func Put[K comparable, V any](name string, m *map[K]V, k K, v V) {
	if *m != nil {
		(*m)[k] = v
		return
	}
	putNil(name, m, k, v)
}

// putNil is Put's nil path, kept out of Put so that Put stays inlinable.
func putNil[K comparable, V any](name string, m *map[K]V, k K, v V) {
	switch recordNilWrite(name, callerSite(0), true) {
	case NilMapHeal:
		*m = make(map[K]V)
		(*m)[k] = v
	case NilMapDrop:
	default:
		(*m)[k] = v // *m is nil: the runtime's own panic, value and message
	}
}

// RecoverNilMap records a nil-map write that made the function panic, then
// panics again with the same value, so the program behaves as before:
//
//	func (s *Server) update(u *User) {
//		defer mapscope.RecoverNilMap("prefs")
//		u.prefs["theme"] = "dark" // recorded if u.prefs is nil
//	}
//
// The site is the line that wrote, read from the panicking stack. Any other
// panic passes through untouched. RecoverNilMap must be deferred directly
// (defer mapscope.RecoverNilMap(name)): recover works only in the deferred
// function itself. A nil-map panic raised by Put, or already recorded by
// an inner RecoverNilMap, is not counted twice.
func RecoverNilMap(name string) {
	r := recover()
	if r == nil {
		return
	}
	if isNilMapPanic(r) {
		if site, ours, found := panicSite(0); found && !ours {
			recordNilWrite(name, site, false)
		}
	}
	panic(r)
}

// isNilMapPanic reports whether a recovered value is the runtime's nil-map
// write panic. The message is the runtime's, unchanged since Go 1.0.
func isNilMapPanic(r any) bool {
	err, ok := r.(runtime.Error)
	return ok && err.Error() == "assignment to entry in nil map"
}

// recordNilWrite counts and records a nil-map write at site and, when the
// write can still be handled (Put), returns the policy to apply.
func recordNilWrite(name string, site Site, handle bool) NilMapPolicy {
	if err := validateMapName(name); err != nil {
		warnOnce(logger(), "nil-map name "+name, "mapscope: nil-map write counted under "+UnknownMap+": "+err.Error())
		name = UnknownMap
	}
	name = std.countByName(name, NilMapWrite)
	traceID, spanID := currentTrace()
	std.recordMisuse(mapID{name: name}, NilMapWrite, site, traceID, spanID)
	nilWrites.mu.Lock()
	nilWrites.total++
	nilWrites.mu.Unlock()
	if !handle {
		return NilMapPanic
	}
	return nilWrites.decide(name, now())
}

// nilWriteState is the policies and the heal budget, read only on nil
// writes.
type nilWriteState struct {
	mu            sync.Mutex
	defaultPolicy NilMapPolicy
	policies      map[string]NilMapPolicy
	healingOff    bool
	budget        int
	windowStart   time.Time // the current budget minute
	windowHeals   int
	tripped       bool // the budget ran out in the current minute
	total, heals  uint64
	drops, trips  uint64
}

var nilWrites = nilWriteState{budget: DefaultHealBudget, policies: map[string]NilMapPolicy{}}

// decide applies name's policy, the healing switch and the heal budget.
func (s *nilWriteState) decide(name string, at time.Time) NilMapPolicy {
	s.mu.Lock()
	policy, ok := s.policies[name]
	if !ok {
		policy = s.defaultPolicy
	}
	tripping := false
	switch policy {
	case NilMapDrop:
		s.drops++
	case NilMapHeal:
		if at.Sub(s.windowStart) >= time.Minute || at.Before(s.windowStart) {
			s.windowStart, s.windowHeals, s.tripped = at, 0, false
		}
		switch {
		case s.healingOff:
			policy = NilMapPanic
		case s.windowHeals >= s.budget:
			policy = NilMapPanic
			tripping = !s.tripped
			if tripping {
				s.tripped = true
				s.trips++
			}
		default:
			s.windowHeals++
			s.heals++
		}
	}
	budget := s.budget
	s.mu.Unlock()
	if tripping {
		logger().Error("mapscope: nil-map heal budget exhausted; nil-map writes panic again until the minute is over",
			"map", name, "heals_per_minute", budget,
			"fix", "initialise the map with make(); raise the budget with mapscope.SetHealBudget")
	}
	return policy
}

// SetDefaultNilMapPolicy sets the policy of every map name without one of
// its own (SetNilMapPolicy). The initial default is NilMapPanic.
func SetDefaultNilMapPolicy(p NilMapPolicy) {
	nilWrites.mu.Lock()
	defer nilWrites.mu.Unlock()
	nilWrites.defaultPolicy = p
}

// SetNilMapPolicy sets the policy Put applies to nil writes of the map
// called name.
func SetNilMapPolicy(name string, p NilMapPolicy) {
	nilWrites.mu.Lock()
	defer nilWrites.mu.Unlock()
	nilWrites.policies[name] = p
}

// SetHealing is the process-wide switch for NilMapHeal: with false, maps
// whose policy is NilMapHeal panic instead (and are still recorded). On by
// default.
func SetHealing(enabled bool) {
	nilWrites.mu.Lock()
	defer nilWrites.mu.Unlock()
	nilWrites.healingOff = !enabled
}

// SetHealBudget sets the heals allowed per minute, process-wide (default
// DefaultHealBudget). When a minute's budget runs out, NilMapHeal panics
// like NilMapPanic until the minute is over, and logs it once: the circuit
// breaker that keeps a hot nil-map bug from being silently healed forever.
// 0 or less allows no heal.
func SetHealBudget(perMinute int) {
	nilWrites.mu.Lock()
	defer nilWrites.mu.Unlock()
	nilWrites.budget = perMinute
}
