package mapscope

import (
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Map is a map that cannot crash the process: its zero value is an empty
// map ready to use (no nil map), and it survives concurrent use. A second
// writer, or a reader racing a writer, is counted as concurrent_write,
// recorded with its code site and trace, and then waits for its turn,
// where a plain map would have killed the process with "concurrent map
// writes". Concurrent readers are not a misuse and do not wait for each
// other.
//
// A Map is reported once it has a name: NewMap, or Register on a zero
// value. Misuse events of a Map without a name carry the map name
// "_unnamed".
//
// Reported: entries, peak entries, buckets, overflow buckets, an
// evacuation in progress and memory (an estimate), read from the runtime's
// own map, or modelled on a Go release whose map layout mapscope has not
// verified (the report's sdk field names the layout); inserts, updates and
// removes (one lookup per write: an insert is told from an update by len
// before and after); growths with their measured durations (see "Growth
// durations" below); Compact as a shrink; misuse.
//
// Cost: one atomic operation to take the map and one to release it (a
// sync.RWMutex writer takes two of each), plus, per write, a few loads of
// the runtime map's header. The clock is read only around growths. See
// "Costs" in the package README.
//
// # Growth durations
//
// A classic map (Go up to 1.23, or GOEXPERIMENT=noswissmap) grows
// incrementally: the insert that crosses 6.5 entries per bucket allocates
// the new array and every later write evacuates old buckets. Each write
// reads the header (a few loads), the clock is read only by an insert the
// growth rule says starts a growth, and the growth's duration is wall time
// from that insert to the write that evacuates the last old bucket. All
// classic growths, doublings and same-size, are measured.
//
// A swiss map (Go 1.24+) grows inside one insert. The insert is timed
// when the header says it may grow: a map of one group that is full, or of
// one table whose growthLeft is 0. A map of several tables (above 896
// entries, or made with a larger hint) grows in the table its key hashes
// to, which the header does not tell: those doublings are seen when the map
// is reported, counted, and their events carry no duration. Either way a
// growth is a doubling of the whole map, counted once.
//
// Without introspection (layout "model") growths are derived from the
// modelled bucket count when the map is reported, without durations.
//
// # Range
//
// Range holds the map for the whole iteration: other goroutines' reads and
// writes wait until it returns (a write from another goroutine is a
// concurrent_write, a read is not). The callback may call Get, Set, Delete,
// Len, Clear and Range on the same map from its own goroutine; a key it
// inserts is counted as iterate_while_mutating (Go does not say whether the
// iteration will see it). Compact inside Range does nothing. Range first
// reads its goroutine's id from runtime.Stack (goroutineID), which costs a
// few microseconds (more with deep stacks), and so does each of the
// callback's own calls on the map; the callback must not wait for another
// goroutine that uses the map.
//
// A Map must not be copied after first use (go vet reports copies).
type Map[K comparable, V any] struct {
	_ noCopy

	lock mapLock
	// watch holds the announcements the slow paths read to tell a misuse
	// from a benign wait (see watchBenign).
	watch atomic.Uint64
	// owner is the goroutine id of the Range holding the map, 0 if none.
	owner atomic.Uint64
	// The lock's state word is written by every operation; the fields
	// below it that every read loads (m, hashSafe) stay on another cache
	// line, shared by the readers.
	_ [64]byte

	// Written under the write lock, read under the read lock.
	m         map[K]V
	timing    bool // introspection is on: time growths at the write
	hashSafe  bool // K's hash cannot panic (hashCannotPanic)
	probe     writeProbe
	book      growthBook
	inserts   uint64
	updates   uint64
	removes   uint64
	peak      uint64 // most entries ever held
	modelPeak uint64 // most entries held by the current runtime map
	hint      uint64 // the hint the current runtime map was made with

	concurrent     atomic.Uint64
	mutatedInRange atomic.Uint64
	events         eventLimiter

	ident atomic.Pointer[mapID]
	reg   *registry // nil: std

	regMu      sync.Mutex // serializes Register and Unregister
	registered *registry
	snapMu     sync.Mutex // serializes snapshots
}

// noCopy makes go vet's copylocks check report a copied Map.
type noCopy struct{}

// Lock is a no-op used by go vet's copylocks check.
func (*noCopy) Lock() {}

// Unlock is a no-op used by go vet's copylocks check.
func (*noCopy) Unlock() {}

// unnamed is the map name of a Map's misuse events before Register.
const unnamed = "_unnamed"

// MapOption configures NewMap and Map.Register: Labels, Capacity.
type MapOption interface{ applyMap(*mapConfig) }

type mapConfig struct {
	labels map[string]string
	hint   int
}

// Labels are a map's own labels (at most 16; see docs/protocol.md for the
// rules on names and values). An option of NewMap, Map.Register and
// Observe.
type Labels map[string]string

func (l Labels) applyMap(c *mapConfig) { c.labels = copyLabels(l) }

func copyLabels(l Labels) map[string]string {
	if len(l) == 0 {
		return nil
	}
	c := make(map[string]string, len(l))
	for k, v := range l {
		c[k] = v
	}
	return c
}

// Capacity is the number of entries a map is expected to hold: NewMap and
// Register make the runtime map with make(map[K]V, n) (Register only if the
// Map has not stored anything yet); Observe takes it as the hint the
// observed map was made with, which the bucket model needs where the
// runtime's layout is not read.
type Capacity int

func (n Capacity) applyMap(c *mapConfig) { c.hint = max(int(n), 0) }

// NewMap returns a Map named name and reported from now on (see Start).
func NewMap[K comparable, V any](name string, opts ...MapOption) *Map[K, V] {
	m := new(Map[K, V])
	m.Register(name, opts...)
	return m
}

// Register names the map and reports it from now on. On a registered Map it
// replaces the name and labels. A Capacity option makes the runtime map if
// the Map has not stored anything yet.
func (m *Map[K, V]) Register(name string, opts ...MapOption) {
	var c mapConfig
	for _, o := range opts {
		o.applyMap(&c)
	}
	m.ident.Store(&mapID{name: name, labels: c.labels})
	if c.hint > 0 && (m.lock.tryLock() || m.lockWrite()) {
		// (Inside its own Range the map exists already.)
		if m.m == nil {
			m.allocate(uint64(c.hint))
		}
		m.lock.unlock()
	}
	r := m.registry()
	m.regMu.Lock()
	defer m.regMu.Unlock()
	if m.registered == nil {
		r.register(m)
		m.registered = r
	}
}

// Unregister stops reporting the map. It stays usable, and its misuse
// events are still recorded under its name.
func (m *Map[K, V]) Unregister() {
	m.regMu.Lock()
	defer m.regMu.Unlock()
	if m.registered != nil {
		m.registered.unregister(m)
		m.registered = nil
	}
}

// Set maps k to v.
func (m *Map[K, V]) Set(k K, v V) {
	if !m.lock.tryLock() && !m.lockWrite() {
		m.set(k, v, true) // the callback of this goroutine's Range
		return
	}
	if !m.hashSafe {
		m.setGuarded(k, v)
		return
	}
	m.set(k, v, false) // no defer: this key type's hash cannot panic
	m.lock.unlock()
}

// setGuarded is Set for keys whose hash may panic, and for the first write
// (which learns whether it can): the lock is released by a defer.
func (m *Map[K, V]) setGuarded(k K, v V) {
	defer m.lock.unlock()
	m.set(k, v, false)
}

// Get returns the value k maps to, and whether there is one.
func (m *Map[K, V]) Get(k K) (v V, ok bool) {
	// The read lock's fast path written out, with one call for all the
	// rest: two atomic adds, the map access and two tests. (Get still
	// does not inline: a call alone costs 57 of the inliner's budget of
	// 80.)
	s := m.lock.state.Add(1)
	if s&(lockHeld|writerMask) == 0 && m.hashSafe {
		// No defer on the hot path: this key type's hash cannot panic.
		v, ok = m.m[k]
		if m.lock.state.Add(^uint64(0))&(lockSleepers|readerMask) != lockSleepers {
			return v, ok
		}
		s = 0 // read; the last reader out, with a sleeper to wake
	}
	return m.getSlow(k, s, v, ok)
}

// getSlow is the rest of Get, after its reader was counted and s is the
// state it saw; 0 when Get read v and ok and has a sleeper to wake.
// Otherwise, when a writer held or awaited the map, the reader is taken
// back and waits in lockRead; when not, it holds the read lock and K's
// hash may panic.
//
//go:noinline
func (m *Map[K, V]) getSlow(k K, s uint64, v V, ok bool) (V, bool) {
	if s == 0 {
		m.lock.wake()
		return v, ok
	}
	if s&(lockHeld|writerMask) != 0 {
		m.lock.undoRLock()
		if !m.lockRead(3) { // lockRead, getSlow, Get, the user
			v, ok := m.m[k] // the callback of this goroutine's Range
			return v, ok
		}
		if m.hashSafe {
			v, ok := m.m[k]
			m.lock.runlock()
			return v, ok
		}
	}
	return m.getGuarded(k)
}

// getGuarded is Get for keys whose hash may panic (an interface holding
// an unhashable value): the read lock is released by a defer.
func (m *Map[K, V]) getGuarded(k K) (V, bool) {
	defer m.lock.runlock()
	v, ok := m.m[k]
	return v, ok
}

// Delete removes k's entry, if any.
func (m *Map[K, V]) Delete(k K) {
	if !m.lock.tryLock() && !m.lockWrite() {
		m.delete(k)
		return
	}
	if !m.hashSafe {
		defer m.lock.unlock()
		m.delete(k)
		return
	}
	m.delete(k)
	m.lock.unlock()
}

// Len returns the number of entries.
func (m *Map[K, V]) Len() int {
	if !m.lock.tryRLock() && !m.lockRead(2) {
		return len(m.m)
	}
	n := len(m.m)
	m.lock.runlock()
	return n
}

// Clear removes every entry. Like clear on a Go map it keeps the buckets
// (call Compact to give them back); each entry counts as a remove.
func (m *Map[K, V]) Clear() {
	if !m.lock.tryLock() && !m.lockWrite() {
		m.clear()
		return
	}
	defer m.lock.unlock()
	m.clear()
}

// Range calls f for each entry, in Go's map order, until f returns false.
// See "Range" in the Map documentation for what it blocks and what f may do.
func (m *Map[K, V]) Range(f func(K, V) bool) {
	g := goroutineID()
	if m.owner.Load() == g {
		m.iterate(f) // nested in this goroutine's own Range: already held
		return
	}
	m.watch.Add(watchRange + watchGen)
	defer m.watch.Add(watchGen - watchRange)
	if !m.lock.tryLock() {
		m.lockRange()
	}
	m.owner.Store(g)
	defer func() {
		m.owner.Store(0)
		m.lock.unlock()
	}()
	m.iterate(f)
}

// Compact rebuilds the map at the size its entries need, giving back the
// memory deletes left behind (a Go map never shrinks, golang/go#20135): a
// new runtime map made with make(map[K]V, Len()) and filled with a copy of
// the entries. It is reported as a shrink growth with its duration. When a
// fresh map would have as many buckets as this one, it does nothing.
func (m *Map[K, V]) Compact() {
	if !m.lock.tryLock() && !m.lockWrite() {
		return // inside this goroutine's Range: the iteration holds the map
	}
	defer m.lock.unlock()
	if m.m == nil {
		return
	}
	n := uint64(len(m.m))
	before := m.buckets()
	if makeBuckets(n) >= before {
		return
	}
	start := now()
	if g, ok := m.probe.abandon(); ok {
		m.finished(g)
	}
	nm := make(map[K]V, n)
	for k, v := range m.m {
		nm[k] = v
	}
	m.m = nm
	m.hint, m.modelPeak = n, n
	end := now()
	m.book.start(GrowthShrink)
	m.finished(finishedGrowth{kind: GrowthShrink, at: end, duration: end.Sub(start), oldBuckets: before, ok: true})
	m.book.rebase(m.buckets())
}

// allocate makes the runtime map. Write lock held.
func (m *Map[K, V]) allocate(hint uint64) {
	m.m = make(map[K]V, hint)
	m.hint = hint
	m.modelPeak = 0
	m.timing = introspecting()
	m.hashSafe = hashCannotPanic(reflect.TypeOf((*K)(nil)).Elem())
	m.book.rebase(m.buckets())
}

// hashCannotPanic reports whether hashing a value of type t can never
// panic: it holds no interface, whose dynamic value may be unhashable
// ("runtime error: hash of unhashable type").
func hashCannotPanic(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Interface:
		return false
	case reflect.Array:
		return hashCannotPanic(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if !hashCannotPanic(t.Field(i).Type) {
				return false
			}
		}
	}
	return true
}

// buckets is the current runtime map's bucket count, read or modelled.
// Write lock held.
func (m *Map[K, V]) buckets() uint64 {
	return inspectMap(m.m, m.modelPeak, m.hint).Buckets
}

// set is Set under the write lock (or in the owner's Range: inRange).
func (m *Map[K, V]) set(k K, v V, inRange bool) {
	if m.m == nil {
		m.allocate(0)
	}
	var t0 time.Time
	timed := m.timing && m.probe.mayGrow(headerOf(m.m))
	if timed {
		t0 = now()
	}
	n := len(m.m)
	m.m[k] = v
	if len(m.m) != n {
		m.inserts++
		if uint64(n) >= m.modelPeak {
			m.modelPeak = uint64(n) + 1
			m.peak = max(m.peak, m.modelPeak)
		}
		if inRange {
			m.reportMisuse(IterateWhileMutating, 2)
		}
	} else {
		m.updates++
	}
	if m.timing && m.probe.pending(headerOf(m.m), timed) {
		m.afterWrite(timed, t0)
	}
}

func (m *Map[K, V]) delete(k K) {
	n := len(m.m)
	delete(m.m, k)
	if len(m.m) != n {
		m.removes++
	}
	if m.timing && m.probe.pending(headerOf(m.m), false) {
		m.afterWrite(false, time.Time{})
	}
}

func (m *Map[K, V]) clear() {
	m.removes += uint64(len(m.m))
	clear(m.m)
	if m.timing && m.probe.pending(headerOf(m.m), false) {
		m.afterWrite(false, time.Time{}) // clear ends a classic growth
	}
}

func (m *Map[K, V]) iterate(f func(K, V) bool) {
	for k, v := range m.m {
		if !f(k, v) {
			return
		}
	}
}

// afterWrite accounts for what the write did to the map's growth state.
func (m *Map[K, V]) afterWrite(timed bool, t0 time.Time) {
	n := m.probe.after(headerOf(m.m), timed, t0)
	if n.started != "" {
		m.book.start(n.started)
		if n.started == GrowthDouble {
			m.book.level, m.book.seen = n.level, true
		}
	}
	if n.finished.ok {
		m.finished(n.finished)
	}
}

// finished records a measured growth.
func (m *Map[K, V]) finished(g finishedGrowth) {
	m.book.finish(g, true)
	m.registry().recordGrowth(m.id(), g.kind, g.at, g.duration, true)
}

func (m *Map[K, V]) registry() *registry {
	if m.reg != nil {
		return m.reg
	}
	return std
}

// id implements tracked.
func (m *Map[K, V]) id() mapID {
	if p := m.ident.Load(); p != nil {
		return *p
	}
	return mapID{name: unnamed}
}

// snapshot implements tracked: it reads the map under its read lock (as
// the reporter: never a misuse) and derives the growths the write path
// could not time.
func (m *Map[K, V]) snapshot() wireMap {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	m.watch.Add(watchBenign + watchGen)
	locked := true
	if !m.lock.tryRLock() {
		if o := m.owner.Load(); o != 0 && o == goroutineID() {
			locked = false // a Flush from this goroutine's Range callback
		} else {
			m.lock.rlockSlow()
		}
	}
	entries := uint64(len(m.m))
	var s shape
	if m.m != nil {
		s = inspectMap(m.m, m.modelPeak, m.hint)
		if old := m.book.catchUp(s.Buckets); len(old) > 0 {
			m.book.recordUnmeasured(m.registry(), m.id(), old, now(), true)
		}
	}
	c := wireCounters{
		Growths:          m.book.counts,
		GrowthSeconds:    m.book.seconds,
		EvacuatedBuckets: m.book.evacuated,
		Inserts:          m.inserts,
		Updates:          m.updates,
		Removes:          m.removes,
	}
	peak := m.peak
	if locked {
		m.lock.runlock()
	}
	m.watch.Add(watchGen - watchBenign)
	if s.Growing {
		c.EvacuatedBuckets += s.EvacuatedOldBuckets
	}
	c.Misuse = misuseCounts(0, m.concurrent.Load(), m.mutatedInRange.Load())
	id := m.id()
	return wireMap{Name: id.name, Labels: id.labels, Stats: wireStatsOf(entries, peak, s), Counters: c}
}

// reportMisuse counts a misuse and records its event, with the code site
// skip frames above reportMisuse's caller (the user's call) and the trace
// bound to the goroutine.
func (m *Map[K, V]) reportMisuse(kind MisuseKind, skip int) {
	if kind == IterateWhileMutating {
		m.mutatedInRange.Add(1)
	} else {
		m.concurrent.Add(1)
	}
	if !m.events.allow() {
		return
	}
	site := callerSite(skip + 1)
	traceID, spanID := currentTrace()
	m.registry().recordMisuse(m.id(), kind, site, traceID, spanID)
}

// eventLimiter bounds one Map's misuse events before their site and trace
// are looked up (a stack walk each, microseconds): a map under heavy
// concurrent misuse pays for the counter and the wait, not for events the
// registry's per-site limit would drop anyway. The state is the current
// second << 20 | events in it; once a second is full, the clock (tens of
// ns) is read again only every 64th misuse.
type eventLimiter struct {
	state   atomic.Uint64
	skipped atomic.Uint64
}

// mapEventsPerSecond is the most misuse events one Map looks up per
// second (its counters count every misuse).
const mapEventsPerSecond = 4 * misuseEventsPerSecond

func (l *eventLimiter) allow() bool {
	if l.state.Load()&(1<<20-1) >= mapEventsPerSecond && l.skipped.Add(1)%64 != 0 {
		return false
	}
	sec := uint64(now().Unix()) & (1<<44 - 1)
	for {
		s := l.state.Load()
		n := sec<<20 | 1
		if s>>20 == sec {
			if s&(1<<20-1) >= mapEventsPerSecond {
				return false
			}
			n = s + 1
		}
		if l.state.CompareAndSwap(s, n) {
			return true
		}
	}
}

// The watch word: announcements made before taking the lock and withdrawn
// after releasing it, so that a goroutine that found the lock taken can
// tell whether a benign holder may have been the reason. The generation
// changes with every announcement and withdrawal: two equal readings
// around a failed try mean nobody announced or withdrew in between.
const (
	watchBenign = 1       // the reporter's read (snapshot)
	watchRange  = 1 << 16 // a Range
	watchGen    = 1 << 32
	benignMask  = 1<<16 - 1
	rangeMask   = (1<<16 - 1) << 16
)

// confirmTries bounds the re-reads of a slow path whose watch word keeps
// changing; it then waits without reporting.
const confirmTries = 4

// lockWrite is the writers' slow path, after tryLock failed. It returns
// false when the caller is the goroutine whose Range holds the map: the
// write goes ahead without the lock. Otherwise it reports a misuse if
// another user goroutine holds or awaits the map (not when the reporter is
// reading it), waits, and returns holding the write lock.
func (m *Map[K, V]) lockWrite() bool {
	if o := m.owner.Load(); o != 0 && o == goroutineID() {
		return false
	}
	for i := 0; i < confirmTries; i++ {
		w := m.watch.Load()
		if w&benignMask != 0 {
			break
		}
		if m.lock.tryLockIdle() {
			return true
		}
		if m.watch.Load() == w {
			m.reportMisuse(ConcurrentWrite, 2) // lockWrite, Set (or Delete...), the user
			break
		}
	}
	m.lock.lockSlow()
	return true
}

// lockRead is the readers' slow path, after tryRLock failed, which only a
// writer or a Range holding or awaiting the map causes. It returns false in
// the Range's own goroutine (read without the lock); otherwise it reports a
// misuse unless a Range may be the holder, waits, and returns holding a
// read lock. skip is the frames between lockRead and the user's call.
func (m *Map[K, V]) lockRead(skip int) bool {
	if o := m.owner.Load(); o != 0 && o == goroutineID() {
		return false
	}
	for i := 0; i < confirmTries; i++ {
		w := m.watch.Load()
		if w&rangeMask != 0 {
			break
		}
		if m.lock.tryRLock() {
			return true
		}
		if m.watch.Load() == w {
			m.reportMisuse(ConcurrentWrite, skip)
			break
		}
	}
	m.lock.rlockSlow()
	return true
}

// lockRange is Range's slow path, after tryLock failed. A Range is a
// reader: it reports a misuse only if a writer holds or awaits the map (no
// other Range announced, so held or wanted is a writer's).
func (m *Map[K, V]) lockRange() {
	for i := 0; i < confirmTries; i++ {
		w := m.watch.Load()
		if w&benignMask != 0 || w&rangeMask != watchRange {
			break
		}
		if m.lock.state.Load()&(lockHeld|writerMask) == 0 {
			break // readers only
		}
		if m.lock.tryLockIdle() {
			return
		}
		if m.watch.Load() == w && m.lock.state.Load()&(lockHeld|writerMask) != 0 {
			m.reportMisuse(ConcurrentWrite, 2) // lockRange, Range, the user
			break
		}
	}
	m.lock.lockSlow()
}
