//! Istio-compatible authorization, Gateway API routing, fault injection and
//! token-aware rate limits for sidecar-less meshes.
//!
//! What this crate does today:
//! - parses `security.istio.io/v1` and `v1beta1` AuthorizationPolicy YAML
//!   (single documents and `---` streams) into a validated model, rejecting
//!   every invalid form with a [`PolicyError`] that names the policy and the
//!   field ([`parse_policies`]);
//! - evaluates a [`Request`] for a [`Destination`] in Istio's order — CUSTOM,
//!   then DENY, then ALLOW — with AUDIT marks, dry-run outcomes and
//!   diagnostics ([`PolicySet::evaluate`]). Policies are precompiled and
//!   indexed by where they attach (namespace, root namespace, selector
//!   labels, `targetRefs`), so a decision looks only at the policies attached
//!   to its destination, whatever the size of the mesh;
//! - behind feature `xds`: converts Istio's WDS `istio.security.Authorization`
//!   (what a node proxy is fed over xDS) into the same model and back
//!   (`TryFrom`, `from_wds`, `to_wds`), so a node proxy fed over xDS — its
//!   workloads attached as [`Attachment::Listed`] — evaluates identically to
//!   one fed YAML; constructs with no exact counterpart are refused with an
//!   `XdsPolicyError`;
//! - offers two views: [`View::L7`] (a waypoint sees HTTP) and [`View::L4`]
//!   (a node proxy does not). At L4 an ALLOW rule that needs HTTP attributes
//!   matches nothing, and a DENY/AUDIT/CUSTOM rule that uses them is enforced
//!   on its L4 part alone — it never fails open;
//! - rate-limits LLM traffic: token buckets with an injected [`Clock`],
//!   several limits per request reserved all-or-nothing and settled with the
//!   actual (per-model weighted) usage, a drop guard for cancelled streams,
//!   per-principal model allow-lists, shadow mode and `429` metadata
//!   ([`RateLimiter`]); the `tower` feature adds an HTTP middleware
//!   (`RateLimit`);
//! - parses Gateway API `HTTPRoute` YAML ([`parse_http_routes`]) and routes
//!   requests with a precompiled [`Router`]: hostname and path indexes,
//!   Gateway API precedence, header modifiers, redirects, rewrites, mirrors
//!   and weighted backends ([`Router::route`]);
//! - parses and samples Istio fault injection ([`FaultInjection`]);
//! - takes every random choice from an injected [`Random`]
//!   ([`SeededRandom`] makes tests deterministic).
//!
//! Features (both off by default): `tower` adds the rate-limit HTTP
//! middleware; `xds` adds the WDS `Authorization` conversions (and depends on
//! appnet-xds).
//!
//! What it does not do yet: attach fault injection to routes (the two are
//! usable side by side). Evaluation, routing and rate limiting are
//! pure: no tokio, no sockets, no clock or randomness of their own.
//!
//! # Example
//! ```
//! use std::collections::BTreeMap;
//! use appnet_policy::{
//!     Attachment, Destination, NoExternalAuthorizer, PolicySet, Request, View, parse_policies,
//! };
//!
//! let yaml = r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: allow-web, namespace: shop}
//! spec:
//!   action: ALLOW
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
//!     to: [{operation: {ports: ["8080"]}}]
//! "#;
//! let set = PolicySet::new("istio-system", parse_policies(yaml, "default")?);
//! let dest = Destination {
//!     namespace: "shop".into(),
//!     attachment: Attachment::Workload { labels: BTreeMap::new() },
//! };
//! let web = Request {
//!     source_principal: Some("cluster.local/ns/shop/sa/web".into()),
//!     destination_port: Some(8080),
//!     ..Request::default()
//! };
//! assert!(set.evaluate(&dest, &web, View::L4, &NoExternalAuthorizer).allowed);
//! let other = Request { source_principal: Some("cluster.local/ns/x/sa/y".into()), ..web };
//! assert!(!set.evaluate(&dest, &other, View::L4, &NoExternalAuthorizer).allowed);
//! # Ok::<(), appnet_policy::PolicyError>(())
//! ```

mod duration;
mod eval;
mod fault;
#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets in `fuzz/`. Not part of the stable
    //! API.
    pub use crate::fuzzing_authz::authz_eval;
    pub use crate::fuzzing_route::route_match;
}
mod fuzzing_authz;
mod fuzzing_route;
mod index;
mod matching;
mod model;
mod parse;
mod random;
mod ratelimit;
mod route;
#[cfg(feature = "xds")]
mod xds;

pub use eval::{
    Attachment, Claim, DEFAULT_ROOT_NAMESPACE, Decision, Destination, Diagnostic, DryRunOutcome,
    ExternalAuthorizer, HttpAttributes, NoExternalAuthorizer, PolicySet, Reason, Request,
    RequestAuth, RuleMatch, View,
};
pub use fault::{
    AbortFault, AbortStatus, DelayFault, FaultError, FaultInjection, FaultInvalid, FaultOutcome,
    GrpcCode,
};
pub use model::{
    Action, AuthorizationPolicy, Condition, ConditionKey, ConditionValues, Field, Operation, Rule,
    Scope, ServiceAccountRef, Source, StringMatch, TargetRef,
};
pub use parse::{InvalidReason, MAX_INPUT_BYTES, PolicyError, parse_policies};
pub use random::{Percentage, Random, SeededRandom};
pub use ratelimit::{
    CancelPolicy, Clock, CostModel, CostWeights, LimitKey, LimitRequest, LimitSpec, LimitStats,
    LimitUnit, LimiterStats, MAX_LIMITS, MAX_REFILL_PERIOD, ManualClock, ModelAllowList, Permit,
    Quota, RateLimitError, RateLimited, RateLimiter, RateLimiterBuilder, SpecError, SystemClock,
    TokenBucket, Usage,
};
#[cfg(feature = "tower")]
pub use ratelimit::{
    RateLimit, RateLimitBody, RateLimitLayer, RateLimitResponseFuture, UsageRecorder,
};
pub use route::{
    BackendRef, DirectReason, DirectResponse, Forward, Fraction, HeaderMatch, HeaderModifier,
    HttpBackendRef, HttpRoute, MAX_REGEX_LEN, Method, ParentRef, PathMatch, PathModifier,
    QueryParamMatch, REGEX_DFA_SIZE_LIMIT, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT, Redirect,
    RegexError, RegexMatch, RequestMirror, RequestRedirect, RouteError, RouteFilter, RouteInvalid,
    RouteMatch, RouteOutcome, RouteRequest, RouteRetry, RouteRule, RouteTimeouts, Router,
    UrlRewrite, ValueMatch, parse_http_routes,
};
#[cfg(feature = "xds")]
pub use xds::{NoWdsFormReason, UnsupportedReason, XdsPolicyError, from_wds, to_wds};
