//! Consistency checks of a map against its model, after a panic or at the
//! end of a run, and a check that the map is still usable.

use std::collections::BTreeMap;

use mapscope::MapStats;

use crate::key::{armed, Key, Map, Model};

pub(crate) fn check_stats(stats: &MapStats, len: usize, ctx: &str) {
    assert_eq!(stats.entries, len, "{ctx}: stats.entries");
    if let Some(growth) = stats.growth {
        assert!(
            growth.evacuated_old_buckets <= growth.old_buckets,
            "{ctx}: {growth:?}"
        );
        assert!(growth.old_buckets.is_power_of_two(), "{ctx}: {growth:?}");
    }
    assert!(stats.peak_entries >= len, "{ctx}: {stats:?}");
}

/// The map holds exactly the model's entries: same len, every model key
/// found with its value, iteration yields each model entry once and nothing
/// else, and the stats agree.
pub(crate) fn check(map: &Map, model: &Model, ctx: &str) {
    assert!(!armed(), "checks run disarmed");
    assert_eq!(map.len(), model.len(), "{ctx}: len");
    assert_eq!(map.is_empty(), model.is_empty(), "{ctx}: is_empty");
    check_stats(&map.stats(), model.len(), ctx);
    let mut seen = BTreeMap::new();
    for (k, v) in map.iter() {
        assert!(seen.insert(k.0, *v).is_none(), "{ctx}: key {} twice", k.0);
    }
    assert_eq!(map.iter().len(), model.len(), "{ctx}: iter().len()");
    let expected: BTreeMap<u64, u64> = model.iter().map(|(&k, &v)| (k, v)).collect();
    assert_eq!(seen, expected, "{ctx}: iterated entries");
    for (&k, &v) in model {
        assert_eq!(map.get(&Key(k)), Some(&v), "{ctx}: get({k})");
    }
}

/// [`check`], plus: a clone gives back every model entry exactly once
/// through `remove` (so no duplicate hides behind the one `get` finds), and
/// the clone's growth runs to completion.
pub(crate) fn deep_check(map: &Map, model: &Model, ctx: &str) {
    check(map, model, ctx);
    let mut copy = map.clone();
    check_stats(&copy.stats(), model.len(), ctx);
    for (&k, &v) in model {
        assert_eq!(copy.remove(&Key(k)), Some(v), "{ctx}: clone remove({k})");
        assert_eq!(
            copy.get(&Key(k)),
            None,
            "{ctx}: clone get({k}) after remove"
        );
    }
    assert!(copy.is_empty(), "{ctx}");
    assert_eq!(copy.iter().count(), 0, "{ctx}");
    copy.complete_growth();
    assert_eq!(copy.stats().growth, None, "{ctx}");
    let mut copy = map.clone();
    copy.complete_growth();
    assert_eq!(copy.stats().growth, None, "{ctx}");
    check(&copy, model, ctx);
}

/// Whatever happened before, the map still takes writes and finishes its
/// growths; consumes the map.
pub(crate) fn still_usable(mut map: Map, mut model: Model, ctx: &str) {
    for i in 0..300u64 {
        let k = 1 << 40 | i;
        assert_eq!(map.insert(Key(k), i), model.insert(k, i), "{ctx}");
        if i % 3 == 0 {
            let k = 1 << 40 | (i / 2);
            assert_eq!(map.remove(&Key(k)), model.remove(&k), "{ctx}");
        }
    }
    check(&map, &model, ctx);
    map.complete_growth();
    assert_eq!(map.stats().growth, None, "{ctx}");
    check(&map, &model, ctx);
    map.shrink_to_fit();
    map.complete_growth();
    check(&map, &model, ctx);
    let drained: BTreeMap<u64, u64> = map.drain().map(|(k, v)| (k.0, v)).collect();
    let expected: BTreeMap<u64, u64> = model.into_iter().collect();
    assert_eq!(drained, expected, "{ctx}: drained");
    assert!(map.is_empty());
}
