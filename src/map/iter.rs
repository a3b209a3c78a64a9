//! Iterators. Each visits the current array, then the not-yet-evacuated
//! part of the old one. Every entry lives in exactly one of the two (an
//! evacuated old slot is empty, a freed old chunk is an empty slice), so
//! every live entry is yielded exactly once at any point of an evacuation.

use std::fmt;
use std::iter::{Chain, FusedIterator};
use std::marker::PhantomData;

use super::table::{IntoEntries, RawIter, RawIterMut, Table};

/// An iterator over a map's entries, as `(&K, &V)`. Created by
/// [`InstrumentedMap::iter`](crate::InstrumentedMap::iter).
pub struct Iter<'a, K, V> {
    entries: Chain<RawIter<'a, K, V>, RawIter<'a, K, V>>,
    remaining: usize,
}

impl<'a, K, V> Iter<'a, K, V> {
    pub(crate) fn new(table: &'a Table<K, V>, old: Option<&'a Table<K, V>>, len: usize) -> Self {
        Iter {
            entries: table
                .iter()
                .chain(old.map_or_else(RawIter::empty, Table::iter)),
            remaining: len,
        }
    }
}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Iter {
            entries: self.entries.clone(),
            remaining: self.remaining,
        }
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let (key, value) = self.entries.next()?;
        self.remaining -= 1;
        Some((key, value))
    }

    /// Every entry not yet yielded lies in what `entries` has left, so
    /// folding over all of it yields exactly those.
    fn fold<B, F>(self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        self.entries
            .fold(init, |acc, (key, value)| f(acc, (key, value)))
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
    entries: Chain<RawIterMut<'a, K, V>, RawIterMut<'a, K, V>>,
    remaining: usize,
}

impl<'a, K, V> IterMut<'a, K, V> {
    pub(crate) fn new(
        table: &'a mut Table<K, V>,
        old: Option<&'a mut Table<K, V>>,
        len: usize,
    ) -> Self {
        IterMut {
            entries: table
                .iter_mut()
                .chain(old.map_or_else(RawIterMut::empty, Table::iter_mut)),
            remaining: len,
        }
    }
}

impl<'a, K, V> Iterator for IterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let entry = self.entries.next()?;
        self.remaining -= 1;
        Some(entry)
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
    current: IntoEntries<K, V>,
    old: Option<IntoEntries<K, V>>,
    remaining: usize,
}

impl<K, V> IntoIter<K, V> {
    pub(crate) fn new(table: Table<K, V>, old: Option<Table<K, V>>, len: usize) -> Self {
        IntoIter {
            current: table.into_entries(),
            old: old.map(Table::into_entries),
            remaining: len,
        }
    }
}

impl<K, V> Iterator for IntoIter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        if self.remaining == 0 {
            return None;
        }
        let entry = match self.current.next() {
            Some(entry) => entry,
            None => self.old.as_mut()?.next()?,
        };
        self.remaining -= 1;
        Some(entry)
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

            fn fold<B, G: FnMut(B, $item) -> B>(self, init: B, mut g: G) -> B {
                self.inner.fold(init, |acc, ($k, $v)| g(acc, $out))
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
