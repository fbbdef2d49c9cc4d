//! Type URLs and the small table of per-type protocol rules.

use std::collections::BTreeMap;

/// Well-known xDS type URLs.
pub mod type_url {
    /// Envoy `Listener` (LDS).
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// Envoy `RouteConfiguration` (RDS).
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// Envoy `ScopedRouteConfiguration` (SRDS).
    pub const SCOPED_ROUTE: &str =
        "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration";
    /// Envoy `VirtualHost` (VHDS).
    pub const VIRTUAL_HOST: &str = "type.googleapis.com/envoy.config.route.v3.VirtualHost";
    /// Envoy `Cluster` (CDS).
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// Envoy `ClusterLoadAssignment` (EDS).
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// Envoy TLS `Secret` (SDS).
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    /// Istio workload API `Address` (WDS: workloads and services).
    pub const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
    /// Istio `Authorization` (L4 authorization policies for node proxies).
    pub const AUTHORIZATION: &str = "type.googleapis.com/istio.security.Authorization";
}

/// How the protocol treats one resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeRule {
    /// In state-of-the-world, every response carries the complete set the
    /// client subscribed to, so a resource missing from a response is
    /// deleted (LDS, CDS and the Istio wildcard types). For other types a
    /// missing resource is simply not updated.
    pub full_state: bool,
    /// Position in the "make" order of an aggregated stream: additions and
    /// updates of a lower rank are sent before those of a higher rank.
    pub make_rank: u32,
    /// Position in the "break" order: removals are sent only after every
    /// pending addition, lowest rank first.
    pub break_rank: u32,
}

impl TypeRule {
    /// A rule with the given full-state flag and ranks.
    pub fn new(full_state: bool, make_rank: u32, break_rank: u32) -> Self {
        Self {
            full_state,
            make_rank,
            break_rank,
        }
    }
}

/// Rank of types the table does not know: after all known ones.
const UNKNOWN_RANK: u32 = 100;

/// Per-type rules with overrides; unknown types are not full-state and come
/// last in both orders (ties broken by type URL).
///
/// Defaults, following Envoy's ADS guidance (make before break):
/// - make order: SDS → CDS → EDS → LDS → RDS → SRDS → VHDS, then Istio
///   `Authorization` → `Address`, then anything else;
/// - break order (removals, always after every addition): LDS → RDS → SRDS →
///   VHDS → CDS → EDS → SDS, then `Address` → `Authorization`: referrers are
///   removed before what they refer to.
/// - full-state in SotW: LDS, CDS, `Address`, `Authorization`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeTable {
    rules: BTreeMap<String, TypeRule>,
}

impl Default for TypeTable {
    fn default() -> Self {
        use type_url::*;
        let table = [
            (SECRET, false, 0, 6),
            (CLUSTER, true, 1, 4),
            (ENDPOINT, false, 2, 5),
            (LISTENER, true, 3, 0),
            (ROUTE, false, 4, 1),
            (SCOPED_ROUTE, false, 5, 2),
            (VIRTUAL_HOST, false, 6, 3),
            (AUTHORIZATION, true, 10, 11),
            (ADDRESS, true, 11, 10),
        ];
        Self {
            rules: table
                .into_iter()
                .map(|(url, full, make, brk)| (url.to_owned(), TypeRule::new(full, make, brk)))
                .collect(),
        }
    }
}

impl TypeTable {
    /// Sets (or replaces) the rule for one type URL.
    pub fn set(&mut self, type_url: impl Into<String>, rule: TypeRule) -> &mut Self {
        self.rules.insert(type_url.into(), rule);
        self
    }

    /// The rule for a type URL (a default one for unknown types).
    pub fn rule(&self, type_url: &str) -> TypeRule {
        self.rules.get(type_url).cloned().unwrap_or(TypeRule::new(
            false,
            UNKNOWN_RANK,
            UNKNOWN_RANK,
        ))
    }

    /// Whether SotW responses of this type carry the full set (absence =
    /// deletion).
    pub fn is_full_state(&self, type_url: &str) -> bool {
        self.rule(type_url).full_state
    }
}
