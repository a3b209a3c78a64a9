package mapscope

import (
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MisuseKind names a map misuse, as the sidecar's misuse_kind and the
// kind label of mapscope_map_misuse_events_total.
type MisuseKind string

// The misuse kinds a Go program can report.
const (
	// NilMapWrite is a write to a nil map ("assignment to entry in nil map").
	NilMapWrite MisuseKind = "nil_map_write"
	// ConcurrentWrite is two writers, or a reader and a writer, at once
	// ("concurrent map writes", "concurrent map read and map write").
	ConcurrentWrite MisuseKind = "concurrent_write"
	// IterateWhileMutating is a key inserted into a map during its own Range.
	IterateWhileMutating MisuseKind = "iterate_while_mutating"
)

// GrowthKind names a growth, as the sidecar's growth_kind.
type GrowthKind string

// The growth kinds.
const (
	// GrowthDouble doubles the bucket array.
	GrowthDouble GrowthKind = "double"
	// GrowthSameSize rebuilds the array at the same size (classic maps
	// with too many overflow buckets).
	GrowthSameSize GrowthKind = "same_size"
	// GrowthShrink gives memory back (Map.Compact).
	GrowthShrink GrowthKind = "shrink"
)

// Site is a code location: where a misuse happened.
type Site struct {
	// Function is the package-qualified function name, e.g. "main.handler".
	Function string
	// File is the source file's full path.
	File string
	// Line is the line number in File.
	Line int
}

// String is "file.go:88 (pkg.Function)", or "" for an unknown site.
func (s Site) String() string {
	if s.File == "" {
		return s.Function
	}
	return filepath.Base(s.File) + ":" + strconv.Itoa(s.Line) + " (" + s.Function + ")"
}

// attributes are the OpenTelemetry code attributes the sidecar reads.
func (s Site) attributes() map[string]string {
	if s.Function == "" && s.File == "" {
		return nil
	}
	return map[string]string{
		"code.function": truncate(s.Function, maxAttributeValueBytes),
		"code.filepath": truncate(s.File, maxAttributeValueBytes),
		"code.lineno":   strconv.Itoa(s.Line),
	}
}

// truncate keeps the last max bytes of s: the end of a path or a function
// name is the part that identifies it.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[len(s)-max:]
}

// mapID is how a map is named in reports and events.
type mapID struct {
	name   string
	labels map[string]string
}

// tracked is a map the reporter reports: a Map or an observed plain map.
type tracked interface {
	// id is the map's name and labels.
	id() mapID
	// snapshot reads the map under its own coordination and returns its
	// stats and cumulative counters.
	snapshot() wireMap
}

// now is the package clock. Tests replace it; nothing else does.
var now = time.Now

// Event-buffer bounds: the buffer keeps the newest events and counts the
// rest as dropped; misuse events of one (map, kind, site) are limited per
// second, their counters are not.
const (
	defaultEventBuffer    = 1000
	misuseEventsPerSecond = 10
	// maxLimiterWindows bounds the limiter's memory: one window per (map,
	// kind, site) seen in the last second.
	maxLimiterWindows = 10_000
)

type limiterKey struct {
	name string
	kind MisuseKind
	site Site
}

type limiterWindow struct {
	start time.Time
	count int
}

// registry holds the reported maps and the events not yet acknowledged by
// the sidecar. One per process (std); tests make their own.
type registry struct {
	mu         sync.Mutex
	maps       []tracked
	events     []wireEvent // oldest first, at most capacity
	capacity   int
	nextSeq    uint64
	dropped    uint64
	suppressed uint64
	rejected   uint64
	windows    map[limiterKey]limiterWindow
	// byName counts misuse known only by a map name (nil-map writes: a nil
	// map has no identity to register). snapshot folds them into the
	// unlabelled map of that name, or reports a map with zero stats.
	byName map[string]map[MisuseKind]uint64
}

// maxNamedCounts bounds byName: names are usually constants in code, but a
// name built from input must not grow the registry without limit. Past it,
// counts go to UnknownMap.
const maxNamedCounts = 1000

func newRegistry(capacity int) *registry {
	return &registry{
		capacity: capacity,
		nextSeq:  1,
		windows:  map[limiterKey]limiterWindow{},
		byName:   map[string]map[MisuseKind]uint64{},
	}
}

// std is the process's registry, reported by Start.
var std = newRegistry(defaultEventBuffer)

func (r *registry) register(t tracked) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maps = append(r.maps, t)
}

func (r *registry) unregister(t tracked) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range r.maps {
		if m == t {
			r.maps = append(r.maps[:i], r.maps[i+1:]...)
			return
		}
	}
}

// tracked returns the registered maps (a copy).
func (r *registry) tracked() []tracked {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tracked(nil), r.maps...)
}

// push appends an event, dropping the oldest when full. Callers hold r.mu.
func (r *registry) push(e wireEvent) {
	e.Seq = r.nextSeq
	r.nextSeq++
	if len(r.events) >= r.capacity {
		drop := len(r.events) - r.capacity + 1
		r.dropped += uint64(drop)
		r.events = append(r.events[:0], r.events[drop:]...)
	}
	r.events = append(r.events, e)
}

// recordMisuse records a misuse event with its site and, when known, the
// trace and span it happened in. It returns false when the per-second
// limit suppressed the event (the caller's counter still counts it).
func (r *registry) recordMisuse(m mapID, kind MisuseKind, site Site, traceID, spanID string) bool {
	at := now()
	r.mu.Lock()
	defer r.mu.Unlock()
	key := limiterKey{name: m.name, kind: kind, site: site}
	w := r.windows[key]
	if at.Sub(w.start) >= time.Second || at.Before(w.start) {
		w = limiterWindow{start: at}
	}
	w.count++
	if len(r.windows) >= maxLimiterWindows && w.count == 1 {
		// Full: forget the windows that are over, which limit nothing.
		for k, old := range r.windows {
			if at.Sub(old.start) >= time.Second || at.Before(old.start) {
				delete(r.windows, k)
			}
		}
	}
	if len(r.windows) < maxLimiterWindows || w.count > 1 {
		r.windows[key] = w
	}
	if w.count > misuseEventsPerSecond {
		r.suppressed++
		return false
	}
	r.push(wireEvent{
		Kind:       "misuse",
		Map:        m.name,
		Labels:     m.labels,
		At:         at.UTC().Format(time.RFC3339Nano),
		MisuseKind: string(kind),
		TraceID:    traceID,
		SpanID:     spanID,
		Attributes: site.attributes(),
	})
	return true
}

// recordGrowth records a finished growth. A growth whose duration was not
// measured (an observed map seen only at report time) has measured=false
// and carries no duration_seconds.
func (r *registry) recordGrowth(m mapID, kind GrowthKind, at time.Time, duration time.Duration, measured bool) {
	e := wireEvent{
		Kind:       "growth",
		Map:        m.name,
		Labels:     m.labels,
		At:         at.UTC().Format(time.RFC3339Nano),
		GrowthKind: string(kind),
	}
	if measured {
		seconds := duration.Seconds()
		e.DurationSeconds = &seconds
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.push(e)
}

// pending returns up to max unacknowledged events, oldest first.
func (r *registry) pending(max int) []wireEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.events)
	if n > max {
		n = max
	}
	return append([]wireEvent(nil), r.events[:n]...)
}

// acknowledge drops the events up to and including seq.
func (r *registry) acknowledge(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for i < len(r.events) && r.events[i].Seq <= seq {
		i++
	}
	r.events = append(r.events[:0], r.events[i:]...)
}

// discard drops the event with this seq: the sidecar rejected it (400), so
// resending it would block every later report.
func (r *registry) discard(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range r.events {
		if e.Seq == seq {
			r.events = append(r.events[:i], r.events[i+1:]...)
			r.rejected++
			return
		}
	}
}

// countByName counts a misuse of the map called name (unlabelled), for
// maps that are not registered. It returns the name counted under.
func (r *registry) countByName(name string, kind MisuseKind) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	counts := r.byName[name]
	if counts == nil {
		if len(r.byName) >= maxNamedCounts {
			name = UnknownMap
			counts = r.byName[name]
		}
		if counts == nil {
			counts = map[MisuseKind]uint64{}
			r.byName[name] = counts
		}
	}
	counts[kind]++
	return name
}

// snapshot reads every tracked map (each under its own coordination, never
// under r.mu: an application may hold its map's lock while it records a
// misuse) and folds in the counts by name. A map identity seen twice is
// reported once, the first one, because the sidecar rejects a report with
// a duplicate map; duplicates lists the names of the others.
func (r *registry) snapshot() (maps []wireMap, duplicates []string) {
	seen := map[string]int{}
	for _, t := range r.tracked() {
		m := t.snapshot()
		key := identityKey(m.Name, m.Labels)
		if _, dup := seen[key]; dup {
			duplicates = append(duplicates, m.Name)
			continue
		}
		seen[key] = len(maps)
		maps = append(maps, m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.byName))
	for name := range r.byName {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		i, ok := seen[identityKey(name, nil)]
		if !ok {
			i = len(maps)
			maps = append(maps, wireMap{Name: name})
		}
		m := &maps[i]
		misuse := make(map[string]uint64, len(m.Counters.Misuse)+1)
		for k, v := range m.Counters.Misuse {
			misuse[k] = v
		}
		for kind, n := range r.byName[name] {
			misuse[string(kind)] += n
		}
		m.Counters.Misuse = misuse
	}
	return maps, duplicates
}

// identityKey is a map's identity (name and labels) as a comparable key.
func identityKey(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "\x00" + labels[k])
	}
	return b.String()
}

// registryStats are the registry's counts, for Stats.
func (r *registry) stats() (pending int, dropped, suppressed, rejected uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events), r.dropped, r.suppressed, r.rejected
}

// addressed is a tracked map whose runtime header address is known (an
// observed plain map). CaptureCrashes writes these addresses next to the
// crash file, so the sidecar can name the map a crash's runtime frame
// points at.
type addressed interface {
	tracked
	// mapAddress is the address of the map's runtime header, as last read
	// under the map's coordination; 0 when unknown or nil.
	mapAddress() uintptr
}

// ClientStats counts what this package dropped, limited or changed, for
// the process's own monitoring (the sidecar sees only what arrives).
type ClientStats struct {
	// EventsPending is events waiting for the sidecar's acknowledgement.
	EventsPending int
	// EventsDropped counts events dropped, oldest first, because the
	// buffer (1000 events) was full: the sidecar was unreachable for long.
	EventsDropped uint64
	// MisuseEventsLimited counts misuse events not recorded because one
	// map, kind and code site produced more than 10 in a second. Their
	// misuse counters still count them.
	MisuseEventsLimited uint64
	// EventsRejected counts events discarded because the sidecar would
	// refuse them (a 400 naming them, or a map identity it rejects).
	EventsRejected uint64
	// NilMapWrites counts writes to nil maps seen by Put, RecoverNilMap
	// and Middleware.
	NilMapWrites uint64
	// NilMapHeals counts nil maps Put initialised (NilMapHeal).
	NilMapHeals uint64
	// NilMapDrops counts writes Put skipped (NilMapDrop).
	NilMapDrops uint64
	// HealBudgetTrips counts the minutes in which the heal budget ran out.
	HealBudgetTrips uint64
}

// Stats returns the process's ClientStats.
func Stats() ClientStats {
	var s ClientStats
	s.EventsPending, s.EventsDropped, s.MisuseEventsLimited, s.EventsRejected = std.stats()
	nilWrites.mu.Lock()
	defer nilWrites.mu.Unlock()
	s.NilMapWrites, s.NilMapHeals = nilWrites.total, nilWrites.heals
	s.NilMapDrops, s.HealBudgetTrips = nilWrites.drops, nilWrites.trips
	return s
}
