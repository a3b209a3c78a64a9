//! Panic safety (after hashbrown's `tests/hasher_unwind.rs`): a `Hash` or
//! `Eq` impl, or a `retain` predicate, that panics at any point of any
//! operation, including in the middle of an incremental evacuation, leaves
//! the map usable and exactly consistent with a `std::collections::HashMap`
//! model.
//!
//! The key type counts its `hash` and `eq` calls in thread-locals and panics
//! on the call a test arms. Every write hashes its key first and runs all
//! user code (its key's hash, the rehashing of evacuated keys, key
//! comparisons while probing) before it changes anything, so a write that
//! panics must have had no effect at all; the model is left untouched. A
//! `retain` that panics has removed exactly the entries its predicate
//! rejected before the panic.
//!
//! One test binary, a module per concern: [`key`] (the key that panics on
//! command), [`checks`] (consistency with the model), [`ops`] (operations
//! applied to the map and the model), [`sims`] (maps in every kind of
//! growth, and the sweeps that panic at every call), then the tests:
//! [`hash_eq`] (a panicking `Hash` or `Eq` during a write, mid-evacuation
//! included), [`complete_and_retain`] (`complete_growth` and a panicking
//! `retain` predicate) and [`workloads`] (every call of a scripted
//! workload, and random workloads with random panics).

mod checks;
mod complete_and_retain;
mod hash_eq;
mod key;
mod ops;
mod sims;
mod workloads;
