//! The protobuf messages as they travel, before any validation.
//!
//! - [`istio::workload`] and [`istio::security`]: Istio's workload discovery
//!   API, generated at build time from this crate's own `.proto` files
//!   (wire-compatible with Istio's: same packages, names, field numbers and
//!   types). Every message implements [`prost::Name`], so
//!   `Address::type_url()` is `type.googleapis.com/istio.workload.Address`.
//! - [`envoy`], [`google`], [`xds`]: Envoy's xDS v3 API (including the ADS
//!   and delta discovery services) and the Google and CNCF `xds` packages it
//!   refers to, re-exported from the pre-generated [`envoy_types`] crate.
//!
//! Note that Envoy's messages carry their own `google.protobuf.Any`
//! ([`google::protobuf::Any`]), distinct from [`prost_types::Any`] used by the
//! Istio messages; [`AnyMessage`](crate::AnyMessage) reads both.

/// Istio's own packages.
pub mod istio {
    /// `istio.workload`: [`Address`](workload::Address) (a workload or a
    /// service) and everything it contains.
    #[allow(clippy::all, clippy::pedantic)]
    pub mod workload {
        include!(concat!(env!("OUT_DIR"), "/istio.workload.rs"));
    }

    /// `istio.security`: [`Authorization`](security::Authorization), the L4
    /// view of an authorization policy.
    #[allow(clippy::all, clippy::pedantic)]
    pub mod security {
        include!(concat!(env!("OUT_DIR"), "/istio.security.rs"));
    }
}

/// Envoy's API (`envoy.config.*`, `envoy.service.discovery.v3`,
/// `envoy.extensions.*`, ...), from [`envoy_types`].
pub use envoy_types::pb::envoy;
/// Google packages used by Envoy's API (`google.protobuf`, `google.rpc`),
/// from [`envoy_types`].
pub use envoy_types::pb::google;
/// The CNCF `xds` packages used by Envoy's API, from [`envoy_types`].
pub use envoy_types::pb::xds;
