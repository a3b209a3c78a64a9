//! The storage layer: buckets of eight slots with their tophash bytes,
//! overflow chains, and a bucket array that is materialised chunk by chunk.
//!
//! Every invariant of the layout lives here:
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
//! Layout: within a chunk the control words (tophash bytes and overflow
//! link) of all buckets are stored contiguously, apart from the entries (the
//! way hashbrown keeps its control bytes apart from its slots). A miss, and
//! the first step of every hit, then reads one 16-byte word per bucket from
//! a dense array instead of a cache line of a 200-byte bucket. Overflow
//! buckets keep their control word next to their entries, as in Go.

use std::mem;
use std::slice;

use super::tophash::{
    match_free, match_full, match_tophash, SlotMask, BUCKET_SLOTS, EMPTY_ONE, EMPTY_REST,
    EVACUATED_EMPTY, EVACUATED_X, EVACUATED_Y, MIN_TOPHASH,
};

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

/// A bucket's control word: its tophash bytes and the link to the next
/// bucket of its chain. 16 bytes, so a control word never straddles a
/// cache line.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Ctrl {
    tophash: Tophash,
    overflow: Link,
}

impl Ctrl {
    const EMPTY: Ctrl = Ctrl {
        tophash: [EMPTY_REST; BUCKET_SLOTS],
        overflow: NO_LINK,
    };
}

/// A bucket's eight entries.
type Entries<K, V> = [Option<(K, V)>; BUCKET_SLOTS];

const fn empty_entries<K, V>() -> Entries<K, V> {
    [const { None }; BUCKET_SLOTS]
}

/// `2^chunk_shift` buckets: their control words, then their entries. Both
/// slices are empty while the chunk is not materialised.
struct Chunk<K, V> {
    ctrl: Box<[Ctrl]>,
    entries: Box<[Entries<K, V>]>,
}

impl<K, V> Chunk<K, V> {
    fn unmaterialized() -> Self {
        Chunk {
            ctrl: Box::default(),
            entries: Box::default(),
        }
    }

    fn new(len: usize) -> Self {
        Chunk {
            ctrl: vec![Ctrl::EMPTY; len].into_boxed_slice(),
            entries: (0..len).map(|_| empty_entries()).collect(),
        }
    }

    fn is_materialized(&self) -> bool {
        !self.ctrl.is_empty()
    }
}

impl<K: Clone, V: Clone> Clone for Chunk<K, V> {
    fn clone(&self) -> Self {
        Chunk {
            ctrl: self.ctrl.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// An overflow bucket: control word and entries together, as in Go.
struct OverflowBucket<K, V> {
    ctrl: Ctrl,
    entries: Entries<K, V>,
}

impl<K: Clone, V: Clone> Clone for OverflowBucket<K, V> {
    fn clone(&self) -> Self {
        OverflowBucket {
            ctrl: self.ctrl,
            entries: self.entries.clone(),
        }
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
        13usize.saturating_mul(1 << (log2 - 1))
    }
}

/// A bucket array of `2^log2` buckets plus the overflow buckets chained to it.
pub(crate) struct Table<K, V> {
    pub(crate) log2: u8,
    chunk_shift: u8,
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
        Table {
            log2: self.log2,
            chunk_shift: self.chunk_shift,
            block_shift: self.block_shift,
            chunks: self.chunks.clone(),
            materialized: self.materialized,
            blocks: self.blocks.clone(),
            arena_len: self.arena_len,
            overflow_buckets: self.overflow_buckets,
            max_load: self.max_load,
            chains: self.chains.clone(),
        }
    }
}

impl<K, V> Table<K, V> {
    /// A table with no bucket array at all: what `new()` starts with.
    pub(crate) const fn unallocated() -> Self {
        Table {
            log2: 0,
            chunk_shift: 0,
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
        let bucket = mem::size_of::<Ctrl>() + mem::size_of::<Entries<K, V>>();
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
        self.buckets() - 1
    }

    #[inline]
    fn chunk_mask(&self) -> usize {
        (1 << self.chunk_shift) - 1
    }

    #[inline]
    fn head(&self, index: usize) -> (&Ctrl, &Entries<K, V>) {
        let chunk = &self.chunks[index >> self.chunk_shift];
        let i = index & self.chunk_mask();
        (&chunk.ctrl[i], &chunk.entries[i])
    }

    #[inline]
    fn head_mut(&mut self, index: usize) -> (&mut Ctrl, &mut Entries<K, V>) {
        let i = index & self.chunk_mask();
        let chunk = &mut self.chunks[index >> self.chunk_shift];
        (&mut chunk.ctrl[i], &mut chunk.entries[i])
    }

    #[inline]
    fn overflow(&self, link: Link) -> (&Ctrl, &Entries<K, V>) {
        let k = link as usize - 1;
        let bucket = &self.blocks[k >> self.block_shift][k & ((1 << self.block_shift) - 1)];
        (&bucket.ctrl, &bucket.entries)
    }

    #[inline]
    fn overflow_mut(&mut self, link: Link) -> (&mut Ctrl, &mut Entries<K, V>) {
        let k = link as usize - 1;
        let mask = (1 << self.block_shift) - 1;
        let bucket = &mut self.blocks[k >> self.block_shift][k & mask];
        (&mut bucket.ctrl, &mut bucket.entries)
    }

    /// Bucket `link` of head `index`'s chain (`NO_LINK`: the head).
    #[inline]
    fn at(&self, index: usize, link: Link) -> (&Ctrl, &Entries<K, V>) {
        if link == NO_LINK {
            self.head(index)
        } else {
            self.overflow(link)
        }
    }

    #[inline]
    fn at_mut(&mut self, index: usize, link: Link) -> (&mut Ctrl, &mut Entries<K, V>) {
        if link == NO_LINK {
            self.head_mut(index)
        } else {
            self.overflow_mut(link)
        }
    }

    /// The first tophash byte of bucket `index`: tells whether it was
    /// evacuated.
    #[inline]
    pub(crate) fn first_tophash(&self, index: usize) -> u8 {
        self.head(index).0.tophash[0]
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

    /// Heap bytes held by the bucket arrays, overflow blocks and bookkeeping.
    pub(crate) fn heap_bytes(&self) -> usize {
        let bucket = mem::size_of::<Ctrl>() + mem::size_of::<Entries<K, V>>();
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
            let block = (0..1usize << self.block_shift)
                .map(|_| OverflowBucket {
                    ctrl: Ctrl::EMPTY,
                    entries: empty_entries(),
                })
                .collect();
            self.blocks.push(block);
        }
        self.arena_len += 1;
        self.overflow_buckets += 1;
        Link::try_from(k + 1).expect("invariant: fewer than 2^32 overflow buckets per table")
    }

    /// The entry for `top` in bucket `index`'s chain that `eq` accepts.
    #[inline]
    pub(crate) fn get(
        &self,
        index: usize,
        top: u8,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<&(K, V)> {
        let (mut ctrl, mut entries) = self.head(index);
        loop {
            for i in match_tophash(&ctrl.tophash, top) {
                if let Some(entry) = &entries[i] {
                    if eq(&entry.0) {
                        return Some(entry);
                    }
                }
            }
            if ctrl.tophash[BUCKET_SLOTS - 1] == EMPTY_REST || ctrl.overflow == NO_LINK {
                return None;
            }
            (ctrl, entries) = self.overflow(ctrl.overflow);
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
        let (mut ctrl, mut entries) = self.head(index);
        let mut link = NO_LINK;
        let mut free = None;
        loop {
            for i in match_tophash(&ctrl.tophash, top) {
                if matches!(&entries[i], Some(entry) if eq(&entry.0)) {
                    return Probe::Found(Slot {
                        bucket: index,
                        link,
                        index: i,
                    });
                }
            }
            if free.is_none() {
                free = match_free(&ctrl.tophash).lowest().map(|i| Slot {
                    bucket: index,
                    link,
                    index: i,
                });
            }
            if ctrl.tophash[BUCKET_SLOTS - 1] == EMPTY_REST || ctrl.overflow == NO_LINK {
                return Probe::Vacant(free);
            }
            link = ctrl.overflow;
            (ctrl, entries) = self.overflow(link);
        }
    }

    pub(crate) fn entry(&self, slot: Slot) -> &(K, V) {
        self.at(slot.bucket, slot.link).1[slot.index]
            .as_ref()
            .expect("invariant: a found Slot holds an entry")
    }

    pub(crate) fn entry_mut(&mut self, slot: Slot) -> &mut (K, V) {
        self.at_mut(slot.bucket, slot.link).1[slot.index]
            .as_mut()
            .expect("invariant: a found Slot holds an entry")
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
                debug_assert!(top >= MIN_TOPHASH);
                let (ctrl, entries) = self.at_mut(slot.bucket, slot.link);
                debug_assert!(ctrl.tophash[slot.index] < MIN_TOPHASH);
                entries[slot.index] = Some((key, value));
                ctrl.tophash[slot.index] = top;
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
        debug_assert!(top >= MIN_TOPHASH);
        let mut link = NO_LINK;
        let mut depth = 0;
        loop {
            let (ctrl, entries) = self.at_mut(index, link);
            if let Some(i) = match_free(&ctrl.tophash).lowest() {
                entries[i] = Some((key, value));
                ctrl.tophash[i] = top;
                return Slot {
                    bucket: index,
                    link,
                    index: i,
                };
            }
            if ctrl.overflow == NO_LINK {
                return self.push_overflow(index, link, depth, top, key, value);
            }
            link = ctrl.overflow;
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
        let (ctrl, entries) = self.overflow_mut(link);
        entries[0] = Some((key, value));
        ctrl.tophash[0] = top;
        self.at_mut(index, last).0.overflow = link;
        Slot {
            bucket: index,
            link,
            index: 0,
        }
    }

    /// Takes the entry out of `slot`, keeping the `EMPTY_REST` markers exact
    /// the way Go's `mapdelete` does.
    pub(crate) fn take(&mut self, slot: Slot) -> (K, V) {
        let (ctrl, entries) = self.at_mut(slot.bucket, slot.link);
        let entry = entries[slot.index]
            .take()
            .expect("invariant: a found Slot holds an entry");
        ctrl.tophash[slot.index] = EMPTY_ONE;
        self.mark_rest(slot);
        entry
    }

    /// After `slot` was freed: when nothing later in its chain holds an
    /// entry, turns the run of free slots that now ends the chain into
    /// `EMPTY_REST` (the end of Go's `mapdelete`), walking back across
    /// buckets without allocating.
    fn mark_rest(&mut self, slot: Slot) {
        let Slot {
            bucket,
            mut link,
            index: mut i,
        } = slot;
        let (ctrl, _) = self.at(bucket, link);
        if i == BUCKET_SLOTS - 1 {
            if ctrl.overflow != NO_LINK && self.overflow(ctrl.overflow).0.tophash[0] != EMPTY_REST {
                return;
            }
        } else if ctrl.tophash[i + 1] != EMPTY_REST {
            return;
        }
        loop {
            self.at_mut(bucket, link).0.tophash[i] = EMPTY_REST;
            if i == 0 {
                if link == NO_LINK {
                    return;
                }
                // Step back to the bucket whose link is `link`.
                let mut prev = NO_LINK;
                loop {
                    let next = self.at(bucket, prev).0.overflow;
                    if next == link {
                        break;
                    }
                    prev = next;
                }
                link = prev;
                i = BUCKET_SLOTS - 1;
            } else {
                i -= 1;
            }
            if self.at(bucket, link).0.tophash[i] != EMPTY_ONE {
                return;
            }
        }
    }

    /// The keys of bucket `index`'s chain, in the order
    /// [`Table::evacuate_into`] moves them.
    pub(crate) fn chain_keys(&self, index: usize) -> impl Iterator<Item = &K> + '_ {
        std::iter::successors(Some(self.head(index)), move |(ctrl, _)| {
            (ctrl.overflow != NO_LINK).then(|| self.overflow(ctrl.overflow))
        })
        .flat_map(|(ctrl, entries)| {
            match_full(&ctrl.tophash).map(move |i| {
                &entries[i]
                    .as_ref()
                    .expect("invariant: a full tophash marks an entry")
                    .0
            })
        })
    }

    /// Moves every entry of bucket `index`'s chain into `dest` (Go's
    /// `evacuate`), the `n`-th entry to bucket `hashes[n] & dest.mask()`,
    /// and marks the head bucket evacuated: `EVACUATED_X` for entries that
    /// stayed at `index & dest.mask()`, `EVACUATED_Y` for the others,
    /// `EVACUATED_EMPTY` for free slots. Runs no user code. The chain's
    /// overflow buckets are emptied and unlinked.
    pub(crate) fn evacuate_into(&mut self, index: usize, hashes: &[u64], dest: &mut Table<K, V>) {
        let new_mask = dest.mask();
        let x = index & new_mask;
        let mut hashes = hashes.iter();
        let mut next_dest = || {
            *hashes
                .next()
                .expect("invariant: one recorded hash per evacuated entry") as usize
                & new_mask
        };
        let (ctrl, entries) = self.head_mut(index);
        let mut markers = [EVACUATED_EMPTY; BUCKET_SLOTS];
        for i in match_full(&ctrl.tophash) {
            let top = ctrl.tophash[i];
            ctrl.tophash[i] = EVACUATED_EMPTY;
            let (key, value) = entries[i]
                .take()
                .expect("invariant: a full tophash marks an entry");
            let to = next_dest();
            markers[i] = if to == x { EVACUATED_X } else { EVACUATED_Y };
            dest.push(to, top, key, value);
        }
        ctrl.tophash = markers;
        let mut link = mem::replace(&mut ctrl.overflow, NO_LINK);
        let mut chain_len = 0;
        while link != NO_LINK {
            chain_len += 1;
            let (ctrl, entries) = self.overflow_mut(link);
            for i in match_full(&ctrl.tophash) {
                let top = ctrl.tophash[i];
                ctrl.tophash[i] = EMPTY_REST;
                let (key, value) = entries[i]
                    .take()
                    .expect("invariant: a full tophash marks an entry");
                dest.push(next_dest(), top, key, value);
            }
            ctrl.tophash = [EMPTY_REST; BUCKET_SLOTS];
            link = mem::replace(&mut ctrl.overflow, NO_LINK);
        }
        self.overflow_buckets -= chain_len;
        self.chain_changed(chain_len, 0);
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
                let (ctrl, entries) = self.at_mut(index, link);
                for i in match_full(&ctrl.tophash) {
                    let (key, value) = entries[i]
                        .as_mut()
                        .expect("invariant: a full tophash marks an entry");
                    if !keep(key, value) {
                        ctrl.tophash[i] = EMPTY_ONE;
                        *len -= 1;
                        *removes += 1;
                        removed = true;
                        drop(entries[i].take());
                    }
                }
                if ctrl.overflow == NO_LINK {
                    break;
                }
                link = ctrl.overflow;
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
            let ctrl = self.at(index, link).0;
            if let Some(i) = match_full(&ctrl.tophash).highest() {
                last = Some(position + i);
            }
            position += BUCKET_SLOTS;
            if ctrl.overflow == NO_LINK {
                break;
            }
            link = ctrl.overflow;
        }
        let mut link = NO_LINK;
        let mut position = 0usize;
        loop {
            let ctrl = self.at_mut(index, link).0;
            for (i, byte) in ctrl.tophash.iter_mut().enumerate() {
                if *byte < MIN_TOPHASH {
                    let rest = last.is_none_or(|last| position + i > last);
                    *byte = if rest { EMPTY_REST } else { EMPTY_ONE };
                }
            }
            position += BUCKET_SLOTS;
            if ctrl.overflow == NO_LINK {
                break;
            }
            link = ctrl.overflow;
        }
    }

    /// Every entry, shared.
    pub(crate) fn iter(&self) -> RawIter<'_, K, V> {
        RawIter {
            chunks: self.chunks.iter(),
            ctrl: [].iter(),
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
            ctrl: [].iter(),
            entries: [].iter_mut(),
            blocks: self.blocks.iter_mut(),
            arena: [].iter_mut(),
            arena_left: self.arena_len,
            current: [].iter_mut(),
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
            let (ctrl, entries) = if p < heads {
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
            if let Some(i) = match_full(&ctrl.tophash).lowest() {
                ctrl.tophash[i] = EMPTY_ONE;
                return entries[i].take();
            }
            *position += 1;
        }
    }
}

/// Every entry of a table, shared: the head buckets of every materialised
/// chunk, then the arena. Created by [`Table::iter`].
pub(crate) struct RawIter<'a, K, V> {
    chunks: slice::Iter<'a, Chunk<K, V>>,
    ctrl: slice::Iter<'a, Ctrl>,
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
            ctrl: self.ctrl.clone(),
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
            ctrl: [].iter(),
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
                return entries[i].as_ref();
            }
            if let (Some(ctrl), Some(entries)) = (self.ctrl.next(), self.entries.next()) {
                self.full = match_full(&ctrl.tophash);
                self.current = Some(entries);
            } else if let Some(chunk) = self.chunks.next() {
                self.ctrl = chunk.ctrl.iter();
                self.entries = chunk.entries.iter();
            } else if self.arena_left == 0 {
                return None;
            } else if let Some(bucket) = self.arena.next() {
                self.arena_left -= 1;
                self.full = match_full(&bucket.ctrl.tophash);
                self.current = Some(&bucket.entries);
            } else {
                self.arena = self.blocks.next()?.iter();
            }
        }
    }
}

/// Every entry of a table, with mutable values. Created by
/// [`Table::iter_mut`].
pub(crate) struct RawIterMut<'a, K, V> {
    chunks: slice::IterMut<'a, Chunk<K, V>>,
    ctrl: slice::Iter<'a, Ctrl>,
    entries: slice::IterMut<'a, Entries<K, V>>,
    blocks: slice::IterMut<'a, Box<[OverflowBucket<K, V>]>>,
    arena: slice::IterMut<'a, OverflowBucket<K, V>>,
    arena_left: usize,
    current: slice::IterMut<'a, Option<(K, V)>>,
}

impl<'a, K, V> Iterator for RawIterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);

    #[inline]
    fn next(&mut self) -> Option<(&'a K, &'a mut V)> {
        loop {
            for entry in self.current.by_ref() {
                if let Some((key, value)) = entry {
                    return Some((&*key, value));
                }
            }
            if let (Some(_), Some(entries)) = (self.ctrl.next(), self.entries.next()) {
                self.current = entries.iter_mut();
            } else if let Some(chunk) = self.chunks.next() {
                self.ctrl = chunk.ctrl.iter();
                self.entries = chunk.entries.iter_mut();
            } else if self.arena_left == 0 {
                return None;
            } else if let Some(bucket) = self.arena.next() {
                self.arena_left -= 1;
                self.current = bucket.entries.iter_mut();
            } else {
                self.arena = self.blocks.next()?.iter_mut();
            }
        }
    }
}

impl<K, V> RawIterMut<'_, K, V> {
    /// An iterator over nothing.
    pub(crate) fn empty() -> Self {
        RawIterMut {
            chunks: [].iter_mut(),
            ctrl: [].iter(),
            entries: [].iter_mut(),
            blocks: [].iter_mut(),
            arena: [].iter_mut(),
            arena_left: 0,
            current: [].iter_mut(),
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
        assert_eq!(t.head(0).0.tophash[3], EMPTY_ONE);
        for k in (4..8).rev() {
            t.take(slots[k]);
        }
        assert_eq!(&t.head(0).0.tophash[3..], &[EMPTY_REST; 5]);
        // A chain: freeing the last entry of the overflow bucket walks back
        // into the head bucket.
        let mut t: Table<u64, u64> = Table::new(0, true);
        let slots: Vec<Slot> = (0..9u64).map(|k| t.push(0, MIN_TOPHASH, k, k)).collect();
        t.take(slots[7]);
        assert_eq!(
            t.head(0).0.tophash[7],
            EMPTY_ONE,
            "a later bucket holds an entry"
        );
        t.take(slots[8]);
        assert_eq!(t.head(0).0.tophash[7], EMPTY_REST);
        assert_eq!(t.overflow(slots[8].link).0.tophash, [EMPTY_REST; 8]);
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
        assert_eq!(t.head(0).0.tophash[3], EMPTY_ONE);
        assert_eq!(t.iter().count(), 18);
        assert_eq!(t.into_entries().count(), 18);
    }

    #[test]
    fn evacuation_moves_a_whole_chain() {
        let mut old: Table<u64, u64> = Table::new(0, true);
        for k in 0..20u64 {
            old.push(0, MIN_TOPHASH + k as u8, k, k);
        }
        let hashes: Vec<u64> = old.chain_keys(0).copied().collect();
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
