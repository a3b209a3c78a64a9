//! A key whose `Hash` and `Eq` panic on command: it counts its `hash` and
//! `eq` calls in thread-locals and panics on the call a test arms. Also the
//! map and model types, and catching the injected panics.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::thread::LocalKey;

use mapscope::InstrumentedMap;

/// Payload of the panics these tests inject on purpose; any other panic
/// caught while an injected one is expected is a real failure and resumed.
pub(crate) struct Injected;

thread_local! {
    /// Which of `hash` or `eq` raised the last injected panic.
    pub(crate) static FIRED: Cell<Fired> = const { Cell::new(Fired::Nothing) };
    pub(crate) static HASH_CALLS: Cell<u64> = const { Cell::new(0) };
    /// The `HASH_CALLS` value whose call panics (`u64::MAX`: never).
    pub(crate) static HASH_PANIC_AT: Cell<u64> = const { Cell::new(u64::MAX) };
    pub(crate) static EQ_CALLS: Cell<u64> = const { Cell::new(0) };
    pub(crate) static EQ_PANIC_AT: Cell<u64> = const { Cell::new(u64::MAX) };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fired {
    Nothing,
    Hash,
    Eq,
}

pub(crate) fn tick(
    calls: &'static LocalKey<Cell<u64>>,
    panic_at: &'static LocalKey<Cell<u64>>,
    which: Fired,
) {
    let n = calls.get() + 1;
    calls.set(n);
    if n == panic_at.get() {
        panic_at.set(u64::MAX);
        FIRED.set(which);
        panic::panic_any(Injected);
    }
}

/// Panic on the `n`-th `hash` call from now (1 = the next one).
pub(crate) fn arm_hash(n: u64) {
    HASH_PANIC_AT.set(HASH_CALLS.get() + n);
}

/// Panic on the `n`-th `eq` call from now.
pub(crate) fn arm_eq(n: u64) {
    EQ_PANIC_AT.set(EQ_CALLS.get() + n);
}

pub(crate) fn disarm() {
    FIRED.set(Fired::Nothing);
    HASH_PANIC_AT.set(u64::MAX);
    EQ_PANIC_AT.set(u64::MAX);
}

pub(crate) fn armed() -> bool {
    HASH_PANIC_AT.get() != u64::MAX || EQ_PANIC_AT.get() != u64::MAX
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Key(pub(crate) u64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        tick(&HASH_CALLS, &HASH_PANIC_AT, Fired::Hash);
        state.write_u64(self.0);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        tick(&EQ_CALLS, &EQ_PANIC_AT, Fired::Eq);
        self.0 == other.0
    }
}

impl Eq for Key {}

pub(crate) fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic hasher: the low 32 bits of the hash (the bucket index)
/// are the key's own low bits, so a test can aim keys at chosen buckets;
/// the high 32 bits (the tophash) are mixed.
#[derive(Clone, Copy, Default)]
pub(crate) struct LowBitsHasher(u64);

impl Hasher for LowBitsHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        (mix(self.0) & 0xFFFF_FFFF_0000_0000) | (self.0 & 0xFFFF_FFFF)
    }
}

pub(crate) type Map = InstrumentedMap<Key, u64, BuildHasherDefault<LowBitsHasher>>;
/// The model: a std `HashMap` (with a fixed hasher, so that tests picking
/// "some existing key" pick the same one on every run).
pub(crate) type Model = HashMap<u64, u64, BuildHasherDefault<LowBitsHasher>>;

pub(crate) fn new_map() -> Map {
    Map::default()
}

/// Keeps the injected panics out of the test output; real ones still print.
pub(crate) fn quiet_injected_panics() {
    pub(crate) static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Injected>() {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, then disarms; `Err(which)` if it panicked with [`Injected`],
/// raised by `which`. Any other panic (an assertion or an invariant check
/// inside the map) propagates.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Fired> {
    quiet_injected_panics();
    FIRED.set(Fired::Nothing);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let fired = FIRED.get();
    disarm();
    match result {
        Ok(r) => Ok(r),
        Err(payload) if payload.is::<Injected>() => Err(fired),
        Err(payload) => panic::resume_unwind(payload),
    }
}
