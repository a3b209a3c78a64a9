//! The storage layer: buckets of eight slots with their tophash bytes,
//! overflow chains, and a bucket array that is materialised chunk by chunk.
//!
//! This is the crate's only module with `unsafe` code (`#![deny(unsafe_code)]`
//! at the crate root, allowed here alone). Slots are `MaybeUninit<(K, V)>`
//! and the tophash byte says whether a slot holds an entry, the way
//! hashbrown's control bytes do: a `u64 -> u64` slot is 16 bytes instead
//! of an `Option`'s 24, chunks are allocated without initialising their
//! slots, and a probe checks no discriminant. The API is safe: no argument,
//! stale [`Slot`] or panicking user code (`Hash`, `Eq`, `Clone`, `Drop`, a
//! `retain` predicate) makes it read an uninitialised slot or drop an entry
//! twice.
//!
//! # Safety invariants
//!
//! Every `unsafe` block below relies on these. Nothing outside this module
//! can break them: tophash bytes and slots are private, and every write of
//! either happens here.
//!
//! 1. **Occupancy.** A slot is initialised exactly when its tophash byte
//!    is *full* (`>= MIN_TOPHASH`). A store writes the slot, then marks
//!    the byte full; a removal marks the byte free (`< MIN_TOPHASH`), then
//!    moves the entry out or drops it. A panic anywhere in between (a
//!    user's `Drop`, an allocation failure) leaves at worst an initialised
//!    slot marked free, a leak; never a full byte over an uninitialised or
//!    moved-out slot, which would be a double drop or a read of
//!    uninitialised memory.
//! 2. **Where entries live.** Only in the head buckets of materialised
//!    chunks and in arena buckets below `arena_len`. Every other tophash
//!    byte is free (chunks and arena blocks are created with every byte
//!    `EMPTY_REST`, and an evacuated chain is emptied before it is
//!    unlinked). Iteration, `Clone` and `Drop` visit exactly these buckets.
//! 3. **Matching.** Slots are read only at positions yielded by
//!    `match_full` (full bytes, by definition) or by
//!    `match_tophash(bytes, top)` with `top` first raised to at least
//!    `MIN_TOPHASH` (exact matches only: `matching::zero_bytes` has no false
//!    positives), so only at full bytes, of the same bucket the slots
//!    belong to.
//! 4. **Slots from outside.** A [`Slot`] is only a position. Its byte is
//!    checked full (one predictable branch) before its slot is touched, so
//!    a stale `Slot` panics instead of reading a freed slot.
//! 5. **Tophash bytes and links are always initialised**: only entry slots
//!    are ever uninitialised.
//! 6. **Chunk slices.** A chunk's `tophash`, `links` and `entries` slices
//!    always have the same length, `2^chunk_shift` or 0 (not
//!    materialised): they are only ever created together, by
//!    `Chunk::new` and `Chunk::unmaterialized`. So a bucket index in
//!    bounds of a chunk's `tophash` (checked) is in bounds of the other
//!    two (unchecked).
//!
//! `Drop` drops every full slot, marking each free first, so a panicking
//! `Drop` of one entry leaks the entries after it and drops none twice.
//! `Clone` gives the copy the source's structure with every byte free and
//! marks a byte full only once its clone is written, so a panicking `Clone`
//! drops exactly the entries cloned so far, with the partial copy.
//!
//! The layout invariants, which finding entries relies on:
//! - a slot holds an entry exactly when its tophash is `>= MIN_TOPHASH`;
//! - `EMPTY_REST` at a position means every later position of the chain is
//!   free, so scans may stop there (Go's `emptyRest`);
//! - a bucket array is split into chunks of `2^chunk_shift` buckets. A chunk
//!   that is not materialised holds empty boxed slices, so creating a table
//!   of `2^B` buckets costs one small write per chunk and never touches the
//!   buckets themselves. The evacuation code materialises a destination
//!   chunk before it writes to it and frees an old chunk once the
//!   evacuation mark has passed it, which is what bounds the work of a write;
//! - overflow buckets live in the table's own arena, allocated in blocks of
//!   `2^block_shift` buckets, and are linked by index (`Link`: 0 for none,
//!   `k + 1` for arena bucket `k`). A bucket handed out is never given back
//!   before the table is dropped, as in Go (deletes never free overflow
//!   buckets; a same-size growth compacts them into a new table). Arena
//!   buckets past `arena_len` are unused; an evacuated chain's overflow
//!   buckets are emptied and unlinked;
//! - every entry lives in exactly one place: a head bucket of a materialised
//!   chunk or an arena bucket below `arena_len`.
//!
//! Layout: within a chunk the tophash bytes of all buckets are stored
//! contiguously, then the overflow links, then the entries (the way
//! hashbrown keeps its control bytes apart from its slots). A miss, and the
//! first step of every hit, then reads 8 bytes per bucket from a dense
//! array instead of a cache line of a bucket; the link is read only when
//! the bucket is full (its last tophash is not `EMPTY_REST`). Overflow
//! buckets keep their tophash and link next to their entries, as in Go.

use std::iter::Zip;
use std::mem::MaybeUninit;
use std::{array, mem, slice};

mod matching;

use super::grow::{LOAD_FACTOR_DEN, LOAD_FACTOR_NUM};
use super::tophash::{
    BUCKET_SLOTS, EMPTY_ONE, EMPTY_REST, EVACUATED_EMPTY, EVACUATED_X, EVACUATED_Y, MIN_TOPHASH,
};
use matching::{match_free, match_full, match_tophash, SlotMask};

/// Target size of one materialised chunk, and the largest overflow block.
/// Small enough that creating one costs a few microseconds, large enough
/// that the chunk-pointer array stays a few kilobytes for tables of
/// millions of buckets.
const CHUNK_BYTES: usize = 64 * 1024;

/// A bucket's eight tophash bytes.
pub(crate) type Tophash = [u8; BUCKET_SLOTS];

/// An overflow bucket's place in the arena: 0 for none, `k + 1` for arena
/// bucket `k`.
type Link = u32;
const NO_LINK: Link = 0;

/// One slot's storage: initialised exactly when its tophash byte is full
/// (invariant 1).
type Cell<K, V> = MaybeUninit<(K, V)>;

/// A bucket's eight entries.
type Entries<K, V> = [Cell<K, V>; BUCKET_SLOTS];

const fn empty_entries<K, V>() -> Entries<K, V> {
    [const { MaybeUninit::uninit() }; BUCKET_SLOTS]
}

/// `2^chunk_shift` buckets: their tophash bytes, overflow links and
/// entries. Every slice is empty while the chunk is not materialised.
struct Chunk<K, V> {
    tophash: Box<[Tophash]>,
    links: Box<[Link]>,
    entries: Box<[Entries<K, V>]>,
}

impl<K, V> Chunk<K, V> {
    fn unmaterialized() -> Self {
        Chunk {
            tophash: Box::default(),
            links: Box::default(),
            entries: Box::default(),
        }
    }

    fn new(len: usize) -> Self {
        Chunk {
            tophash: vec![[EMPTY_REST; BUCKET_SLOTS]; len].into_boxed_slice(),
            links: vec![NO_LINK; len].into_boxed_slice(),
            entries: (0..len).map(|_| empty_entries()).collect(),
        }
    }

    fn is_materialized(&self) -> bool {
        !self.tophash.is_empty()
    }
}

/// An overflow bucket: tophash bytes, link and entries together, as in Go.
struct OverflowBucket<K, V> {
    tophash: Tophash,
    link: Link,
    entries: Entries<K, V>,
}

impl<K, V> OverflowBucket<K, V> {
    fn block(len: usize) -> Box<[Self]> {
        (0..len)
            .map(|_| OverflowBucket {
                tophash: [EMPTY_REST; BUCKET_SLOTS],
                link: NO_LINK,
                entries: empty_entries(),
            })
            .collect()
    }
}

/// A bucket, shared: its tophash bytes, the link to the next bucket of its
/// chain, its entries.
type Bucket<'a, K, V> = (&'a Tophash, &'a Link, &'a Entries<K, V>);
/// A bucket, mutably.
type BucketMut<'a, K, V> = (&'a mut Tophash, &'a mut Link, &'a mut Entries<K, V>);

/// The entry in slot `i`.
///
/// # Safety
/// The slot's tophash byte is full.
#[inline]
unsafe fn slot_ref<K, V>(entries: &Entries<K, V>, i: usize) -> &(K, V) {
    // SAFETY: a full byte means an initialised slot (invariant 1); the
    // caller vouches for the byte.
    unsafe { entries[i].assume_init_ref() }
}

/// The entry in slot `i`, mutably.
///
/// # Safety
/// The slot's tophash byte is full.
#[inline]
unsafe fn slot_mut<K, V>(entries: &mut Entries<K, V>, i: usize) -> &mut (K, V) {
    // SAFETY: as for `slot_ref`.
    unsafe { entries[i].assume_init_mut() }
}

/// Stores an entry in free slot `i`; the caller marks its byte full next.
#[inline]
fn slot_write<K, V>(entries: &mut Entries<K, V>, i: usize, entry: (K, V)) {
    entries[i].write(entry);
}

/// Moves the entry out of slot `i`.
///
/// # Safety
/// The slot's byte was full until the caller just marked it free, and
/// nothing moved the entry out since.
#[inline]
unsafe fn slot_take<K, V>(entries: &mut Entries<K, V>, i: usize) -> (K, V) {
    // SAFETY: initialised (the byte was full, invariant 1) and now marked
    // free, so nothing reads or drops it again: this read is its one move.
    unsafe { entries[i].assume_init_read() }
}

/// The entry in a slot, mutably.
///
/// # Safety
/// The slot's tophash byte is full.
#[inline]
unsafe fn slot_in_place<K, V>(cell: &mut Cell<K, V>) -> &mut (K, V) {
    // SAFETY: as for `slot_ref`.
    unsafe { cell.assume_init_mut() }
}

/// Drops the entry in slot `i`.
///
/// # Safety
/// As for [`slot_take`].
#[inline]
unsafe fn slot_drop<K, V>(entries: &mut Entries<K, V>, i: usize) {
    // SAFETY: as for `slot_take`: this is the entry's one drop.
    unsafe { entries[i].assume_init_drop() }
}

/// What follows a slot just freed, for Go's `mapdelete` decision whether
/// the chain's trailing free run must become `EMPTY_REST`.
enum After {
    /// The next slot of the bucket is not `EMPTY_REST`: no walk.
    Occupied,
    /// Nothing follows: walk.
    Free,
    /// The slot was its bucket's last, and this overflow bucket follows:
    /// walk if its first byte is `EMPTY_REST`.
    NextBucket(Link),
}

/// Moves the entry out of slot `i` of a bucket and marks the slot free
/// (`EMPTY_ONE`), and says what follows it. The link is read only for the
/// last slot: it is another cache line.
///
/// # Safety
/// Byte `i` is full.
#[inline]
unsafe fn take_from<K, V>(
    tophash: &mut Tophash,
    next: &Link,
    entries: &mut Entries<K, V>,
    i: usize,
) -> ((K, V), After) {
    let after = if i < BUCKET_SLOTS - 1 {
        if tophash[i + 1] == EMPTY_REST {
            After::Free
        } else {
            After::Occupied
        }
    } else if *next == NO_LINK {
        After::Free
    } else {
        After::NextBucket(*next)
    };
    tophash[i] = EMPTY_ONE;
    // SAFETY: the byte was full (the caller's contract) and is now free, so
    // this read is the entry's one move (invariant 1).
    (unsafe { slot_take(entries, i) }, after)
}

/// Gives an empty bucket of a table's copy the structure of `bucket` and a
/// clone of each of its entries. Every byte is copied free first and set
/// full only once its clone is written, so a panicking `Clone` leaves the
/// copy holding exactly the entries cloned so far (invariant 1).
fn clone_bucket<K: Clone, V: Clone>(
    (tophash, link, entries): Bucket<'_, K, V>,
    (copy_tophash, copy_link, copy_entries): BucketMut<'_, K, V>,
) {
    let full = match_full(tophash);
    *copy_link = *link;
    *copy_tophash = *tophash;
    for i in full {
        copy_tophash[i] = EMPTY_ONE;
    }
    for i in full {
        // SAFETY: `i` is full in `tophash` (invariant 3).
        let entry = unsafe { slot_ref(entries, i) };
        slot_write(copy_entries, i, entry.clone());
        copy_tophash[i] = tophash[i];
    }
}

/// Drops every entry of a bucket, marking each slot free first.
fn drop_bucket<K, V>(tophash: &mut Tophash, entries: &mut Entries<K, V>) {
    for i in match_full(tophash) {
        tophash[i] = EMPTY_ONE;
        // SAFETY: byte `i` was full (invariant 3) and is now free.
        unsafe { slot_drop(entries, i) };
    }
}

/// Where an entry sits: its chain's head bucket, the bucket of the chain
/// (`link`: the head itself, or an arena bucket), and the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) bucket: usize,
    link: Link,
    index: usize,
}

/// The result of probing a chain for a key that is about to be written.
#[derive(Debug)]
pub(crate) enum Probe {
    /// The key is present.
    Found(Slot),
    /// The key is absent; the first free slot of the chain, if any.
    Vacant(Option<Slot>),
}

/// The largest shift with `size << shift <= CHUNK_BYTES`, at most 16.
fn max_shift(size: usize) -> u8 {
    let mut shift = 0u8;
    while shift < 16 && (size << (shift + 1)) <= CHUNK_BYTES {
        shift += 1;
    }
    shift
}

/// The most entries `2^log2` buckets hold without a doubling: 8, or
/// `6.5 * 2^log2`, Go's `overLoadFactor` as an integer threshold.
pub(crate) fn max_load(log2: u8) -> usize {
    if log2 == 0 {
        BUCKET_SLOTS
    } else {
        LOAD_FACTOR_NUM.saturating_mul((1usize << log2) / LOAD_FACTOR_DEN)
    }
}

/// A bucket array of `2^log2` buckets plus the overflow buckets chained to it.
pub(crate) struct Table<K, V> {
    pub(crate) log2: u8,
    chunk_shift: u8,
    /// `2^log2 - 1` and `2^chunk_shift - 1`, kept rather than computed
    /// from the shifts on every access.
    bucket_mask: usize,
    chunk_mask: usize,
    block_shift: u8,
    chunks: Vec<Chunk<K, V>>,
    materialized: usize,
    /// The overflow arena.
    blocks: Vec<Box<[OverflowBucket<K, V>]>>,
    /// Arena buckets handed out.
    arena_len: usize,
    /// Overflow buckets linked into a chain (arena buckets of evacuated
    /// chains no longer count).
    pub(crate) overflow_buckets: usize,
    /// Entries this array holds before inserting another new key doubles
    /// it: Go's `overLoadFactor` threshold, precomputed.
    pub(crate) max_load: usize,
    /// `chains[l]` counts the buckets whose overflow chain is `l` long
    /// (`l >= 1`), so the longest chain is known without a scan.
    chains: Vec<usize>,
}

impl<K: Clone, V: Clone> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        let chunk_len = 1usize << self.chunk_shift;
        let mut copy = Table {
            log2: self.log2,
            chunk_shift: self.chunk_shift,
            bucket_mask: self.bucket_mask,
            chunk_mask: self.chunk_mask,
            block_shift: self.block_shift,
            chunks: self
                .chunks
                .iter()
                .map(|chunk| {
                    if chunk.is_materialized() {
                        Chunk::new(chunk_len)
                    } else {
                        Chunk::unmaterialized()
                    }
                })
                .collect(),
            materialized: self.materialized,
            blocks: self
                .blocks
                .iter()
                .map(|_| OverflowBucket::block(1 << self.block_shift))
                .collect(),
            arena_len: self.arena_len,
            overflow_buckets: self.overflow_buckets,
            max_load: self.max_load,
            chains: self.chains.clone(),
        };
        // `copy` is a valid table holding no entry yet: if a clone panics,
        // dropping it drops exactly what was cloned so far.
        for (chunk, copy_chunk) in self.chunks.iter().zip(copy.chunks.iter_mut()) {
            let buckets = chunk
                .tophash
                .iter()
                .zip(chunk.links.iter())
                .zip(chunk.entries.iter());
            let copies = copy_chunk
                .tophash
                .iter_mut()
                .zip(copy_chunk.links.iter_mut())
                .zip(copy_chunk.entries.iter_mut());
            for (((tophash, link), entries), ((copy_tophash, copy_link), copy_entries)) in
                buckets.zip(copies)
            {
                clone_bucket(
                    (tophash, link, entries),
                    (copy_tophash, copy_link, copy_entries),
                );
            }
        }
        let arena = self.blocks.iter().flat_map(|block| block.iter());
        let copies = copy.blocks.iter_mut().flat_map(|block| block.iter_mut());
        for (bucket, copy_bucket) in arena.zip(copies).take(self.arena_len) {
            clone_bucket(
                (&bucket.tophash, &bucket.link, &bucket.entries),
                (
                    &mut copy_bucket.tophash,
                    &mut copy_bucket.link,
                    &mut copy_bucket.entries,
                ),
            );
        }
        copy
    }
}

impl<K, V> Drop for Table<K, V> {
    /// Drops every entry where invariant 2 says entries live.
    fn drop(&mut self) {
        if !mem::needs_drop::<(K, V)>() {
            return;
        }
        for chunk in &mut self.chunks {
            for (tophash, entries) in chunk.tophash.iter_mut().zip(chunk.entries.iter_mut()) {
                drop_bucket(tophash, entries);
            }
        }
        let arena_len = self.arena_len;
        let arena = self.blocks.iter_mut().flat_map(|block| block.iter_mut());
        for bucket in arena.take(arena_len) {
            drop_bucket(&mut bucket.tophash, &mut bucket.entries);
        }
    }
}

impl<K, V> Table<K, V> {
    /// A table with no bucket array at all: what `new()` starts with.
    pub(crate) const fn unallocated() -> Self {
        Table {
            log2: 0,
            chunk_shift: 0,
            bucket_mask: 0,
            chunk_mask: 0,
            block_shift: 0,
            chunks: Vec::new(),
            materialized: 0,
            blocks: Vec::new(),
            arena_len: 0,
            overflow_buckets: 0,
            max_load: 0,
            chains: Vec::new(),
        }
    }

    /// A table of `2^log2` buckets. With `materialize` false no bucket is
    /// created yet; see the module docs.
    pub(crate) fn new(log2: u8, materialize: bool) -> Self {
        let bucket =
            mem::size_of::<Tophash>() + mem::size_of::<Link>() + mem::size_of::<Entries<K, V>>();
        let chunk_shift = log2.min(max_shift(bucket).max(4));
        let chunk_count = 1usize << (log2 - chunk_shift);
        let chunk_len = 1usize << chunk_shift;
        let chunks = (0..chunk_count)
            .map(|_| {
                if materialize {
                    Chunk::new(chunk_len)
                } else {
                    Chunk::unmaterialized()
                }
            })
            .collect();
        // About one overflow bucket per eight buckets per block: a table at
        // full load has about one per five (Poisson(6.5) above 8).
        let block_shift = log2
            .saturating_sub(3)
            .min(max_shift(mem::size_of::<OverflowBucket<K, V>>()));
        Table {
            log2,
            chunk_shift,
            bucket_mask: (1 << log2) - 1,
            chunk_mask: chunk_len - 1,
            block_shift,
            chunks,
            materialized: if materialize { chunk_count } else { 0 },
            blocks: Vec::new(),
            arena_len: 0,
            overflow_buckets: 0,
            max_load: max_load(log2),
            chains: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn is_allocated(&self) -> bool {
        !self.chunks.is_empty()
    }

    #[inline]
    pub(crate) fn buckets(&self) -> usize {
        1 << self.log2
    }

    #[inline]
    pub(crate) fn mask(&self) -> usize {
        self.bucket_mask
    }

    #[inline]
    fn chunk_mask(&self) -> usize {
        self.chunk_mask
    }

    #[inline(always)]
    fn head(&self, index: usize) -> Bucket<'_, K, V> {
        let chunk = &self.chunks[index >> self.chunk_shift];
        let i = index & self.chunk_mask();
        // Bounds-checked once: the chunk is materialised and `i` in range.
        let tophash = &chunk.tophash[i];
        // SAFETY: a chunk's three slices have the same length (invariant
        // 6), and `i` is in bounds of `tophash`.
        unsafe {
            (
                tophash,
                chunk.links.get_unchecked(i),
                chunk.entries.get_unchecked(i),
            )
        }
    }

    #[inline(always)]
    fn head_mut(&mut self, index: usize) -> BucketMut<'_, K, V> {
        let i = index & self.chunk_mask();
        let chunk = &mut self.chunks[index >> self.chunk_shift];
        let tophash = &mut chunk.tophash[i];
        // SAFETY: as in `head` (invariant 6).
        unsafe {
            (
                tophash,
                chunk.links.get_unchecked_mut(i),
                chunk.entries.get_unchecked_mut(i),
            )
        }
    }

    #[inline]
    fn overflow(&self, link: Link) -> Bucket<'_, K, V> {
        let k = link as usize - 1;
        let bucket = &self.blocks[k >> self.block_shift][k & ((1 << self.block_shift) - 1)];
        (&bucket.tophash, &bucket.link, &bucket.entries)
    }

    #[inline]
    fn overflow_mut(&mut self, link: Link) -> BucketMut<'_, K, V> {
        let k = link as usize - 1;
        let mask = (1 << self.block_shift) - 1;
        let bucket = &mut self.blocks[k >> self.block_shift][k & mask];
        (&mut bucket.tophash, &mut bucket.link, &mut bucket.entries)
    }

    /// Bucket `link` of head `index`'s chain (`NO_LINK`: the head).
    #[inline]
    fn at(&self, index: usize, link: Link) -> Bucket<'_, K, V> {
        if link == NO_LINK {
            self.head(index)
        } else {
            self.overflow(link)
        }
    }

    #[inline]
    fn at_mut(&mut self, index: usize, link: Link) -> BucketMut<'_, K, V> {
        if link == NO_LINK {
            self.head_mut(index)
        } else {
            self.overflow_mut(link)
        }
    }

    /// The link after bucket `link` of head `index`'s chain, if the chain
    /// may hold entries past it (Go stops at `emptyRest`).
    #[inline]
    fn next_link(tophash: &Tophash, link: &Link) -> Option<Link> {
        if tophash[BUCKET_SLOTS - 1] == EMPTY_REST || *link == NO_LINK {
            None
        } else {
            Some(*link)
        }
    }

    /// The first tophash byte of bucket `index`: tells whether it was
    /// evacuated.
    #[inline]
    pub(crate) fn first_tophash(&self, index: usize) -> u8 {
        self.head(index).0[0]
    }

    /// Creates the chunk holding bucket `index` if it does not exist yet.
    #[inline]
    pub(crate) fn materialize(&mut self, index: usize) {
        let len = 1 << self.chunk_shift;
        let chunk = &mut self.chunks[index >> self.chunk_shift];
        if !chunk.is_materialized() {
            *chunk = Chunk::new(len);
            self.materialized += 1;
        }
    }

    /// Frees every chunk whose buckets all lie below `mark`, starting at
    /// chunk `from`; returns the first chunk not freed.
    pub(crate) fn free_chunks_below(&mut self, from: usize, mark: usize) -> usize {
        let mut chunk = from;
        while (chunk + 1) << self.chunk_shift <= mark {
            if self.chunks[chunk].is_materialized() {
                self.chunks[chunk] = Chunk::unmaterialized();
                self.materialized -= 1;
            }
            chunk += 1;
        }
        chunk
    }

    /// Called once every bucket has been evacuated: each evacuated chain
    /// was emptied, so the arena holds no entry and dropping the table need
    /// not scan it (one write would otherwise pay for a scan of every
    /// overflow bucket of the old array). Were an entry left, it would
    /// leak: it is never read.
    pub(crate) fn forget_evacuated_arena(&mut self) {
        self.arena_len = 0;
    }

    /// Heap bytes held by the bucket arrays, overflow blocks and bookkeeping.
    pub(crate) fn heap_bytes(&self) -> usize {
        let bucket =
            mem::size_of::<Tophash>() + mem::size_of::<Link>() + mem::size_of::<Entries<K, V>>();
        (self.materialized << self.chunk_shift) * bucket
            + (self.blocks.len() << self.block_shift) * mem::size_of::<OverflowBucket<K, V>>()
            + self.chunks.capacity() * mem::size_of::<Chunk<K, V>>()
            + self.blocks.capacity() * mem::size_of::<Box<[OverflowBucket<K, V>]>>()
            + self.chains.capacity() * mem::size_of::<usize>()
    }

    /// The longest overflow chain, in overflow buckets.
    pub(crate) fn max_chain(&self) -> usize {
        self.chains.iter().rposition(|&n| n > 0).unwrap_or(0)
    }

    /// Records that a chain went from `from` to `to` overflow buckets.
    fn chain_changed(&mut self, from: usize, to: usize) {
        if from > 0 {
            self.chains[from] -= 1;
        }
        if to > 0 {
            if self.chains.len() <= to {
                self.chains.resize(to + 1, 0);
            }
            self.chains[to] += 1;
        }
    }

    /// Hands out an empty arena bucket (Go's `newoverflow`).
    #[cold]
    fn new_overflow(&mut self) -> Link {
        let k = self.arena_len;
        if k >> self.block_shift == self.blocks.len() {
            self.blocks
                .push(OverflowBucket::block(1 << self.block_shift));
        }
        self.arena_len += 1;
        self.overflow_buckets += 1;
        Link::try_from(k + 1).expect("invariant: fewer than 2^32 overflow buckets per table")
    }

    /// The entry for `top` in bucket `index`'s chain that `eq` accepts.
    #[inline(always)]
    pub(crate) fn get(
        &self,
        index: usize,
        top: u8,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<&(K, V)> {
        // Invariant 3: a full `top` matches only full bytes.
        let top = top.max(MIN_TOPHASH);
        let chunk = &self.chunks[index >> self.chunk_shift];
        let i = index & self.chunk_mask();
        let mut tophash = &chunk.tophash[i];
        // SAFETY: a chunk's slices have the same length (invariant 6) and
        // `i` is in bounds of `tophash`.
        let mut entries = unsafe { chunk.entries.get_unchecked(i) };
        // The head's link is read only when the chain goes on.
        let mut link = None;
        loop {
            for slot in match_tophash(tophash, top) {
                // SAFETY: byte `slot` equals the full `top` (invariant 3).
                let entry = unsafe { slot_ref(entries, slot) };
                if eq(&entry.0) {
                    return Some(entry);
                }
            }
            if tophash[BUCKET_SLOTS - 1] == EMPTY_REST {
                return None;
            }
            // SAFETY: as for `entries`.
            let next = *link.unwrap_or_else(|| unsafe { chunk.links.get_unchecked(i) });
            if next == NO_LINK {
                return None;
            }
            let bucket;
            (tophash, bucket, entries) = self.overflow(next);
            link = Some(bucket);
        }
    }

    /// Like [`Table::get`], mutably.
    #[inline]
    pub(crate) fn get_mut(
        &mut self,
        index: usize,
        top: u8,
        eq: impl FnMut(&K) -> bool,
    ) -> Option<&mut (K, V)> {
        let slot = self.find(index, top, eq)?;
        Some(self.entry_mut(slot))
    }

    /// Where the key `eq` accepts sits, if present.
    #[inline]
    pub(crate) fn find(&self, index: usize, top: u8, eq: impl FnMut(&K) -> bool) -> Option<Slot> {
        match self.probe(index, top, eq) {
            Probe::Found(slot) => Some(slot),
            Probe::Vacant(_) => None,
        }
    }

    /// Where the key `eq` accepts sits, remembering the first free slot on
    /// the way in case it is absent (Go's `mapassign` scan).
    #[inline]
    pub(crate) fn probe(&self, index: usize, top: u8, mut eq: impl FnMut(&K) -> bool) -> Probe {
        // Invariant 3: a full `top` matches only full bytes.
        let top = top.max(MIN_TOPHASH);
        let (mut tophash, mut next, mut entries) = self.head(index);
        let mut link = NO_LINK;
        let mut free = None;
        loop {
            for i in match_tophash(tophash, top) {
                // SAFETY: byte `i` equals the full `top` (invariant 3).
                if eq(&unsafe { slot_ref(entries, i) }.0) {
                    return Probe::Found(Slot {
                        bucket: index,
                        link,
                        index: i,
                    });
                }
            }
            if free.is_none() {
                free = match_free(tophash).lowest().map(|i| Slot {
                    bucket: index,
                    link,
                    index: i,
                });
            }
            let Some(after) = Self::next_link(tophash, next) else {
                return Probe::Vacant(free);
            };
            link = after;
            (tophash, next, entries) = self.overflow(link);
        }
    }

    pub(crate) fn entry(&self, slot: Slot) -> &(K, V) {
        let (tophash, _, entries) = self.at(slot.bucket, slot.link);
        assert!(
            tophash[slot.index] >= MIN_TOPHASH,
            "invariant: a found Slot holds an entry"
        );
        // SAFETY: the byte was just checked full (invariant 4).
        unsafe { slot_ref(entries, slot.index) }
    }

    pub(crate) fn entry_mut(&mut self, slot: Slot) -> &mut (K, V) {
        let (tophash, _, entries) = self.at_mut(slot.bucket, slot.link);
        assert!(
            tophash[slot.index] >= MIN_TOPHASH,
            "invariant: a found Slot holds an entry"
        );
        // SAFETY: the byte was just checked full (invariant 4).
        unsafe { slot_mut(entries, slot.index) }
    }

    /// Inserts or overwrites in bucket `index`'s chain in one pass, like
    /// [`Table::probe`] then [`Table::place`] or an overwrite, but storing
    /// a new entry into the bucket the scan holds when that bucket has the
    /// chain's first free slot and ends it (the usual case). Returns the
    /// previous value of a present key (whose stored key is kept, as
    /// std's `insert` does). For a write that cannot start a growth: the
    /// caller has checked. A panic in `Eq` changes nothing.
    #[inline]
    pub(crate) fn upsert(&mut self, index: usize, top: u8, key: K, value: V) -> Option<V>
    where
        K: Eq,
    {
        // Invariant 3: a full `top` matches only full bytes.
        let top = top.max(MIN_TOPHASH);
        let mut link = NO_LINK;
        let mut free = None;
        loop {
            let (tophash, next, entries) = self.at_mut(index, link);
            for i in match_tophash(tophash, top) {
                // SAFETY: byte `i` equals the full `top` (invariant 3).
                let entry = unsafe { slot_mut(entries, i) };
                if entry.0 == key {
                    return Some(mem::replace(&mut entry.1, value));
                }
            }
            let first_free = match free {
                Some(_) => None,
                None => match_free(tophash).lowest(),
            };
            let end = tophash[BUCKET_SLOTS - 1] == EMPTY_REST || *next == NO_LINK;
            if end {
                if let Some(i) = first_free {
                    // Here, with the bucket in hand.
                    slot_write(entries, i, (key, value));
                    tophash[i] = top;
                    return None;
                }
                self.place(index, free, top, key, value);
                return None;
            }
            if let Some(i) = first_free {
                free = Some(Slot {
                    bucket: index,
                    link,
                    index: i,
                });
            }
            link = *next;
        }
    }

    /// Stores an entry in `free`, or in a new overflow bucket when the chain
    /// is full, and says where. The caller has checked that the key is absent.
    #[inline]
    pub(crate) fn place(
        &mut self,
        index: usize,
        free: Option<Slot>,
        top: u8,
        key: K,
        value: V,
    ) -> Slot {
        match free {
            Some(slot) => {
                let (tophash, _, entries) = self.at_mut(slot.bucket, slot.link);
                // Storing over a full slot would lose its entry without
                // dropping it: a logic error (a leak), never unsound.
                debug_assert!(tophash[slot.index] < MIN_TOPHASH);
                slot_write(entries, slot.index, (key, value));
                tophash[slot.index] = top.max(MIN_TOPHASH);
                slot
            }
            None => self.push(index, top, key, value),
        }
    }

    /// Stores an entry whose key is known to be absent in the first free
    /// slot of bucket `index`'s chain, appending an overflow bucket when the
    /// chain is full.
    #[inline]
    pub(crate) fn push(&mut self, index: usize, top: u8, key: K, value: V) -> Slot {
        let mut link = NO_LINK;
        let mut depth = 0;
        loop {
            let (tophash, next, entries) = self.at_mut(index, link);
            if let Some(i) = match_free(tophash).lowest() {
                slot_write(entries, i, (key, value));
                tophash[i] = top.max(MIN_TOPHASH);
                return Slot {
                    bucket: index,
                    link,
                    index: i,
                };
            }
            if *next == NO_LINK {
                return self.push_overflow(index, link, depth, top, key, value);
            }
            link = *next;
            depth += 1;
        }
    }

    /// Appends an overflow bucket after `last` (at `depth` in the chain)
    /// and stores the entry in its first slot.
    #[cold]
    fn push_overflow(
        &mut self,
        index: usize,
        last: Link,
        depth: usize,
        top: u8,
        key: K,
        value: V,
    ) -> Slot {
        let link = self.new_overflow();
        self.chain_changed(depth, depth + 1);
        let (tophash, _, entries) = self.overflow_mut(link);
        slot_write(entries, 0, (key, value));
        tophash[0] = top.max(MIN_TOPHASH);
        *self.at_mut(index, last).1 = link;
        Slot {
            bucket: index,
            link,
            index: 0,
        }
    }

    /// Takes the entry out of `slot`, keeping the `EMPTY_REST` markers exact
    /// the way Go's `mapdelete` does.
    #[inline]
    pub(crate) fn take(&mut self, slot: Slot) -> (K, V) {
        let (tophash, next, entries) = self.at_mut(slot.bucket, slot.link);
        let i = slot.index;
        assert!(
            tophash[i] >= MIN_TOPHASH,
            "invariant: a found Slot holds an entry"
        );
        // SAFETY: the byte was just checked full.
        let (entry, after) = unsafe { take_from(tophash, next, entries, i) };
        self.after_take(slot, after);
        entry
    }

    /// Runs Go's `emptyRest` walk after a slot was freed, when nothing
    /// later in its chain holds an entry.
    #[inline]
    fn after_take(&mut self, slot: Slot, after: After) {
        let walk = match after {
            After::Occupied => false,
            After::Free => true,
            After::NextBucket(link) => self.overflow(link).0[0] == EMPTY_REST,
        };
        if walk {
            self.mark_rest(slot);
        }
    }

    /// Finds the key `eq` accepts in bucket `index`'s chain and takes its
    /// entry out, like [`Table::find`] then [`Table::take`] but in one pass
    /// that holds each bucket it scans (a remove needs no free slot, and
    /// takes the entry from the bucket it found it in). A panic in `eq`
    /// changes nothing.
    #[inline]
    pub(crate) fn remove(
        &mut self,
        index: usize,
        top: u8,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<(K, V)> {
        // Invariant 3: a full `top` matches only full bytes.
        let top = top.max(MIN_TOPHASH);
        let mut link = NO_LINK;
        loop {
            // The link is read only when needed: it is another cache line.
            let (tophash, next, entries) = self.at_mut(index, link);
            for i in match_tophash(tophash, top) {
                // SAFETY: byte `i` equals the full `top` (invariant 3).
                if !eq(&unsafe { slot_ref(entries, i) }.0) {
                    continue;
                }
                // SAFETY: byte `i` equals the full `top` (invariant 3).
                let (entry, after) = unsafe { take_from(tophash, next, entries, i) };
                let slot = Slot {
                    bucket: index,
                    link,
                    index: i,
                };
                self.after_take(slot, after);
                return Some(entry);
            }
            if tophash[BUCKET_SLOTS - 1] == EMPTY_REST || *next == NO_LINK {
                return None;
            }
            link = *next;
        }
    }

    /// After `slot` was freed with nothing later in its chain holding an
    /// entry: turns the run of free slots that now ends the chain into
    /// `EMPTY_REST` (the end of Go's `mapdelete`), walking back across
    /// buckets without allocating.
    #[cold]
    #[inline(never)]
    fn mark_rest(&mut self, slot: Slot) {
        let Slot {
            bucket,
            mut link,
            index: mut i,
        } = slot;
        loop {
            // Within one bucket: slot `i` and the `EMPTY_ONE` run before it.
            let tophash = self.at_mut(bucket, link).0;
            loop {
                tophash[i] = EMPTY_REST;
                if i == 0 {
                    break;
                }
                i -= 1;
                if tophash[i] != EMPTY_ONE {
                    return;
                }
            }
            if link == NO_LINK {
                return;
            }
            // Step back to the bucket whose link is `link`.
            let mut prev = NO_LINK;
            loop {
                let next = *self.at(bucket, prev).1;
                if next == link {
                    break;
                }
                prev = next;
            }
            link = prev;
            i = BUCKET_SLOTS - 1;
            if self.at(bucket, link).0[i] != EMPTY_ONE {
                return;
            }
        }
    }

    /// Appends the hash of every key of bucket `index`'s chain to `hashes`,
    /// in the order [`Table::evacuate_into`] moves them. Runs the user's
    /// `Hash` and changes nothing, so a panic leaves the chain whole.
    pub(crate) fn chain_hashes(
        &self,
        index: usize,
        hasher: impl Fn(&K) -> u64,
        hashes: &mut Vec<u64>,
    ) {
        let (mut tophash, mut link, mut entries) = self.head(index);
        loop {
            for i in match_full(tophash) {
                // SAFETY: `i` comes from `match_full` (invariant 3).
                hashes.push(hasher(&unsafe { slot_ref(entries, i) }.0));
            }
            if *link == NO_LINK {
                return;
            }
            (tophash, link, entries) = self.overflow(*link);
        }
    }

    /// Where the next entry evacuated into bucket `index` goes: after the
    /// last entry of its chain. In a doubling or a same-size growth the
    /// destination is still empty (every write evacuates its key's old
    /// bucket before it writes); in a halving the second old bucket's
    /// entries follow the first's, as Go's `evacDst` appends.
    #[inline]
    fn appender(&self, index: usize) -> Appender {
        if self.head(index).0[0] == EMPTY_REST {
            // The whole chain is empty: the usual case.
            Appender {
                index,
                link: NO_LINK,
                depth: 0,
                slot: 0,
            }
        } else {
            self.appender_after_entries(index)
        }
    }

    /// [`Table::appender`] for a chain that holds entries: after the last
    /// full slot, so every later position is free and `EMPTY_REST`, and
    /// filling them keeps the markers exact.
    #[cold]
    #[inline(never)]
    fn appender_after_entries(&self, index: usize) -> Appender {
        let mut at = Appender {
            index,
            link: NO_LINK,
            depth: 0,
            slot: 0,
        };
        let (mut tophash, mut next, _) = self.head(index);
        let (mut link, mut depth) = (NO_LINK, 0);
        loop {
            if let Some(i) = match_full(tophash).highest() {
                at = Appender {
                    index,
                    link,
                    depth,
                    slot: i + 1,
                };
            }
            if *next == NO_LINK {
                return at;
            }
            link = *next;
            depth += 1;
            (tophash, next, _) = self.overflow(link);
        }
    }

    /// Makes `to` point at a free position, past a full bucket: the next
    /// bucket of the chain, or a new overflow bucket appended to it.
    #[cold]
    #[inline(never)]
    fn advance(&mut self, to: &mut Appender) {
        let next = *self.at(to.index, to.link).1;
        let link = if next != NO_LINK {
            next
        } else {
            let link = self.new_overflow();
            self.chain_changed(to.depth, to.depth + 1);
            *self.at_mut(to.index, to.link).1 = link;
            link
        };
        to.link = link;
        to.depth += 1;
        to.slot = 0;
    }

    /// Moves every entry of bucket `index`'s chain into `dest` (Go's
    /// `evacuate`), the `n`-th entry to bucket `hashes[n] & dest.mask()`,
    /// and marks the head bucket evacuated: `EVACUATED_X` for entries that
    /// stayed at `index & dest.mask()`, `EVACUATED_Y` for the others,
    /// `EVACUATED_EMPTY` for free slots. Runs no user code. The chain's
    /// overflow buckets are emptied and unlinked.
    ///
    /// A doubling moves in two passes over the chain, one per destination:
    /// the first takes the entries whose hash has the new bit clear (to
    /// `x`), the second everything left (to `y`). Each pass fills one
    /// destination chain bucket by bucket, with no per-entry choice of
    /// destination for the branch predictor to miss, the way hashbrown's
    /// resize writes one slot after another.
    pub(crate) fn evacuate_into(&mut self, index: usize, hashes: &[u64], dest: &mut Table<K, V>) {
        let new_mask = dest.mask();
        let x = index & new_mask;
        // The hash bit that sends an entry to `y`: set only in a doubling.
        let y_bit = new_mask & !self.mask();
        let mut hashes = hashes.iter();
        if y_bit == 0 {
            self.move_chain(index, dest, x, EVACUATED_X, || true);
        } else {
            self.move_chain(index, dest, x, EVACUATED_X, || {
                let hash = hashes
                    .next()
                    .expect("invariant: one recorded hash per evacuated entry");
                *hash as usize & y_bit == 0
            });
            self.move_chain(index, dest, x | y_bit, EVACUATED_Y, || true);
        }
        let (tophash, next, _) = self.head_mut(index);
        for byte in tophash.iter_mut() {
            if *byte <= EMPTY_ONE {
                *byte = EVACUATED_EMPTY;
            }
        }
        let mut link = mem::replace(next, NO_LINK);
        let mut chain_len = 0;
        while link != NO_LINK {
            chain_len += 1;
            let (tophash, next, _) = self.overflow_mut(link);
            // Every entry was moved out: every byte is already free.
            *tophash = [EMPTY_REST; BUCKET_SLOTS];
            link = mem::replace(next, NO_LINK);
        }
        self.overflow_buckets -= chain_len;
        self.chain_changed(chain_len, 0);
    }

    /// One pass of [`Table::evacuate_into`]: moves the entries of bucket
    /// `index`'s chain that `pick` accepts, asked for each full slot in
    /// chain order, to the end of `dest`'s chain at `to`. A moved entry's
    /// byte becomes `head_marker` in the head bucket and `EMPTY_REST` in an
    /// overflow bucket; both are free, so a later pass skips it.
    #[inline]
    fn move_chain(
        &mut self,
        index: usize,
        dest: &mut Table<K, V>,
        to: usize,
        head_marker: u8,
        mut pick: impl FnMut() -> bool,
    ) {
        let mut at = dest.appender(to);
        let (mut dest_tophash, _, mut dest_entries) = dest.at_mut(at.index, at.link);
        let (mut tophash, mut next, mut entries) = self.head_mut(index);
        let mut marker = head_marker;
        loop {
            for i in match_full(tophash) {
                if !pick() {
                    continue;
                }
                let top = tophash[i];
                tophash[i] = marker;
                // SAFETY: byte `i` was full (`match_full`) and is now free.
                let entry = unsafe { slot_take(entries, i) };
                if at.slot >= BUCKET_SLOTS {
                    dest.advance(&mut at);
                    (dest_tophash, _, dest_entries) = dest.at_mut(at.index, at.link);
                }
                slot_write(dest_entries, at.slot, entry);
                dest_tophash[at.slot] = top;
                at.slot += 1;
            }
            let link = *next;
            if link == NO_LINK {
                return;
            }
            marker = EMPTY_REST;
            (tophash, next, entries) = self.overflow_mut(link);
        }
    }

    /// Keeps the entries `keep` accepts; every removal decrements `len` and
    /// increments `removes` before the entry is dropped. A panic in `keep`
    /// (or in a drop) leaves every visited rejected entry removed and the
    /// rest in place, with `len` exact.
    pub(crate) fn retain(
        &mut self,
        keep: &mut impl FnMut(&K, &mut V) -> bool,
        len: &mut usize,
        removes: &mut u64,
    ) {
        for index in 0..self.chunks.len() << self.chunk_shift {
            if !self.chunks[index >> self.chunk_shift].is_materialized() {
                continue;
            }
            let mut removed = false;
            let mut link = NO_LINK;
            loop {
                let (tophash, next, entries) = self.at_mut(index, link);
                for i in match_full(tophash) {
                    // SAFETY: `i` comes from `match_full` (invariant 3);
                    // `keep` cannot reach the table to change it meanwhile.
                    let (key, value) = unsafe { slot_mut(entries, i) };
                    if !keep(key, value) {
                        tophash[i] = EMPTY_ONE;
                        *len -= 1;
                        *removes += 1;
                        removed = true;
                        // SAFETY: byte `i` was full and is now free.
                        unsafe { slot_drop(entries, i) };
                    }
                }
                if *next == NO_LINK {
                    break;
                }
                link = *next;
            }
            if removed {
                self.refresh_free_markers(index);
            }
        }
    }

    /// Rewrites the free markers of bucket `index`'s chain after slots were
    /// emptied without [`Table::take`]: free slots after the last entry
    /// become `EMPTY_REST`, the others `EMPTY_ONE`. Two passes, no
    /// allocation.
    fn refresh_free_markers(&mut self, index: usize) {
        let mut last = None;
        let mut link = NO_LINK;
        let mut position = 0usize;
        loop {
            let (tophash, &next, _) = self.at(index, link);
            if let Some(i) = match_full(tophash).highest() {
                last = Some(position + i);
            }
            position += BUCKET_SLOTS;
            if next == NO_LINK {
                break;
            }
            link = next;
        }
        let mut link = NO_LINK;
        let mut position = 0usize;
        loop {
            let (tophash, next, _) = self.at_mut(index, link);
            for (i, byte) in tophash.iter_mut().enumerate() {
                if *byte < MIN_TOPHASH {
                    let rest = last.is_none_or(|last| position + i > last);
                    *byte = if rest { EMPTY_REST } else { EMPTY_ONE };
                }
            }
            position += BUCKET_SLOTS;
            if *next == NO_LINK {
                break;
            }
            link = *next;
        }
    }

    /// Every entry, shared.
    pub(crate) fn iter(&self) -> RawIter<'_, K, V> {
        RawIter {
            chunks: self.chunks.iter(),
            tophash: [].iter(),
            entries: [].iter(),
            blocks: self.blocks.iter(),
            arena: [].iter(),
            arena_left: self.arena_len,
            current: None,
            full: SlotMask::EMPTY,
        }
    }

    /// Every entry, with its value mutable.
    pub(crate) fn iter_mut(&mut self) -> RawIterMut<'_, K, V> {
        RawIterMut {
            chunks: self.chunks.iter_mut(),
            tophash: [].iter(),
            entries: [].iter_mut(),
            blocks: self.blocks.iter_mut(),
            arena: [].iter_mut(),
            arena_left: self.arena_len,
            current: [EMPTY_REST; BUCKET_SLOTS].into_iter().zip([].iter_mut()),
        }
    }

    /// Consumes the table, yielding every entry.
    pub(crate) fn into_entries(self) -> IntoEntries<K, V> {
        IntoEntries {
            table: self,
            position: 0,
        }
    }

    /// Takes out the first entry at or after bucket `position` (heads of
    /// every chunk, then arena buckets), moving `position` to its bucket.
    fn take_next(&mut self, position: &mut usize) -> Option<(K, V)> {
        let heads = self.chunks.len() << self.chunk_shift;
        loop {
            let p = *position;
            let (tophash, _, entries) = if p < heads {
                if !self.chunks[p >> self.chunk_shift].is_materialized() {
                    *position = (p | self.chunk_mask()) + 1;
                    continue;
                }
                self.head_mut(p)
            } else if p - heads < self.arena_len {
                self.overflow_mut(Link::try_from(p - heads + 1).ok()?)
            } else {
                return None;
            };
            if let Some(i) = match_full(tophash).lowest() {
                tophash[i] = EMPTY_ONE;
                // SAFETY: byte `i` was full (`match_full`) and is now free.
                return Some(unsafe { slot_take(entries, i) });
            }
            *position += 1;
        }
    }
}

/// Where [`Table::move_chain`] stores next: slot `slot` of bucket `link` of
/// head `index`'s chain, `depth` overflow buckets down.
struct Appender {
    index: usize,
    link: Link,
    depth: usize,
    slot: usize,
}

/// Every entry of a table, shared: the head buckets of every materialised
/// chunk, then the arena. Created by [`Table::iter`].
pub(crate) struct RawIter<'a, K, V> {
    chunks: slice::Iter<'a, Chunk<K, V>>,
    tophash: slice::Iter<'a, Tophash>,
    entries: slice::Iter<'a, Entries<K, V>>,
    blocks: slice::Iter<'a, Box<[OverflowBucket<K, V>]>>,
    arena: slice::Iter<'a, OverflowBucket<K, V>>,
    arena_left: usize,
    current: Option<&'a Entries<K, V>>,
    full: SlotMask,
}

impl<K, V> Clone for RawIter<'_, K, V> {
    fn clone(&self) -> Self {
        RawIter {
            chunks: self.chunks.clone(),
            tophash: self.tophash.clone(),
            entries: self.entries.clone(),
            blocks: self.blocks.clone(),
            arena: self.arena.clone(),
            arena_left: self.arena_left,
            current: self.current,
            full: self.full,
        }
    }
}

impl<K, V> RawIter<'_, K, V> {
    /// An iterator over nothing.
    pub(crate) fn empty() -> Self {
        RawIter {
            chunks: [].iter(),
            tophash: [].iter(),
            entries: [].iter(),
            blocks: [].iter(),
            arena: [].iter(),
            arena_left: 0,
            current: None,
            full: SlotMask::EMPTY,
        }
    }
}

impl<'a, K, V> Iterator for RawIter<'a, K, V> {
    type Item = &'a (K, V);

    #[inline]
    fn next(&mut self) -> Option<&'a (K, V)> {
        loop {
            if let (Some(i), Some(entries)) = (self.full.next(), self.current) {
                // SAFETY: `full` is `match_full` of `current`'s own bytes,
                // which cannot change while the table is borrowed.
                return Some(unsafe { slot_ref(entries, i) });
            }
            if let (Some(tophash), Some(entries)) = (self.tophash.next(), self.entries.next()) {
                self.full = match_full(tophash);
                self.current = Some(entries);
            } else if let Some(chunk) = self.chunks.next() {
                self.tophash = chunk.tophash.iter();
                self.entries = chunk.entries.iter();
            } else if self.arena_left == 0 {
                return None;
            } else if let Some(bucket) = self.arena.next() {
                self.arena_left -= 1;
                self.full = match_full(&bucket.tophash);
                self.current = Some(&bucket.entries);
            } else {
                self.arena = self.blocks.next()?.iter();
            }
        }
    }

    /// Internal iteration (what `sum`, `for_each` and `count` use): plain
    /// loops over the buckets, without the state machine of `next`.
    fn fold<B, F>(self, init: B, mut f: F) -> B
    where
        F: FnMut(B, &'a (K, V)) -> B,
    {
        let RawIter {
            chunks,
            tophash,
            entries,
            blocks,
            arena,
            arena_left,
            current,
            full,
        } = self;
        let mut visit = |acc: B, full: SlotMask, entries: &'a Entries<K, V>| {
            full.fold(acc, |acc, i| {
                // SAFETY: `full` is `match_full` of the bytes of the bucket
                // `entries` belongs to, which cannot change while the table
                // is borrowed (invariant 3).
                f(acc, unsafe { slot_ref(entries, i) })
            })
        };
        let mut acc = init;
        if let Some(entries) = current {
            acc = visit(acc, full, entries);
        }
        for (bytes, bucket) in tophash.zip(entries) {
            acc = visit(acc, match_full(bytes), bucket);
        }
        for chunk in chunks {
            for (bytes, bucket) in chunk.tophash.iter().zip(chunk.entries.iter()) {
                acc = visit(acc, match_full(bytes), bucket);
            }
        }
        let rest = arena.chain(blocks.flat_map(|block| block.iter()));
        for bucket in rest.take(arena_left) {
            acc = visit(acc, match_full(&bucket.tophash), &bucket.entries);
        }
        acc
    }
}

/// Every entry of a table, with mutable values. Created by
/// [`Table::iter_mut`].
pub(crate) struct RawIterMut<'a, K, V> {
    chunks: slice::IterMut<'a, Chunk<K, V>>,
    tophash: slice::Iter<'a, Tophash>,
    entries: slice::IterMut<'a, Entries<K, V>>,
    blocks: slice::IterMut<'a, Box<[OverflowBucket<K, V>]>>,
    arena: slice::IterMut<'a, OverflowBucket<K, V>>,
    arena_left: usize,
    /// The current bucket's tophash bytes, with its slots.
    current: Zip<array::IntoIter<u8, BUCKET_SLOTS>, slice::IterMut<'a, Cell<K, V>>>,
}

impl<K, V> RawIterMut<'_, K, V> {
    /// An iterator over nothing.
    pub(crate) fn empty() -> Self {
        RawIterMut {
            chunks: [].iter_mut(),
            tophash: [].iter(),
            entries: [].iter_mut(),
            blocks: [].iter_mut(),
            arena: [].iter_mut(),
            arena_left: 0,
            current: [EMPTY_REST; BUCKET_SLOTS].into_iter().zip([].iter_mut()),
        }
    }
}

impl<'a, K, V> Iterator for RawIterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);

    #[inline]
    fn next(&mut self) -> Option<(&'a K, &'a mut V)> {
        loop {
            for (top, slot) in self.current.by_ref() {
                if top >= MIN_TOPHASH {
                    // SAFETY: `top` is this slot's own byte, copied when
                    // its bucket was reached; the table is borrowed by this
                    // iterator, so the byte still holds (invariant 1).
                    let (key, value) = unsafe { slot_in_place(slot) };
                    return Some((&*key, value));
                }
            }
            if let (Some(tophash), Some(entries)) = (self.tophash.next(), self.entries.next()) {
                self.current = (*tophash).into_iter().zip(entries.iter_mut());
            } else if let Some(chunk) = self.chunks.next() {
                self.tophash = chunk.tophash.iter();
                self.entries = chunk.entries.iter_mut();
            } else if self.arena_left == 0 {
                return None;
            } else if let Some(bucket) = self.arena.next() {
                self.arena_left -= 1;
                self.current = bucket.tophash.into_iter().zip(bucket.entries.iter_mut());
            } else {
                self.arena = self.blocks.next()?.iter_mut();
            }
        }
    }
}

/// Every entry of a table, by value. Entries not taken are dropped with
/// the table. Created by [`Table::into_entries`].
pub(crate) struct IntoEntries<K, V> {
    table: Table<K, V>,
    position: usize,
}

impl<K, V> Iterator for IntoEntries<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        self.table.take_next(&mut self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_turns_trailing_run_into_empty_rest() {
        let mut t: Table<u64, u64> = Table::new(0, true);
        let slots: Vec<Slot> = (0..8u64).map(|k| t.push(0, MIN_TOPHASH, k, k)).collect();
        t.take(slots[3]);
        assert_eq!(t.head(0).0[3], EMPTY_ONE);
        for k in (4..8).rev() {
            t.take(slots[k]);
        }
        assert_eq!(&t.head(0).0[3..], &[EMPTY_REST; 5]);
        // A chain: freeing the last entry of the overflow bucket walks back
        // into the head bucket.
        let mut t: Table<u64, u64> = Table::new(0, true);
        let slots: Vec<Slot> = (0..9u64).map(|k| t.push(0, MIN_TOPHASH, k, k)).collect();
        t.take(slots[7]);
        assert_eq!(t.head(0).0[7], EMPTY_ONE, "a later bucket holds an entry");
        t.take(slots[8]);
        assert_eq!(t.head(0).0[7], EMPTY_REST);
        assert_eq!(*t.overflow(slots[8].link).0, [EMPTY_REST; 8]);
    }

    #[test]
    fn lazy_table_materializes_one_chunk() {
        let mut t: Table<u64, u64> = Table::new(16, false);
        assert_eq!(t.materialized, 0);
        t.materialize(70_000 % t.buckets());
        assert_eq!(t.materialized, 1);
        let before = t.heap_bytes();
        t.materialize(70_000 % t.buckets());
        assert_eq!(t.heap_bytes(), before);
    }

    #[test]
    fn overflow_chain_bookkeeping() {
        let mut t: Table<u64, u64> = Table::new(0, true);
        for k in 0..20u64 {
            t.push(0, MIN_TOPHASH, k, k);
        }
        assert_eq!(t.overflow_buckets, 2);
        assert_eq!(t.max_chain(), 2);
        let slot = t.find(0, MIN_TOPHASH, |k| *k == 19).unwrap();
        assert_ne!(slot.link, NO_LINK);
        assert_eq!(t.take(slot), (19, 19));
        assert!(t.find(0, MIN_TOPHASH, |k| *k == 19).is_none());
        let slot = t.find(0, MIN_TOPHASH, |k| *k == 3).unwrap();
        assert_eq!(t.take(slot), (3, 3));
        assert_eq!(t.head(0).0[3], EMPTY_ONE);
        assert_eq!(t.iter().count(), 18);
        assert_eq!(t.into_entries().count(), 18);
    }

    #[test]
    fn evacuation_moves_a_whole_chain() {
        let mut old: Table<u64, u64> = Table::new(0, true);
        for k in 0..20u64 {
            old.push(0, MIN_TOPHASH + k as u8, k, k);
        }
        let mut hashes = Vec::new();
        old.chain_hashes(0, |&k| k, &mut hashes);
        let mut new: Table<u64, u64> = Table::new(1, true);
        old.evacuate_into(0, &hashes, &mut new);
        assert_eq!(old.overflow_buckets, 0);
        assert_eq!(old.iter().count(), 0);
        assert_eq!(new.iter().count(), 20);
        for k in 0..20u64 {
            let index = k as usize & 1;
            assert_eq!(
                new.get(index, MIN_TOPHASH + k as u8, |&q| q == k),
                Some(&(k, k))
            );
        }
        let first = old.first_tophash(0);
        assert!(first == EVACUATED_X || first == EVACUATED_Y);
    }
}
