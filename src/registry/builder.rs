//! `InstrumentedMap::builder(name)`: name, labels, capacity, hasher and
//! detector thresholds, then register or build.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;

use crate::detect::DetectorConfig;
use crate::map::{DefaultHashBuilder, InstrumentedMap};

use super::{RegisterError, Registry};

/// Configures an [`InstrumentedMap`] before it is registered. Created by
/// [`InstrumentedMap::builder`].
///
/// ```
/// use mapscope::{InstrumentedMap, Registry};
///
/// let registry = Registry::new();
/// let mut cache = InstrumentedMap::<String, Vec<u8>>::builder("user_cache")
///     .label("tenant", "acme")
///     .capacity(10_000)
///     .max_entries(50_000)
///     .register(&registry)?;
/// cache.insert("alice".into(), vec![1, 2, 3]);
/// # Ok::<(), mapscope::RegisterError>(())
/// ```
#[must_use]
pub struct MapBuilder<K, V, S = DefaultHashBuilder> {
    name: String,
    labels: Vec<(String, String)>,
    capacity: usize,
    hasher: S,
    detectors: Option<DetectorConfig>,
    max_entries: Option<usize>,
    auto_shrink: bool,
    publish_every: NonZeroU32,
    marker: PhantomData<fn() -> (K, V)>,
}

impl<K, V, S> fmt::Debug for MapBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapBuilder")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("capacity", &self.capacity)
            .field("max_entries", &self.max_entries)
            .field("auto_shrink", &self.auto_shrink)
            .finish_non_exhaustive()
    }
}

impl<K, V> InstrumentedMap<K, V, DefaultHashBuilder> {
    /// Starts configuring a map named `name` (the `map` label of its series).
    ///
    /// ```
    /// let map = mapscope::InstrumentedMap::<u32, u32>::builder("orders")
    ///     .capacity(1000)
    ///     .build();
    /// assert_eq!(map.stats().growths(mapscope::GrowthKind::Double), 0);
    /// ```
    pub fn builder(name: impl Into<String>) -> MapBuilder<K, V, DefaultHashBuilder> {
        MapBuilder {
            name: name.into(),
            labels: Vec::new(),
            capacity: 0,
            hasher: DefaultHashBuilder::default(),
            detectors: None,
            max_entries: None,
            auto_shrink: false,
            publish_every: NonZeroU32::new(crate::map::DEFAULT_PUBLISH_EVERY)
                .expect("invariant: the default publication interval is not zero"),
            marker: PhantomData,
        }
    }
}

impl<K, V, S> MapBuilder<K, V, S> {
    /// Adds a label. Repeatable; names follow Prometheus rules, and `map`,
    /// `source`, `source_instance`, `kind` and `le` are reserved. Checked at
    /// registration.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Presizes the map for `capacity` entries (see [`InstrumentedMap::with_capacity`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// `unbounded_growth` fires while the map holds more than `max` entries,
    /// and the insert that crosses the limit records a misuse event on the
    /// tracing span active in its thread (one compare per insert).
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = Some(max);
        self
    }

    /// Detector thresholds for this map, instead of the registry's.
    pub fn detectors(mut self, config: DetectorConfig) -> Self {
        self.detectors = Some(config);
        self
    }

    /// Turns on auto-shrink (see [`InstrumentedMap::set_auto_shrink`]).
    pub fn auto_shrink(mut self, enabled: bool) -> Self {
        self.auto_shrink = enabled;
        self
    }

    /// How many writes pass between two publications of the map's stats
    /// (default 64). Growth start and finish always publish at once, and
    /// [`InstrumentedMap::publish`] publishes on demand.
    pub fn publish_every(mut self, writes: NonZeroU32) -> Self {
        self.publish_every = writes;
        self
    }

    /// Uses `hasher` instead of the default foldhash.
    pub fn hasher<S2>(self, hasher: S2) -> MapBuilder<K, V, S2> {
        MapBuilder {
            name: self.name,
            labels: self.labels,
            capacity: self.capacity,
            hasher,
            detectors: self.detectors,
            max_entries: self.max_entries,
            auto_shrink: self.auto_shrink,
            publish_every: self.publish_every,
            marker: PhantomData,
        }
    }

    /// Builds an unregistered map, exactly as fast as a registered one (it
    /// runs the same code; there is just nobody to tell).
    pub fn build(self) -> InstrumentedMap<K, V, S> {
        let mut map = InstrumentedMap::with_capacity_and_hasher(self.capacity, self.hasher);
        map.set_auto_shrink(self.auto_shrink);
        map
    }

    /// Builds the map and registers it, so snapshots of `registry` include it.
    /// Dropping the map deregisters it after the registry's grace period.
    pub fn register(self, registry: &Registry) -> Result<InstrumentedMap<K, V, S>, RegisterError> {
        let mut detectors = self.detectors.unwrap_or_else(|| registry.detector_config());
        if self.max_entries.is_some() {
            detectors.max_entries = self.max_entries;
        }
        let observer = registry.register_observer(&self.name, &self.labels, detectors)?;
        let publish_every = self.publish_every.get();
        let max_entries = self.max_entries;
        let mut map = self.build();
        if let Some(max) = max_entries {
            map.raw.max_entries = max;
        }
        map.attach(observer, publish_every);
        Ok(map)
    }

    /// Registers in [`Registry::global`].
    pub fn register_global(self) -> Result<InstrumentedMap<K, V, S>, RegisterError> {
        self.register(Registry::global())
    }
}
