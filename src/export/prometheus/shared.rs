//! Renders shared by concurrent scrapes (single flight), into a reused
//! buffer (feature `http`).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::{write_text, MapscopeCollector};
use crate::registry::RegistrySnapshot;

/// The single flight of [`MapscopeCollector::render_shared`]: whether a
/// render runs, how many have finished, and the last one's result (kept so
/// the next render can reuse its buffer).
#[derive(Default)]
pub(super) struct Flight {
    state: Mutex<FlightState>,
    finished: Condvar,
}

#[derive(Default)]
struct FlightState {
    rendering: bool,
    /// Renders finished (or abandoned by a panic), to tell a waiter that
    /// the render it joined is over.
    generation: u64,
    /// The last render's text; `None` before the first, or if it panicked.
    last: Option<Bytes>,
    /// How long the last render was: the next buffer's starting capacity
    /// when the last one is still being sent and cannot be reused.
    last_len: usize,
    /// Callers waiting for a render in progress (for tests).
    waiting: usize,
}

/// The render a [`MapscopeCollector::render_shared`] call waited for
/// panicked (the panic is reported by the call that ran it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rendering /metrics failed in a concurrent scrape; scrape again")]
pub struct RenderFailed;

impl MapscopeCollector {
    /// [`render`](Self::render), shared by concurrent callers (single
    /// flight): a call that arrives while another renders waits for that
    /// render and returns the same bytes, so N concurrent scrapes cost one
    /// registry observation and one rendering, and hold one copy of the
    /// text. A call that arrives when none runs starts a new one: the text
    /// a call returns was observed no earlier than the previous render
    /// finished.
    ///
    /// The render writes into the previous render's buffer when every
    /// response that held it is gone, instead of allocating tens of MB per
    /// scrape.
    ///
    /// Sharing does not change what detectors see or which events fire: an
    /// observation fires each transition once, whoever asked for it, and
    /// joined callers simply make no observation of their own (as if they
    /// had scraped a moment earlier). Blocking work, like `render`.
    ///
    /// ```
    /// use mapscope::export::prometheus::MapscopeCollector;
    /// let collector = MapscopeCollector::new(mapscope::Registry::new());
    /// let shared = collector.render_shared().unwrap();
    /// assert!(shared.text.starts_with(b"# HELP "));
    /// ```
    pub fn render_shared(&self) -> Result<SharedText, RenderFailed> {
        self.render_shared_with(|| self.registry.snapshot())
    }

    fn render_shared_with(
        &self,
        observe: impl FnOnce() -> RegistrySnapshot,
    ) -> Result<SharedText, RenderFailed> {
        let flight = &self.flight;
        let mut state = lock(&flight.state);
        if state.rendering {
            let joined = state.generation;
            state.waiting += 1;
            while state.generation == joined {
                state = flight
                    .finished
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.waiting -= 1;
            let render = state.generation;
            return state
                .last
                .clone()
                .map(|text| SharedText { text, render })
                .ok_or(RenderFailed);
        }
        state.rendering = true;
        let mut out = reclaim(state.last.take(), state.last_len);
        drop(state);
        // Ends the flight if rendering panics, so waiters never hang.
        struct Abandon<'a>(Option<&'a Flight>);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if let Some(flight) = self.0 {
                    flight.land(None);
                }
            }
        }
        let mut abandon = Abandon(Some(flight));
        write_text(&observe(), &mut out);
        abandon.0 = None;
        let text = Bytes::from(out.into_bytes());
        let render = flight.land(Some(text.clone()));
        Ok(SharedText { text, render })
    }
}

impl Flight {
    /// Ends the render in progress with its text (`None`: it panicked),
    /// wakes its waiters, and returns its number.
    fn land(&self, text: Option<Bytes>) -> u64 {
        let mut state = lock(&self.state);
        state.rendering = false;
        state.generation += 1;
        state.last_len = text.as_ref().map_or(state.last_len, Bytes::len);
        state.last = text;
        self.finished.notify_all();
        state.generation
    }
}

/// The text of a [`MapscopeCollector::render_shared`] call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SharedText {
    /// The exposition.
    pub text: Bytes,
    /// Which render made it (renders are numbered from 1): callers that
    /// shared a render get the same number, so a transport can encode the
    /// text once per render (the HTTP router's gzip does).
    pub render: u64,
}

fn lock(state: &Mutex<FlightState>) -> MutexGuard<'_, FlightState> {
    // The state is a few plain fields, each written whole: a panic while
    // holding the lock leaves nothing half-updated.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An empty buffer for the next render: the last render's own allocation
/// when no response holds it any more, else a new one sized like it.
fn reclaim(last: Option<Bytes>, last_len: usize) -> String {
    let reused = last
        .and_then(|text| text.try_into_mut().ok())
        .map(|mut text| {
            text.clear();
            Vec::from(text)
        });
    match reused {
        // An empty Vec is valid UTF-8: this never copies nor fails.
        Some(buffer) => String::from_utf8(buffer).unwrap_or_default(),
        None => String::with_capacity(last_len + last_len / 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    /// Runs `callers` concurrent `render_shared_with` calls whose render
    /// (the first caller's) waits until every other caller has joined it:
    /// the overlap is certain, not hoped for. Returns each call's outcome
    /// (`Err` where the call panicked) and how many observations were made.
    fn overlapping_renders(
        collector: &MapscopeCollector,
        callers: usize,
        observe: impl Fn() -> RegistrySnapshot + Sync,
    ) -> (
        Vec<std::thread::Result<Result<SharedText, RenderFailed>>>,
        usize,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};
        let observations = AtomicUsize::new(0);
        let render = || {
            observations.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(30);
            while lock(&collector.flight.state).waiting < callers - 1 {
                assert!(Instant::now() < deadline, "callers did not join the render");
                std::thread::yield_now();
            }
            observe()
        };
        let results = std::thread::scope(|s| {
            let calls: Vec<_> = (0..callers)
                .map(|_| s.spawn(|| collector.render_shared_with(render)))
                .collect();
            calls.into_iter().map(|call| call.join()).collect()
        });
        (results, observations.into_inner())
    }

    fn one_map_registry() -> (Registry, crate::InstrumentedMap<u32, u32>) {
        let registry = Registry::new();
        let mut map = crate::InstrumentedMap::builder("m")
            .register(&registry)
            .unwrap();
        map.insert(1, 1);
        map.publish();
        (registry, map)
    }

    #[test]
    fn concurrent_renders_share_one_observation_and_one_buffer() {
        let (registry, _map) = one_map_registry();
        let collector = MapscopeCollector::new(registry.clone());
        let (results, observations) = overlapping_renders(&collector, 4, || registry.snapshot());
        assert_eq!(observations, 1, "four overlapping scrapes, one observation");
        let shared: Vec<SharedText> = results
            .into_iter()
            .map(|r| r.expect("no panic").expect("rendered"))
            .collect();
        for one in &shared {
            assert_eq!(
                one.text.as_ptr(),
                shared[0].text.as_ptr(),
                "one copy of the text"
            );
            assert_eq!(one.render, 1, "the first render, shared");
        }
        assert_eq!(&shared[0].text[..], collector.render().as_bytes());
    }

    #[test]
    fn a_render_reuses_the_last_buffer_once_nobody_holds_it() {
        let (registry, _map) = one_map_registry();
        let collector = MapscopeCollector::new(registry);
        let first = collector.render_shared().unwrap().text;
        // Still held (a response being sent): the next render cannot take it.
        let second = collector.render_shared().unwrap().text;
        assert_ne!(second.as_ptr(), first.as_ptr());
        assert_eq!(first, second);
        let last = second.as_ptr();
        drop((first, second));
        // Nobody holds the last one any more: the next render writes into it.
        let third = collector.render_shared().unwrap();
        assert_eq!(third.render, 3);
        let third = third.text;
        assert_eq!(third.as_ptr(), last, "the last buffer was reused");
        assert_eq!(&third[..], collector.render().as_bytes());
    }

    #[test]
    fn a_panicking_render_fails_its_waiters_and_the_next_render_works() {
        let (registry, _map) = one_map_registry();
        let collector = MapscopeCollector::new(registry);
        let (results, _) = overlapping_renders(&collector, 3, || panic!("injected render panic"));
        let panicked = results.iter().filter(|r| r.is_err()).count();
        let failed = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(RenderFailed))))
            .count();
        assert_eq!(
            (panicked, failed),
            (1, 2),
            "the renderer panics, its waiters fail"
        );
        assert!(collector.render_shared().is_ok(), "the flight ended");
    }

    /// Sharing a render shares its observation: a detector transition
    /// fires one event, which every sharer's text counts once, and later
    /// renders neither repeat nor lose it.
    #[test]
    fn shared_renders_fire_each_transition_once() {
        use crate::detect::{DetectorConfig, MisuseKind};
        use crate::registry::{Event, ManualClock};
        use std::time::Duration;
        let kind = MisuseKind::UnboundedGrowth;
        let registry = Registry::builder()
            .clock(ManualClock::new())
            .detectors(
                DetectorConfig::default()
                    .with_window(Duration::ZERO)
                    .with_growth_windows(0),
            )
            .build();
        let mut map = crate::InstrumentedMap::builder("sessions")
            .max_entries(100)
            .register(&registry)
            .unwrap();
        for i in 0..101u32 {
            map.insert(i, i);
        }
        map.publish();
        let collector = MapscopeCollector::new(registry.clone());
        let counted = format!(
            "mapscope_map_misuse_events_total{{map=\"sessions\",kind=\"{}\"}} 1\n",
            kind.as_str()
        );
        let (results, observations) = overlapping_renders(&collector, 4, || registry.snapshot());
        assert_eq!(observations, 1);
        for result in results {
            let text = result.expect("no panic").expect("rendered").text;
            let text = std::str::from_utf8(&text).unwrap();
            assert!(text.contains(&counted), "{counted:?} missing");
        }
        let again = collector.render_shared().unwrap().text;
        assert!(std::str::from_utf8(&again).unwrap().contains(&counted));
        let fired = registry
            .events_since(0)
            .events
            .iter()
            .filter(|r| matches!(&r.event, Event::Misuse(e) if e.kind == kind))
            .count();
        assert_eq!(fired, 1, "one transition, one event");
    }
}
