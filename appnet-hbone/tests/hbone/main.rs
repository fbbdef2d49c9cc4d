//! HBONE over real mutual TLS and real sockets on 127.0.0.1, with
//! credentials minted by appnet-identity's CA. One test binary; the
//! modules group the scenarios.

mod abuse;
mod common;
mod copy;
mod double;
mod envoy;
#[path = "../support/envoy_yaml.rs"]
mod envoy_yaml;
mod keepalive;
mod pool;
mod process;
mod refusals;
#[cfg(feature = "prometheus")]
mod telemetry;
mod tunnel;
