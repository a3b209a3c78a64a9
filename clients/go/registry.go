package mapscope

import (
	"strconv"
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

// attributes are the OpenTelemetry code attributes the sidecar reads.
func (s Site) attributes() map[string]string {
	if s.Function == "" && s.File == "" {
		return nil
	}
	return map[string]string{
		"code.function": s.Function,
		"code.filepath": s.File,
		"code.lineno":   strconv.Itoa(s.Line),
	}
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
	windows    map[limiterKey]limiterWindow
}

func newRegistry(capacity int) *registry {
	return &registry{capacity: capacity, nextSeq: 1, windows: map[limiterKey]limiterWindow{}}
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
	if len(r.windows) < 10_000 || w.count > 1 {
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
