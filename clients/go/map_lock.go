package mapscope

import "sync/atomic"

// mapLock is the Map's reader/writer lock. Its fast paths are one atomic
// operation to take and one to release (sync.RWMutex's writer takes two of
// each), and they only try: a failed try is the slow path of the Map
// (lockWrite, lockRead, lockRange), which decides whether it was a misuse
// before it waits in lockSlow or rlockSlow.
//
// The state word holds the readers, the writers waiting (a writer waiting
// makes new readers wait: as in sync.RWMutex, writers do not starve),
// lockHeld (a writer or a Range holds the map) and lockSleepers (some
// goroutine is parked, or about to park, in a slow path).
//
// A waiter spins briefly, then parks on a channel, as sync.RWMutex's
// waiters park on a semaphore: the goroutine holding the map then runs
// alone instead of sharing the lock's cache line with a spinner. A release
// that may let a sleeper in (a writer's, or the last reader's) and sees
// lockSleepers clears it and closes the channel: every sleeper wakes and
// tries again, and sets the flag again before it parks again. Nothing on
// the fast paths touches the channel or allocates.
type mapLock struct {
	state atomic.Uint64
	// wakeup is the channel the sleepers of the current round park on,
	// made by the first of them; the waking release takes it and closes
	// it.
	wakeup atomic.Pointer[chan struct{}]
	// parked counts the goroutines blocked on a wakeup channel (tests).
	parked atomic.Int32
}

const (
	lockHeld     = 1 << 63
	lockSleepers = 1 << 62
	writerOne    = 1 << 40
	writerMask   = (1<<22 - 1) << 40
	readerMask   = 1<<40 - 1
)

// tryLock is the writers' fast path: the map is free and nobody waits.
func (l *mapLock) tryLock() bool { return l.state.CompareAndSwap(0, lockHeld) }

// unlock releases a write lock (or a Range's).
func (l *mapLock) unlock() {
	// Adding 1<<63 clears the bit, which is set: the carry falls off.
	if s := l.state.Add(lockHeld); s&lockSleepers != 0 {
		l.wake()
	}
}

// tryRLock is the readers' fast path: no writer holds or awaits the map.
// (Get writes it out, taking a failed try's reader back in its slow path.)
func (l *mapLock) tryRLock() bool {
	if l.state.Add(1)&(lockHeld|writerMask) == 0 {
		return true
	}
	l.undoRLock()
	return false
}

// undoRLock takes back a failed try's reader (out of line, to keep
// tryRLock inlined).
//
//go:noinline
func (l *mapLock) undoRLock() { l.runlock() }

// runlock releases a read lock. Only the last reader out can let a
// sleeper in (a writer waiting for the readers to leave).
func (l *mapLock) runlock() {
	if s := l.state.Add(^uint64(0)); s&(lockSleepers|readerMask) == lockSleepers {
		l.wake()
	}
}

// tryLockIdle takes the write lock if nobody holds or awaits it, whether
// or not sleepers are flagged: the slow paths' try (tryLock also fails on
// a lone lockSleepers, which is not a holder).
func (l *mapLock) tryLockIdle() bool {
	s := l.state.Load()
	return s&^lockSleepers == 0 && l.state.CompareAndSwap(s, s|lockHeld)
}

// spinTries and spinLoads bound a slow path's spin before it parks: a few
// watches of the state word (loads only: the holder's release is not
// slowed down), about as long as a short critical section (a map
// access), far less than parking and waking (microseconds).
const (
	spinTries = 2
	spinLoads = 16
)

// lockSlow waits until no reader or writer holds the map, then holds it.
// It counts itself as a waiting writer first, so that new readers wait.
func (l *mapLock) lockSlow() {
	l.state.Add(writerOne)
	l.wait(lockHeld|readerMask, l.acquireWaiting)
}

// acquireWaiting turns this waiting writer into the holder, if nobody
// holds the map.
func (l *mapLock) acquireWaiting() bool {
	s := l.state.Load()
	return s&(lockHeld|readerMask) == 0 && l.state.CompareAndSwap(s, s-writerOne+lockHeld)
}

// rlockSlow waits until no writer holds or awaits the map, then reads it.
func (l *mapLock) rlockSlow() {
	l.wait(lockHeld|writerMask, l.acquireRead)
}

func (l *mapLock) acquireRead() bool {
	s := l.state.Load()
	return s&(lockHeld|writerMask) == 0 && l.state.CompareAndSwap(s, s+1)
}

// wait spins a little while the bits of busy are set, trying acquire when
// they clear, then parks until acquire succeeds.
func (l *mapLock) wait(busy uint64, acquire func() bool) {
	for i := 0; i < spinTries; i++ {
		for j := 0; j < spinLoads; j++ {
			if l.state.Load()&busy == 0 {
				break
			}
		}
		if acquire() {
			return
		}
	}
	for !l.park(acquire) {
	}
}

// park parks until a waking release, unless acquire succeeds first; it
// reports whether it acquired. The order makes a lost wake-up impossible:
// the channel is in hand before lockSleepers is set, and the flag is set
// before the last try. A release that comes after the try sees the flag
// (or finds it cleared by a wake that came after the flag was set, whose
// channel swap then found this channel or a later one, and the older ones
// were closed), so this channel is closed after the try.
func (l *mapLock) park(acquire func() bool) bool {
	c := l.wakeup.Load()
	if c == nil {
		ch := make(chan struct{})
		if l.wakeup.CompareAndSwap(nil, &ch) {
			c = &ch
		} else if c = l.wakeup.Load(); c == nil {
			return false // taken by a wake in between: start over
		}
	}
	for {
		s := l.state.Load()
		if s&lockSleepers != 0 || l.state.CompareAndSwap(s, s|lockSleepers) {
			break
		}
	}
	if acquire() {
		return true
	}
	l.parked.Add(1)
	<-*c
	l.parked.Add(-1)
	return acquire()
}

// wake clears lockSleepers and wakes the round's sleepers (out of line:
// the releases stay small). Whoever clears the flag closes the channel.
func (l *mapLock) wake() {
	for {
		s := l.state.Load()
		if s&lockSleepers == 0 {
			return // another release is waking them
		}
		if l.state.CompareAndSwap(s, s&^lockSleepers) {
			break
		}
	}
	if c := l.wakeup.Swap(nil); c != nil {
		close(*c)
	}
}
