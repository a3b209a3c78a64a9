//! The storage layer: buckets of eight slots with their tophash bytes,
//! overflow chains, and a bucket array that is materialised chunk by chunk.
//!
//! Every invariant of the layout lives here:
//! - a slot holds an entry exactly when its tophash is `>= MIN_TOPHASH`;
//! - `EMPTY_REST` at a position means every later position of the chain is
//!   free, so scans may stop there (Go's `emptyRest`);
//! - a bucket array is split into chunks of `2^chunk_shift` buckets. A chunk
//!   that is not materialised is an empty boxed slice, so creating a table
//!   of `2^B` buckets costs one small allocation per chunk pointer and never
//!   touches the buckets themselves. The evacuation code materialises a
//!   destination chunk before it writes to it and frees an old chunk once the
//!   evacuation mark has passed it, which is what bounds the work of a write.

use std::mem;

use super::tophash::{match_free, match_tophash, BUCKET_SLOTS, EMPTY_ONE, EMPTY_REST, MIN_TOPHASH};

/// Target size of one materialised chunk. Small enough that creating one
/// costs a few microseconds, large enough that the chunk-pointer array stays
/// a few kilobytes for tables of millions of buckets.
const CHUNK_BYTES: usize = 64 * 1024;

/// One bucket: eight slots, their tophash bytes, and the overflow chain.
pub(crate) struct Bucket<K, V> {
    pub(crate) tophash: [u8; BUCKET_SLOTS],
    pub(crate) overflow: Option<Box<Bucket<K, V>>>,
    pub(crate) slots: [Option<(K, V)>; BUCKET_SLOTS],
}

impl<K, V> Bucket<K, V> {
    pub(crate) fn empty() -> Self {
        Bucket {
            tophash: [EMPTY_REST; BUCKET_SLOTS],
            overflow: None,
            slots: [const { None }; BUCKET_SLOTS],
        }
    }
}

impl<K, V> Bucket<K, V> {
    /// Rewrites the free markers of this chain after slots were emptied
    /// without [`Table::take`] (by `retain`): free slots after the last entry
    /// become `EMPTY_REST`, the others `EMPTY_ONE`.
    pub(crate) fn refresh_free_markers(&mut self) {
        let mut chain: Vec<&mut [u8; BUCKET_SLOTS]> = Vec::new();
        let mut cursor = Some(self);
        while let Some(bucket) = cursor {
            chain.push(&mut bucket.tophash);
            cursor = bucket.overflow.as_deref_mut();
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

impl<K, V> Drop for Bucket<K, V> {
    /// Unlink the overflow chain iteratively: a colliding hasher makes chains
    /// of `n / 8` buckets, and the recursive drop glue would overflow the stack.
    fn drop(&mut self) {
        let mut next = self.overflow.take();
        while let Some(mut bucket) = next {
            next = bucket.overflow.take();
        }
    }
}

impl<K: Clone, V: Clone> Clone for Bucket<K, V> {
    /// Clones the chain iteratively, for the same reason as `drop`.
    fn clone(&self) -> Self {
        let shallow = |b: &Bucket<K, V>| Bucket {
            tophash: b.tophash,
            overflow: None,
            slots: b.slots.clone(),
        };
        let mut head = shallow(self);
        let mut tail = &mut head;
        let mut source = self.overflow.as_deref();
        while let Some(bucket) = source {
            tail = tail.overflow.insert(Box::new(shallow(bucket)));
            source = bucket.overflow.as_deref();
        }
        head
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
    let size = mem::size_of::<Bucket<K, V>>();
    let mut shift = 4u8;
    while shift < 16 && (size << (shift + 1)) <= CHUNK_BYTES {
        shift += 1;
    }
    shift
}

fn new_chunk<K, V>(len: usize) -> Box<[Bucket<K, V>]> {
    (0..len).map(|_| Bucket::empty()).collect()
}

/// A bucket array of `2^log2` buckets plus the overflow buckets chained to it.
pub(crate) struct Table<K, V> {
    pub(crate) log2: u8,
    chunk_shift: u8,
    chunks: Vec<Box<[Bucket<K, V>]>>,
    materialized: usize,
    pub(crate) overflow_buckets: usize,
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
                    new_chunk(chunk_len)
                } else {
                    Box::default()
                }
            })
            .collect();
        Table {
            log2,
            chunk_shift,
            chunks,
            materialized: if materialize { chunk_count } else { 0 },
            overflow_buckets: 0,
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
    pub(crate) fn bucket(&self, index: usize) -> &Bucket<K, V> {
        &self.chunks[index >> self.chunk_shift][index & self.chunk_mask()]
    }

    #[inline]
    pub(crate) fn bucket_mut(&mut self, index: usize) -> &mut Bucket<K, V> {
        let mask = self.chunk_mask();
        &mut self.chunks[index >> self.chunk_shift][index & mask]
    }

    /// The chunks, for iteration. Chunks that are not materialised or were
    /// freed are empty slices.
    pub(crate) fn chunks(&self) -> &[Box<[Bucket<K, V>]>] {
        &self.chunks
    }

    pub(crate) fn chunks_mut(&mut self) -> &mut [Box<[Bucket<K, V>]>] {
        &mut self.chunks
    }

    pub(crate) fn into_chunks(mut self) -> Vec<Box<[Bucket<K, V>]>> {
        mem::take(&mut self.chunks)
    }

    /// Creates the chunk holding bucket `index` if it does not exist yet.
    pub(crate) fn materialize(&mut self, index: usize) {
        let chunk = index >> self.chunk_shift;
        if self.chunks[chunk].is_empty() {
            self.chunks[chunk] = new_chunk(1 << self.chunk_shift);
            self.materialized += 1;
        }
    }

    /// Frees every chunk whose buckets all lie below `mark`, starting at
    /// chunk `from`; returns the first chunk not freed.
    pub(crate) fn free_chunks_below(&mut self, from: usize, mark: usize) -> usize {
        let mut chunk = from;
        while (chunk + 1) << self.chunk_shift <= mark {
            if !self.chunks[chunk].is_empty() {
                self.chunks[chunk] = Box::default();
                self.materialized -= 1;
            }
            chunk += 1;
        }
        chunk
    }

    /// Heap bytes held by the bucket arrays, overflow buckets and bookkeeping.
    pub(crate) fn heap_bytes(&self) -> usize {
        let bucket = mem::size_of::<Bucket<K, V>>();
        ((self.materialized << self.chunk_shift) + self.overflow_buckets) * bucket
            + self.chunks.capacity() * mem::size_of::<Box<[Bucket<K, V>]>>()
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
            for i in match_tophash(&bucket.tophash, top) {
                if let Some(entry) = &bucket.slots[i] {
                    if eq(&entry.0) {
                        return Some(entry);
                    }
                }
            }
            if bucket.tophash[BUCKET_SLOTS - 1] == EMPTY_REST {
                return None;
            }
            bucket = bucket.overflow.as_deref()?;
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
        let mut bucket = self.bucket_mut(index);
        loop {
            let found = match_tophash(&bucket.tophash, top)
                .find(|&i| matches!(&bucket.slots[i], Some(entry) if eq(&entry.0)));
            if let Some(i) = found {
                return bucket.slots[i].as_mut();
            }
            if bucket.tophash[BUCKET_SLOTS - 1] == EMPTY_REST {
                return None;
            }
            bucket = bucket.overflow.as_deref_mut()?;
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
            for i in match_tophash(&bucket.tophash, top) {
                if matches!(&bucket.slots[i], Some(entry) if eq(&entry.0)) {
                    return Probe::Found(Slot {
                        bucket: index,
                        depth,
                        index: i,
                    });
                }
            }
            if free.is_none() {
                free = match_free(&bucket.tophash).lowest().map(|i| Slot {
                    bucket: index,
                    depth,
                    index: i,
                });
            }
            if bucket.tophash[BUCKET_SLOTS - 1] == EMPTY_REST {
                return Probe::Vacant(free);
            }
            match bucket.overflow.as_deref() {
                Some(next) => {
                    bucket = next;
                    depth += 1;
                }
                None => return Probe::Vacant(free),
            }
        }
    }

    /// Where the key `eq` accepts sits, if present.
    #[cfg(test)]
    pub(crate) fn find(&self, index: usize, top: u8, eq: impl FnMut(&K) -> bool) -> Option<Slot> {
        match self.probe(index, top, eq) {
            Probe::Found(slot) => Some(slot),
            Probe::Vacant(_) => None,
        }
    }

    /// The first free slot of bucket `index`'s chain, if any.
    pub(crate) fn find_free(&self, index: usize) -> Option<Slot> {
        let mut bucket = self.bucket(index);
        let mut depth = 0;
        loop {
            if let Some(i) = match_free(&bucket.tophash).lowest() {
                return Some(Slot {
                    bucket: index,
                    depth,
                    index: i,
                });
            }
            bucket = bucket.overflow.as_deref()?;
            depth += 1;
        }
    }

    fn bucket_at_mut(&mut self, slot: Slot) -> &mut Bucket<K, V> {
        let mut bucket = self.bucket_mut(slot.bucket);
        for _ in 0..slot.depth {
            bucket = bucket
                .overflow
                .as_deref_mut()
                .expect("invariant: a Slot's depth lies within its overflow chain");
        }
        bucket
    }

    fn bucket_at(&self, slot: Slot) -> &Bucket<K, V> {
        let mut bucket = self.bucket(slot.bucket);
        for _ in 0..slot.depth {
            bucket = bucket
                .overflow
                .as_deref()
                .expect("invariant: a Slot's depth lies within its overflow chain");
        }
        bucket
    }

    pub(crate) fn entry(&self, slot: Slot) -> &(K, V) {
        self.bucket_at(slot).slots[slot.index]
            .as_ref()
            .expect("invariant: a found Slot holds an entry")
    }

    pub(crate) fn entry_mut(&mut self, slot: Slot) -> &mut (K, V) {
        self.bucket_at_mut(slot).slots[slot.index]
            .as_mut()
            .expect("invariant: a found Slot holds an entry")
    }

    /// Appends an empty overflow bucket to bucket `index`'s chain and returns
    /// its first slot.
    fn append_overflow(&mut self, index: usize) -> Slot {
        let mut bucket = self.bucket_mut(index);
        let mut depth = 0;
        while bucket.overflow.is_some() {
            bucket = bucket
                .overflow
                .as_deref_mut()
                .expect("invariant: checked is_some just above");
            depth += 1;
        }
        bucket.overflow = Some(Box::new(Bucket::empty()));
        self.overflow_buckets += 1;
        self.chain_changed(depth, depth + 1);
        Slot {
            bucket: index,
            depth: depth + 1,
            index: 0,
        }
    }

    /// Stores an entry in `free`, or in a new overflow bucket when the chain
    /// is full. The caller has checked that the key is absent.
    pub(crate) fn place(
        &mut self,
        index: usize,
        free: Option<Slot>,
        top: u8,
        key: K,
        value: V,
    ) -> &mut (K, V) {
        debug_assert!(top >= MIN_TOPHASH);
        let slot = match free {
            Some(slot) => slot,
            None => self.append_overflow(index),
        };
        let bucket = self.bucket_at_mut(slot);
        bucket.tophash[slot.index] = top;
        bucket.slots[slot.index].insert((key, value))
    }

    /// Stores an entry whose key is known to be absent (evacuation).
    pub(crate) fn push(&mut self, index: usize, top: u8, key: K, value: V) {
        let free = self.find_free(index);
        self.place(index, free, top, key, value);
    }

    /// Takes the entry out of `slot`, keeping the `EMPTY_REST` markers exact
    /// the way Go's `mapdelete` does.
    pub(crate) fn take(&mut self, slot: Slot) -> (K, V) {
        let head = self.bucket_mut(slot.bucket);
        if slot.depth == 0 && head.overflow.is_none() {
            let entry = head.slots[slot.index]
                .take()
                .expect("invariant: a found Slot holds an entry");
            mark_free(&mut [&mut head.tophash], slot.index);
            return entry;
        }
        let entry = self.bucket_at_mut(slot).slots[slot.index]
            .take()
            .expect("invariant: a found Slot holds an entry");
        // A chain: gather its tophash arrays to walk back across buckets.
        let mut chain: Vec<&mut [u8; BUCKET_SLOTS]> = Vec::new();
        let mut cursor = Some(self.bucket_mut(slot.bucket));
        while let Some(bucket) = cursor {
            chain.push(&mut bucket.tophash);
            cursor = bucket.overflow.as_deref_mut();
        }
        mark_free(&mut chain, slot.depth * BUCKET_SLOTS + slot.index);
        entry
    }
}

/// Marks position `pos` of a chain's tophash arrays free, then turns the run
/// of free slots that now ends the chain into `EMPTY_REST` (Go's `mapdelete`).
fn mark_free(chain: &mut [&mut [u8; BUCKET_SLOTS]], mut pos: usize) {
    let at =
        |chain: &[&mut [u8; BUCKET_SLOTS]], p: usize| chain[p / BUCKET_SLOTS][p % BUCKET_SLOTS];
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
    }
}
