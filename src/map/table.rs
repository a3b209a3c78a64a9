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
//!   evacuation mark has passed it, which is what bounds the work of a write.
//!
//! Layout: within a chunk the tophash bytes of all buckets are stored
//! contiguously, apart from the entries (the way hashbrown keeps its control
//! bytes apart from its slots). A miss, and the first step of every hit,
//! then reads 8 bytes per bucket from a dense array instead of a cache line
//! of a 200-byte bucket. Overflow buckets keep their tophash next to their
//! entries, as in Go.

use std::mem;

use super::tophash::{match_free, match_tophash, BUCKET_SLOTS, EMPTY_ONE, EMPTY_REST, MIN_TOPHASH};

/// Target size of one materialised chunk. Small enough that creating one
/// costs a few microseconds, large enough that the chunk-pointer array stays
/// a few kilobytes for tables of millions of buckets.
const CHUNK_BYTES: usize = 64 * 1024;

/// A bucket's eight tophash bytes.
pub(crate) type Tophash = [u8; BUCKET_SLOTS];

/// A bucket's eight entries and the link to its overflow chain.
pub(crate) struct Slots<K, V> {
    pub(crate) entries: [Option<(K, V)>; BUCKET_SLOTS],
    pub(crate) overflow: Option<Box<Overflow<K, V>>>,
}

/// An overflow bucket: tophash bytes and slots together, as in Go.
pub(crate) struct Overflow<K, V> {
    pub(crate) tophash: Tophash,
    pub(crate) slots: Slots<K, V>,
}

impl<K, V> Slots<K, V> {
    pub(crate) const fn empty() -> Self {
        Slots {
            entries: [const { None }; BUCKET_SLOTS],
            overflow: None,
        }
    }

    /// Rewrites the free markers of the chain headed by (`tophash`, `self`)
    /// after slots were emptied without [`Table::take`] (by `retain`): free
    /// slots after the last entry become `EMPTY_REST`, the others `EMPTY_ONE`.
    pub(crate) fn refresh_free_markers(&mut self, tophash: &mut Tophash) {
        let mut chain: Vec<&mut Tophash> = vec![tophash];
        let mut cursor = self.overflow.as_deref_mut();
        while let Some(bucket) = cursor {
            chain.push(&mut bucket.tophash);
            cursor = bucket.slots.overflow.as_deref_mut();
        }
        let mut rest = true;
        for tophash in chain.iter_mut().rev() {
            for byte in tophash.iter_mut().rev() {
                if *byte >= MIN_TOPHASH {
                    rest = false;
                } else {
                    *byte = if rest { EMPTY_REST } else { EMPTY_ONE };
                }
            }
        }
    }
}

impl<K, V> Drop for Slots<K, V> {
    /// Unlinks the overflow chain iteratively: a colliding hasher makes
    /// chains of `n / 8` buckets, and recursive drop glue would overflow the
    /// stack.
    fn drop(&mut self) {
        let mut next = self.overflow.take();
        while let Some(mut bucket) = next {
            next = bucket.slots.overflow.take();
        }
    }
}

impl<K: Clone, V: Clone> Clone for Slots<K, V> {
    /// Clones the chain iteratively, for the same reason as `drop`.
    fn clone(&self) -> Self {
        let mut head = Slots {
            entries: self.entries.clone(),
            overflow: None,
        };
        let mut tail = &mut head;
        let mut source = self.overflow.as_deref();
        while let Some(bucket) = source {
            let copy = Overflow {
                tophash: bucket.tophash,
                slots: Slots {
                    entries: bucket.slots.entries.clone(),
                    overflow: None,
                },
            };
            tail = &mut tail.overflow.insert(Box::new(copy)).slots;
            source = bucket.slots.overflow.as_deref();
        }
        head
    }
}

/// `2^chunk_shift` buckets: their tophash bytes, then their slots. Both
/// slices are empty while the chunk is not materialised.
pub(crate) struct Chunk<K, V> {
    pub(crate) tophash: Box<[Tophash]>,
    pub(crate) slots: Box<[Slots<K, V>]>,
}

impl<K, V> Chunk<K, V> {
    fn unmaterialized() -> Self {
        Chunk {
            tophash: Box::default(),
            slots: Box::default(),
        }
    }

    fn new(len: usize) -> Self {
        Chunk {
            tophash: vec![[EMPTY_REST; BUCKET_SLOTS]; len].into_boxed_slice(),
            slots: (0..len).map(|_| Slots::empty()).collect(),
        }
    }

    pub(crate) fn is_materialized(&self) -> bool {
        !self.slots.is_empty()
    }
}

impl<K: Clone, V: Clone> Clone for Chunk<K, V> {
    fn clone(&self) -> Self {
        Chunk {
            tophash: self.tophash.clone(),
            slots: self.slots.clone(),
        }
    }
}

/// A bucket, seen through its tophash bytes and its slots.
pub(crate) struct BucketRef<'a, K, V> {
    pub(crate) tophash: &'a Tophash,
    pub(crate) slots: &'a Slots<K, V>,
}

impl<K, V> Clone for BucketRef<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for BucketRef<'_, K, V> {}

impl<'a, K, V> BucketRef<'a, K, V> {
    #[inline]
    fn next(self) -> Option<Self> {
        if self.tophash[BUCKET_SLOTS - 1] == EMPTY_REST {
            // Nothing later in the chain holds an entry.
            return None;
        }
        self.slots.overflow.as_deref().map(|bucket| BucketRef {
            tophash: &bucket.tophash,
            slots: &bucket.slots,
        })
    }

    #[inline]
    fn find(self, top: u8, eq: &mut impl FnMut(&K) -> bool) -> Option<usize> {
        match_tophash(self.tophash, top)
            .find(|&i| matches!(&self.slots.entries[i], Some(entry) if eq(&entry.0)))
    }
}

/// A bucket, mutably.
pub(crate) struct BucketMut<'a, K, V> {
    pub(crate) tophash: &'a mut Tophash,
    pub(crate) slots: &'a mut Slots<K, V>,
}

impl<'a, K, V> BucketMut<'a, K, V> {
    /// The next bucket of the chain, whether or not it holds entries.
    #[inline]
    fn into_overflow(self) -> Option<Self> {
        self.slots.overflow.as_deref_mut().map(|bucket| BucketMut {
            tophash: &mut bucket.tophash,
            slots: &mut bucket.slots,
        })
    }
}

/// Where an entry sits: a bucket, how many overflow links down its chain,
/// and the slot within that bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) bucket: usize,
    pub(crate) depth: usize,
    pub(crate) index: usize,
}

/// The result of probing a chain for a key that is about to be written.
#[derive(Debug)]
pub(crate) enum Probe {
    /// The key is present.
    Found(Slot),
    /// The key is absent; the first free slot of the chain, if any.
    Vacant(Option<Slot>),
}

/// The largest `chunk_shift` for this bucket size (see [`CHUNK_BYTES`]).
fn max_chunk_shift<K, V>() -> u8 {
    let size = mem::size_of::<Slots<K, V>>() + mem::size_of::<Tophash>();
    let mut shift = 4u8;
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
    chunks: Vec<Chunk<K, V>>,
    materialized: usize,
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
            chunks: self.chunks.clone(),
            materialized: self.materialized,
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
            chunks: Vec::new(),
            materialized: 0,
            overflow_buckets: 0,
            max_load: 0,
            chains: Vec::new(),
        }
    }

    /// A table of `2^log2` buckets. With `materialize` false no bucket is
    /// created yet; see the module docs.
    pub(crate) fn new(log2: u8, materialize: bool) -> Self {
        let chunk_shift = log2.min(max_chunk_shift::<K, V>());
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
        Table {
            log2,
            chunk_shift,
            chunks,
            materialized: if materialize { chunk_count } else { 0 },
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

    /// Bucket `index`'s tophash bytes.
    #[inline]
    pub(crate) fn tophash(&self, index: usize) -> &Tophash {
        &self.chunks[index >> self.chunk_shift].tophash[index & self.chunk_mask()]
    }

    #[inline]
    pub(crate) fn bucket(&self, index: usize) -> BucketRef<'_, K, V> {
        let chunk = &self.chunks[index >> self.chunk_shift];
        let i = index & self.chunk_mask();
        BucketRef {
            tophash: &chunk.tophash[i],
            slots: &chunk.slots[i],
        }
    }

    #[inline]
    pub(crate) fn bucket_mut(&mut self, index: usize) -> BucketMut<'_, K, V> {
        let i = index & self.chunk_mask();
        let chunk = &mut self.chunks[index >> self.chunk_shift];
        BucketMut {
            tophash: &mut chunk.tophash[i],
            slots: &mut chunk.slots[i],
        }
    }

    /// The chunks, for iteration. Chunks that are not materialised or were
    /// freed hold empty slices.
    pub(crate) fn chunks(&self) -> &[Chunk<K, V>] {
        &self.chunks
    }

    pub(crate) fn chunks_mut(&mut self) -> &mut [Chunk<K, V>] {
        &mut self.chunks
    }

    pub(crate) fn into_chunks(mut self) -> Vec<Chunk<K, V>> {
        mem::take(&mut self.chunks)
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

    /// Heap bytes held by the bucket arrays, overflow buckets and bookkeeping.
    pub(crate) fn heap_bytes(&self) -> usize {
        let bucket = mem::size_of::<Slots<K, V>>() + mem::size_of::<Tophash>();
        (self.materialized << self.chunk_shift) * bucket
            + self.overflow_buckets * mem::size_of::<Overflow<K, V>>()
            + self.chunks.capacity() * mem::size_of::<Chunk<K, V>>()
            + self.chains.capacity() * mem::size_of::<usize>()
    }

    /// The longest overflow chain, in overflow buckets.
    pub(crate) fn max_chain(&self) -> usize {
        self.chains.iter().rposition(|&n| n > 0).unwrap_or(0)
    }

    /// Records that a chain went from `from` to `to` overflow buckets.
    pub(crate) fn chain_changed(&mut self, from: usize, to: usize) {
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

    /// The entry for `top` in bucket `index`'s chain that `eq` accepts.
    #[inline]
    pub(crate) fn get(
        &self,
        index: usize,
        top: u8,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<&(K, V)> {
        let mut bucket = self.bucket(index);
        loop {
            if let Some(i) = bucket.find(top, &mut eq) {
                return bucket.slots.entries[i].as_ref();
            }
            bucket = bucket.next()?;
        }
    }

    /// Like [`Table::get`], mutably.
    #[inline]
    pub(crate) fn get_mut(
        &mut self,
        index: usize,
        top: u8,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<&mut (K, V)> {
        let slot = self.find(index, top, &mut eq)?;
        Some(self.entry_mut(slot))
    }

    /// Where the key `eq` accepts sits, if present.
    #[inline]
    pub(crate) fn find(
        &self,
        index: usize,
        top: u8,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<Slot> {
        let mut bucket = self.bucket(index);
        let mut depth = 0;
        loop {
            if let Some(i) = bucket.find(top, &mut eq) {
                return Some(Slot {
                    bucket: index,
                    depth,
                    index: i,
                });
            }
            bucket = bucket.next()?;
            depth += 1;
        }
    }

    /// Where the key `eq` accepts sits, remembering the first free slot on
    /// the way in case it is absent (Go's `mapassign` scan).
    #[inline]
    pub(crate) fn probe(&self, index: usize, top: u8, mut eq: impl FnMut(&K) -> bool) -> Probe {
        let mut bucket = self.bucket(index);
        let mut depth = 0;
        let mut free = None;
        loop {
            if let Some(i) = bucket.find(top, &mut eq) {
                return Probe::Found(Slot {
                    bucket: index,
                    depth,
                    index: i,
                });
            }
            if free.is_none() {
                free = match_free(bucket.tophash).lowest().map(|i| Slot {
                    bucket: index,
                    depth,
                    index: i,
                });
            }
            match bucket.next() {
                Some(next) => {
                    bucket = next;
                    depth += 1;
                }
                None => return Probe::Vacant(free),
            }
        }
    }

    #[inline]
    fn bucket_at_mut(&mut self, slot: Slot) -> BucketMut<'_, K, V> {
        let mut bucket = self.bucket_mut(slot.bucket);
        for _ in 0..slot.depth {
            bucket = bucket
                .into_overflow()
                .expect("invariant: a Slot's depth lies within its overflow chain");
        }
        bucket
    }

    pub(crate) fn entry(&self, slot: Slot) -> &(K, V) {
        let mut slots =
            &self.chunks[slot.bucket >> self.chunk_shift].slots[slot.bucket & self.chunk_mask()];
        for _ in 0..slot.depth {
            slots = &slots
                .overflow
                .as_deref()
                .expect("invariant: a Slot's depth lies within its overflow chain")
                .slots;
        }
        slots.entries[slot.index]
            .as_ref()
            .expect("invariant: a found Slot holds an entry")
    }

    pub(crate) fn entry_mut(&mut self, slot: Slot) -> &mut (K, V) {
        self.bucket_at_mut(slot).slots.entries[slot.index]
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
                let bucket = self.bucket_at_mut(slot);
                bucket.tophash[slot.index] = top;
                bucket.slots.entries[slot.index] = Some((key, value));
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
        let i = index & self.chunk_mask();
        let chunk = &mut self.chunks[index >> self.chunk_shift];
        let mut bucket = BucketMut {
            tophash: &mut chunk.tophash[i],
            slots: &mut chunk.slots[i],
        };
        let mut depth = 0;
        loop {
            if let Some(slot) = match_free(bucket.tophash).lowest() {
                bucket.tophash[slot] = top;
                bucket.slots.entries[slot] = Some((key, value));
                return Slot {
                    bucket: index,
                    depth,
                    index: slot,
                };
            }
            if bucket.slots.overflow.is_none() {
                // The chain is full: Go's `newoverflow`.
                self.overflow_buckets += 1;
                if depth > 0 {
                    self.chains[depth] -= 1;
                }
                if self.chains.len() <= depth + 1 {
                    self.chains.resize(depth + 2, 0);
                }
                self.chains[depth + 1] += 1;
                let mut tophash = [EMPTY_REST; BUCKET_SLOTS];
                tophash[0] = top;
                let mut slots = Slots::empty();
                slots.entries[0] = Some((key, value));
                bucket.slots.overflow = Some(Box::new(Overflow { tophash, slots }));
                return Slot {
                    bucket: index,
                    depth: depth + 1,
                    index: 0,
                };
            }
            bucket = bucket
                .into_overflow()
                .expect("invariant: checked is_some just above");
            depth += 1;
        }
    }

    /// Takes the entry out of `slot`, keeping the `EMPTY_REST` markers exact
    /// the way Go's `mapdelete` does.
    pub(crate) fn take(&mut self, slot: Slot) -> (K, V) {
        let head = self.bucket_mut(slot.bucket);
        if slot.depth == 0 && head.slots.overflow.is_none() {
            let entry = head.slots.entries[slot.index]
                .take()
                .expect("invariant: a found Slot holds an entry");
            mark_free(&mut [head.tophash], slot.index);
            return entry;
        }
        let entry = self.bucket_at_mut(slot).slots.entries[slot.index]
            .take()
            .expect("invariant: a found Slot holds an entry");
        // A chain: gather its tophash arrays to walk back across buckets.
        let head = self.bucket_mut(slot.bucket);
        let mut chain: Vec<&mut Tophash> = vec![head.tophash];
        let mut cursor = head.slots.overflow.as_deref_mut();
        while let Some(bucket) = cursor {
            chain.push(&mut bucket.tophash);
            cursor = bucket.slots.overflow.as_deref_mut();
        }
        mark_free(&mut chain, slot.depth * BUCKET_SLOTS + slot.index);
        entry
    }
}

impl<'a, K, V> IntoIterator for &'a Chunk<K, V> {
    type Item = &'a Slots<K, V>;
    type IntoIter = std::slice::Iter<'a, Slots<K, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.slots.iter()
    }
}

impl<'a, K, V> IntoIterator for &'a mut Chunk<K, V> {
    type Item = &'a mut Slots<K, V>;
    type IntoIter = std::slice::IterMut<'a, Slots<K, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.slots.iter_mut()
    }
}

/// Marks position `pos` of a chain's tophash arrays free, then turns the run
/// of free slots that now ends the chain into `EMPTY_REST` (Go's `mapdelete`).
fn mark_free(chain: &mut [&mut Tophash], mut pos: usize) {
    let at = |chain: &[&mut Tophash], p: usize| chain[p / BUCKET_SLOTS][p % BUCKET_SLOTS];
    chain[pos / BUCKET_SLOTS][pos % BUCKET_SLOTS] = EMPTY_ONE;
    let total = chain.len() * BUCKET_SLOTS;
    if pos + 1 < total && at(chain, pos + 1) != EMPTY_REST {
        return;
    }
    loop {
        chain[pos / BUCKET_SLOTS][pos % BUCKET_SLOTS] = EMPTY_REST;
        if pos == 0 {
            break;
        }
        pos -= 1;
        if at(chain, pos) != EMPTY_ONE {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_free_turns_trailing_run_into_empty_rest() {
        let mut a = [
            5u8, EMPTY_ONE, 6, 7, EMPTY_REST, EMPTY_REST, EMPTY_REST, EMPTY_REST,
        ];
        mark_free(&mut [&mut a], 3);
        assert_eq!(a, [5, EMPTY_ONE, 6, EMPTY_REST, 0, 0, 0, 0]);
        mark_free(&mut [&mut a], 2);
        assert_eq!(a, [5, 0, 0, 0, 0, 0, 0, 0]);
        let mut b = [5u8; 8];
        let mut c = [6u8, 0, 0, 0, 0, 0, 0, 0];
        mark_free(&mut [&mut b, &mut c], 7);
        assert_eq!(b[7], EMPTY_ONE, "a later bucket still holds an entry");
        mark_free(&mut [&mut b, &mut c], 8);
        assert_eq!(c, [0; 8]);
        assert_eq!(b[7], EMPTY_REST);
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
        assert_eq!(slot.depth, 2);
        assert_eq!(t.take(slot), (19, 19));
        assert!(t.find(0, MIN_TOPHASH, |k| *k == 19).is_none());
        let slot = t.find(0, MIN_TOPHASH, |k| *k == 3).unwrap();
        assert_eq!(t.take(slot), (3, 3));
        assert_eq!(t.bucket(0).tophash[3], EMPTY_ONE);
    }
}
