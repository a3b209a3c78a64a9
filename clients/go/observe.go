package mapscope

import (
	"sync"
	"sync/atomic"
)

// Observed is a plain Go map reported by Observe. Stop ends the reporting.
type Observed struct {
	t interface {
		tracked
		stop()
	}
}

// ObserveOption configures Observe: Labels, Capacity.
type ObserveOption interface{ applyObserve(*observeConfig) }

type observeConfig struct {
	labels map[string]string
	hint   int
}

func (l Labels) applyObserve(c *observeConfig)   { c.labels = copyLabels(l) }
func (n Capacity) applyObserve(c *observeConfig) { c.hint = max(int(n), 0) }

// Observe reports the plain map *m under name, reading it under locker:
// the lock the application holds around every write to *m (and around
// reads, if it has readers on other goroutines). For a sync.RWMutex pass
// mu.RLocker(): the reads then share the lock with the application's
// readers. Observe reads *m at each report, so a map the application
// replaces (*m = make(...)) is followed.
//
// locker is required: reading a map's header while another goroutine
// writes it is a data race that can return torn numbers (and that the race
// detector does not always see), so Observe panics when locker is nil, as
// it does when m is nil. A map that no goroutine writes any more may be
// passed with a fresh &sync.Mutex{}.
//
// Observe locks locker once before it returns, to read the map's starting
// shape, and the reporter locks it at each report (or Flush): do not call
// either while holding locker.
//
// What is reported: entries, peak entries (the most seen at a report),
// buckets, overflow buckets, memory (an estimate) and an evacuation in
// progress, read from the runtime (or modelled from the peak entries and
// the Capacity hint on a Go release whose layout mapscope has not
// verified); growths derived from one reading to the next, counted from
// Observe on (a replaced map starts a new count): doublings from the
// bucket count, and a classic map's same-size growth when a reading sees
// one in progress. Growth events carry no duration (nothing timed them),
// and a same-size growth that starts and ends between two reports is not
// seen; evacuated_buckets counts the old buckets of the growths seen
// finished plus the evacuation mark of the one in progress (an
// approximation: evacuate may have moved buckets above the mark). Inserts,
// updates and removes are reported as 0: plain map writes cannot be
// intercepted (use Map for those).
func Observe[K comparable, V any](name string, m *map[K]V, locker sync.Locker, opts ...ObserveOption) *Observed {
	if m == nil {
		panic("mapscope.Observe: m is nil: pass the address of the map variable (&m)")
	}
	if locker == nil {
		panic("mapscope.Observe: locker is nil: pass the sync.Locker that guards *m (for a sync.RWMutex, mu.RLocker())")
	}
	var c observeConfig
	for _, o := range opts {
		o.applyObserve(&c)
	}
	o := &observed[K, V]{
		m:      m,
		locker: locker,
		ident:  mapID{name: name, labels: c.labels},
		hint:   uint64(c.hint),
		reg:    std,
	}
	o.read() // the starting shape: growths count from here
	o.reg.register(o)
	return &Observed{t: o}
}

// Stop stops reporting the map. Calling it again does nothing.
func (o *Observed) Stop() { o.t.stop() }

// observed is Observe's tracked map.
type observed[K comparable, V any] struct {
	m      *map[K]V
	locker sync.Locker
	ident  mapID
	hint   uint64
	reg    *registry
	addr   atomic.Uintptr

	mu        sync.Mutex // serializes readings: the fields below
	peak      uint64     // most entries seen
	modelPeak uint64     // most entries seen in the current runtime map
	lastAddr  uintptr    // the runtime map the book follows
	book      growthBook
	pending   *evacuation // a classic growth seen in progress
}

// evacuation is a classic growth seen in progress at a reading.
type evacuation struct {
	kind      GrowthKind
	level     int
	old       uint64
	evacuated uint64
	// counted: the growth started after the first reading, so it is in
	// the counters. One already running at the first reading is followed
	// only to know when it ends.
	counted bool
}

func (o *observed[K, V]) id() mapID { return o.ident }

func (o *observed[K, V]) mapAddress() uintptr { return o.addr.Load() }

func (o *observed[K, V]) stop() { o.reg.unregister(o) }

// snapshot implements tracked.
func (o *observed[K, V]) snapshot() wireMap {
	entries, s := o.read()
	o.mu.Lock()
	defer o.mu.Unlock()
	c := wireCounters{
		Growths:          o.book.counts,
		GrowthSeconds:    o.book.seconds,
		EvacuatedBuckets: o.book.evacuated,
	}
	if o.pending != nil && o.pending.counted {
		c.EvacuatedBuckets += o.pending.evacuated
	}
	return wireMap{Name: o.ident.name, Labels: o.ident.labels, Stats: wireStatsOf(entries, o.peak, s), Counters: c}
}

// read reads *m under the application's lock and accounts for the growths
// since the last reading.
func (o *observed[K, V]) read() (entries uint64, s shape) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.locker.Lock()
	m := *o.m
	entries = uint64(len(m))
	addr := headerOf(m).addr()
	modelPeak := entries
	if addr == o.lastAddr {
		modelPeak = max(o.modelPeak, entries)
	}
	s = inspectMap(m, modelPeak, o.hint)
	o.locker.Unlock()

	o.addr.Store(addr)
	o.peak = max(o.peak, entries)
	o.modelPeak = modelPeak
	if addr != o.lastAddr {
		// The first reading, or the application replaced the map: a new
		// runtime map whose history is unknown. Count from here.
		o.lastAddr = addr
		o.book.rebase(s.Buckets)
		o.pending = nil
		if s.Growing {
			o.pending = &evacuation{kind: kindOf(s), level: level(s.Buckets), old: s.OldBuckets, evacuated: s.EvacuatedOldBuckets}
		}
		return entries, s
	}
	o.account(s)
	return entries, s
}

func kindOf(s shape) GrowthKind {
	if s.SameSize {
		return GrowthSameSize
	}
	return GrowthDouble
}

// account derives growths from a reading of the same runtime map. o.mu
// held.
func (o *observed[K, V]) account(s shape) {
	at := now()
	lvl := level(s.Buckets)
	if p := o.pending; p != nil {
		same := s.Growing && kindOf(s) == p.kind && lvl == p.level && s.EvacuatedOldBuckets >= p.evacuated
		if same {
			p.evacuated = s.EvacuatedOldBuckets
		} else {
			if p.counted {
				o.book.finish(finishedGrowth{kind: p.kind, at: at, oldBuckets: p.old, ok: true}, false)
				o.reg.recordGrowth(o.ident, p.kind, at, 0, false)
			}
			o.pending = nil
		}
	}
	old := o.book.catchUp(s.Buckets)
	if n := len(old); n > 0 && s.Growing && !s.SameSize {
		// The newest doubling is the evacuation in progress: its event
		// waits until it is seen finished.
		o.book.recordUnmeasured(o.reg, o.ident, old[:n-1], at, true)
		o.pending = &evacuation{kind: GrowthDouble, level: lvl, old: old[n-1], evacuated: s.EvacuatedOldBuckets, counted: true}
	} else {
		o.book.recordUnmeasured(o.reg, o.ident, old, at, true)
	}
	if s.Growing && s.SameSize && o.pending == nil {
		o.book.start(GrowthSameSize)
		o.pending = &evacuation{kind: GrowthSameSize, level: lvl, old: s.OldBuckets, evacuated: s.EvacuatedOldBuckets, counted: true}
	}
}
