//! Iterators. Each visits the current array, then the not-yet-evacuated
//! part of the old one. Every entry lives in exactly one of the two (an
//! evacuated old slot is empty, a freed old chunk is an empty slice), so
//! every live entry is yielded exactly once at any point of an evacuation.

use std::fmt;
use std::iter::{Chain, Flatten, FusedIterator};
use std::marker::PhantomData;
use std::slice;
use std::vec;

use super::table::{Chunk, Slots, Table};

/// Every head bucket of the current array, then of the old one.
type Heads<'a, K, V> = Flatten<Chain<slice::Iter<'a, Chunk<K, V>>, slice::Iter<'a, Chunk<K, V>>>>;
type HeadsMut<'a, K, V> =
    Flatten<Chain<slice::IterMut<'a, Chunk<K, V>>, slice::IterMut<'a, Chunk<K, V>>>>;

pub(crate) fn heads<'a, K, V>(
    table: &'a Table<K, V>,
    old: Option<&'a Table<K, V>>,
) -> Heads<'a, K, V> {
    let old: &[Chunk<K, V>] = old.map_or(&[], Table::chunks);
    table.chunks().iter().chain(old.iter()).flatten()
}

/// An iterator over a map's entries, as `(&K, &V)`. Created by
/// [`InstrumentedMap::iter`](crate::InstrumentedMap::iter).
pub struct Iter<'a, K, V> {
    heads: Heads<'a, K, V>,
    bucket: Option<&'a Slots<K, V>>,
    slots: slice::Iter<'a, Option<(K, V)>>,
    remaining: usize,
}

impl<'a, K, V> Iter<'a, K, V> {
    pub(crate) fn new(table: &'a Table<K, V>, old: Option<&'a Table<K, V>>, len: usize) -> Self {
        Iter {
            heads: heads(table, old),
            bucket: None,
            slots: [].iter(),
            remaining: len,
        }
    }
}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Iter {
            heads: self.heads.clone(),
            bucket: self.bucket,
            slots: self.slots.clone(),
            remaining: self.remaining,
        }
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, value)) = self.slots.by_ref().flatten().next() {
                self.remaining -= 1;
                return Some((key, value));
            }
            if self.remaining == 0 {
                return None;
            }
            let next = match self.bucket.and_then(|b| b.overflow.as_deref()) {
                Some(overflow) => &overflow.slots,
                None => self.heads.next()?,
            };
            self.bucket = Some(next);
            self.slots = next.entries.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}
impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// An iterator over a map's entries, as `(&K, &mut V)`. Created by
/// [`InstrumentedMap::iter_mut`](crate::InstrumentedMap::iter_mut).
pub struct IterMut<'a, K, V> {
    heads: HeadsMut<'a, K, V>,
    overflow: Option<&'a mut Slots<K, V>>,
    slots: slice::IterMut<'a, Option<(K, V)>>,
    remaining: usize,
}

impl<'a, K, V> IterMut<'a, K, V> {
    pub(crate) fn new(
        table: &'a mut Table<K, V>,
        old: Option<&'a mut Table<K, V>>,
        len: usize,
    ) -> Self {
        let old: &mut [Chunk<K, V>] = match old {
            Some(old) => old.chunks_mut(),
            None => &mut [],
        };
        IterMut {
            heads: table
                .chunks_mut()
                .iter_mut()
                .chain(old.iter_mut())
                .flatten(),
            overflow: None,
            slots: [].iter_mut(),
            remaining: len,
        }
    }
}

impl<'a, K, V> Iterator for IterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, value)) = self.slots.by_ref().flatten().next() {
                self.remaining -= 1;
                return Some((&*key, value));
            }
            if self.remaining == 0 {
                return None;
            }
            let next = match self.overflow.take() {
                Some(overflow) => overflow,
                None => self.heads.next()?,
            };
            let Slots { entries, overflow } = next;
            self.slots = entries.iter_mut();
            self.overflow = overflow.as_deref_mut().map(|bucket| &mut bucket.slots);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for IterMut<'_, K, V> {}
impl<K, V> FusedIterator for IterMut<'_, K, V> {}

impl<K, V> fmt::Debug for IterMut<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IterMut")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// An owning iterator over a map's entries. Created by
/// [`InstrumentedMap::into_iter`](crate::InstrumentedMap#impl-IntoIterator-for-InstrumentedMap<K,+V,+S>).
pub struct IntoIter<K, V> {
    chunks: vec::IntoIter<Chunk<K, V>>,
    buckets: vec::IntoIter<Slots<K, V>>,
    current: Option<Slots<K, V>>,
    slot: usize,
    remaining: usize,
}

impl<K, V> IntoIter<K, V> {
    pub(crate) fn new(table: Table<K, V>, old: Option<Table<K, V>>, len: usize) -> Self {
        let mut chunks = table.into_chunks();
        if let Some(old) = old {
            chunks.extend(old.into_chunks());
        }
        IntoIter {
            chunks: chunks.into_iter(),
            buckets: Vec::new().into_iter(),
            current: None,
            slot: 0,
            remaining: len,
        }
    }
}

impl<K, V> Iterator for IntoIter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(bucket) = &mut self.current {
                while self.slot < bucket.entries.len() {
                    let slot = self.slot;
                    self.slot += 1;
                    if let Some(entry) = bucket.entries[slot].take() {
                        self.remaining -= 1;
                        return Some(entry);
                    }
                }
                self.current = bucket.overflow.take().map(|overflow| overflow.slots);
                self.slot = 0;
                if self.current.is_some() {
                    continue;
                }
            }
            if self.remaining == 0 {
                return None;
            }
            match self.buckets.next() {
                Some(bucket) => self.current = Some(bucket),
                None => self.buckets = self.chunks.next()?.slots.into_vec().into_iter(),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for IntoIter<K, V> {}
impl<K, V> FusedIterator for IntoIter<K, V> {}

impl<K, V> fmt::Debug for IntoIter<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// A draining iterator. Created by
/// [`InstrumentedMap::drain`](crate::InstrumentedMap::drain). The map is
/// empty as soon as this exists; entries not yet yielded are dropped with it.
pub struct Drain<'a, K, V> {
    pub(crate) inner: IntoIter<K, V>,
    pub(crate) marker: PhantomData<&'a mut (K, V)>,
}

impl<K, V> Iterator for Drain<'_, K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K, V> ExactSizeIterator for Drain<'_, K, V> {}
impl<K, V> FusedIterator for Drain<'_, K, V> {}

impl<K, V> fmt::Debug for Drain<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("remaining", &self.inner.remaining)
            .finish_non_exhaustive()
    }
}

macro_rules! projection {
    ($(#[$doc:meta])* $name:ident<$($lt:lifetime,)? K, V> from $inner:ident yields $item:ty, |$k:ident, $v:ident| $out:expr) => {
        $(#[$doc])*
        pub struct $name<$($lt,)? K, V> {
            pub(crate) inner: $inner<$($lt,)? K, V>,
        }

        impl<$($lt,)? K, V> Iterator for $name<$($lt,)? K, V> {
            type Item = $item;

            #[inline]
            fn next(&mut self) -> Option<$item> {
                self.inner.next().map(|($k, $v)| $out)
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.inner.size_hint()
            }
        }

        impl<$($lt,)? K, V> ExactSizeIterator for $name<$($lt,)? K, V> {}
        impl<$($lt,)? K, V> FusedIterator for $name<$($lt,)? K, V> {}

        impl<$($lt,)? K, V> fmt::Debug for $name<$($lt,)? K, V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("remaining", &self.inner.size_hint().0)
                    .finish_non_exhaustive()
            }
        }
    };
}

projection!(
    /// An iterator over a map's keys. Created by
    /// [`InstrumentedMap::keys`](crate::InstrumentedMap::keys).
    Keys<'a, K, V> from Iter yields &'a K, |k, _v| k
);
projection!(
    /// An iterator over a map's values. Created by
    /// [`InstrumentedMap::values`](crate::InstrumentedMap::values).
    Values<'a, K, V> from Iter yields &'a V, |_k, v| v
);
projection!(
    /// A mutable iterator over a map's values. Created by
    /// [`InstrumentedMap::values_mut`](crate::InstrumentedMap::values_mut).
    ValuesMut<'a, K, V> from IterMut yields &'a mut V, |_k, v| v
);
projection!(
    /// An owning iterator over a map's keys. Created by
    /// [`InstrumentedMap::into_keys`](crate::InstrumentedMap::into_keys).
    IntoKeys<K, V> from IntoIter yields K, |k, _v| k
);
projection!(
    /// An owning iterator over a map's values. Created by
    /// [`InstrumentedMap::into_values`](crate::InstrumentedMap::into_values).
    IntoValues<K, V> from IntoIter yields V, |_k, v| v
);
