package mapscope

import "time"

// Growth accounting shared by Map (growths timed at the write, layout
// probes) and Observe (growths derived from consecutive readings).
//
// A growth is counted once, as doublings of the whole map: a reading whose
// bucket count went from 2^a to 2^b (rounded down to powers of two for
// swiss maps, whose table splits add 1024 slots at a time) is b - a
// doublings, minus those the write path already timed. A swiss map's
// table grows and splits are never counted one by one: for 100,000
// entries that would be 134 events where the map doubled 14 times.

// finishedGrowth is a growth that ended: its kind, when it ended, how long
// it ran (wall time from the write that started it), and the old bucket
// count it evacuated. ok is false for none.
type finishedGrowth struct {
	kind       GrowthKind
	at         time.Time
	duration   time.Duration
	oldBuckets uint64
	ok         bool
}

// growthNote is what one write did: started a growth of kind started (the
// bucket count is then 2^level), and/or finished one.
type growthNote struct {
	started  GrowthKind
	level    int
	finished finishedGrowth
}

// growthBook holds one map's cumulative growth counters.
type growthBook struct {
	counts    kindCounts
	seconds   kindSeconds
	evacuated uint64
	// level is log2 of the bucket count already accounted for; valid when
	// seen.
	level int
	seen  bool
}

// start counts a growth that started.
func (b *growthBook) start(kind GrowthKind) {
	switch kind {
	case GrowthDouble:
		b.counts.Double++
	case GrowthSameSize:
		b.counts.SameSize++
	case GrowthShrink:
		b.counts.Shrink++
	}
}

// finish adds a finished growth's old buckets to the evacuated count and,
// when it was measured, its seconds.
func (b *growthBook) finish(g finishedGrowth, measured bool) {
	b.evacuated += g.oldBuckets
	if !measured {
		return
	}
	s := g.duration.Seconds()
	switch g.kind {
	case GrowthDouble:
		b.seconds.Double += s
	case GrowthSameSize:
		b.seconds.SameSize += s
	case GrowthShrink:
		b.seconds.Shrink += s
	}
}

// rebase makes buckets the accounted level without counting anything: a
// map made (or replaced, or shrunk) at that size.
func (b *growthBook) rebase(buckets uint64) {
	b.level = level(buckets)
	b.seen = buckets > 0
}

// catchUp counts the doublings a reading of buckets shows beyond those
// already accounted for, and returns the old bucket count of each (the
// caller records them). The first reading only sets the level.
func (b *growthBook) catchUp(buckets uint64) (old []uint64) {
	l := level(buckets)
	if l < 0 {
		return nil
	}
	if !b.seen {
		b.rebase(buckets)
		return nil
	}
	for ; b.level < l; b.level++ {
		b.counts.Double++
		old = append(old, uint64(1)<<b.level)
	}
	return old
}

// recordUnmeasured records growths seen at report time: counted, their old
// buckets evacuated (a swiss growth moves every entry at once), one event
// each without a duration.
func (b *growthBook) recordUnmeasured(r *registry, id mapID, old []uint64, at time.Time, evacuated bool) {
	for _, o := range old {
		if evacuated {
			b.evacuated += o
		}
		r.recordGrowth(id, GrowthDouble, at, 0, false)
	}
}

// misuseCounts converts per-kind counts to the wire's misuse object (nil
// when all are 0).
func misuseCounts(nilWrite, concurrent, iterate uint64) map[string]uint64 {
	if nilWrite == 0 && concurrent == 0 && iterate == 0 {
		return nil
	}
	m := map[string]uint64{}
	if nilWrite > 0 {
		m[string(NilMapWrite)] = nilWrite
	}
	if concurrent > 0 {
		m[string(ConcurrentWrite)] = concurrent
	}
	if iterate > 0 {
		m[string(IterateWhileMutating)] = iterate
	}
	return m
}

// wireStatsOf builds the wire stats from a shape.
func wireStatsOf(entries, peak uint64, s shape) wireStats {
	w := wireStats{
		Entries:         entries,
		PeakEntries:     max(peak, entries),
		Buckets:         s.Buckets,
		OverflowBuckets: s.OverflowBuckets,
		MemoryBytes:     s.MemoryBytes,
	}
	if s.Growing {
		kind := GrowthDouble
		if s.SameSize {
			kind = GrowthSameSize
		}
		w.Evacuation = &wireEvacuation{
			Kind:                string(kind),
			OldBuckets:          s.OldBuckets,
			EvacuatedOldBuckets: min(s.EvacuatedOldBuckets, s.OldBuckets),
		}
	}
	return w
}
