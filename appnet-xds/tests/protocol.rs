//! The xDS protocol core, driven in memory: named tests for each protocol
//! rule, ADS ordering, a convergence property test over random
//! interleavings, and a replay of the fuzz seed corpus.

#[path = "protocol/ads.rs"]
mod ads;
#[path = "protocol/client.rs"]
mod client;
#[path = "protocol/convergence.rs"]
mod convergence;
#[path = "protocol/corpus.rs"]
mod corpus;
#[path = "protocol/delta.rs"]
mod delta;
#[path = "protocol/pair.rs"]
mod pair;
#[path = "protocol/races.rs"]
mod races;
#[path = "protocol/sotw.rs"]
mod sotw;
#[path = "protocol/store.rs"]
mod store;
