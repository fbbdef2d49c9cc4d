//! Gateway API `HTTPRoute` routing: parsing ([`parse_http_routes`]), a
//! precompiled [`Router`] that picks a rule by the precedence in POLICY.md,
//! filters (header modifiers, redirects, rewrites, mirrors) and weighted
//! backends chosen with injected randomness.

mod filters;
mod model;
mod outcome;
mod parse;
mod parse_filter;
mod router;
mod wire;

pub use model::{
    BackendRef, Fraction, HeaderMatch, HeaderModifier, HttpBackendRef, HttpRoute, MAX_REGEX_LEN,
    Method, ParentRef, PathMatch, PathModifier, QueryParamMatch, REGEX_DFA_SIZE_LIMIT,
    REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT, RegexError, RegexMatch, RequestMirror, RequestRedirect,
    RouteFilter, RouteMatch, RouteRetry, RouteRule, RouteTimeouts, UrlRewrite, ValueMatch,
};
pub use outcome::{DirectReason, DirectResponse, Forward, Redirect, RouteOutcome, RouteRequest};
pub use parse::parse_http_routes;
pub use router::Router;

/// Why HTTPRoute YAML was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The input exceeds [`MAX_INPUT_BYTES`](crate::MAX_INPUT_BYTES).
    #[error("route input is {size} bytes; at most {limit} are read")]
    TooLarge {
        /// Input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A document is not valid YAML (including alias bombs and nesting
    /// beyond the parser's recursion limit).
    #[error("document {document}: {message}")]
    Yaml {
        /// Position of the document in the stream (0-based).
        document: usize,
        /// What the YAML parser said.
        message: String,
    },
    /// A document is not a `gateway.networking.k8s.io` v1 or v1beta1
    /// HTTPRoute.
    #[error(
        "document {document}: expected gateway.networking.k8s.io/v1 HTTPRoute, found {api_version}/{kind}"
    )]
    WrongKind {
        /// Position of the document in the stream.
        document: usize,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// An unknown field, a missing required field or a value of the wrong
    /// type.
    #[error("route {route}: {field}: {message}")]
    Schema {
        /// `namespace/name` as far as it could be read, else
        /// `document <n>`.
        route: String,
        /// Path to the field, e.g. `spec.rules[0].backendRefs[1].weight`.
        field: String,
        /// What the deserializer said.
        message: String,
    },
    /// A route parsed but breaks a rule.
    #[error("route {route}: {field}: {reason}")]
    Invalid {
        /// `namespace/name`.
        route: String,
        /// Path to the field, e.g. `spec.rules[0].matches[1].path.value`.
        field: String,
        /// What is wrong.
        reason: RouteInvalid,
    },
}

/// What is wrong with a field of a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteInvalid {
    /// A required field is missing or empty.
    #[error("is required")]
    Required,
    /// A list over the Gateway API's maximum length.
    #[error("has {len} entries; at most {limit} are allowed")]
    TooMany {
        /// Entries given.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// `rules: []`.
    #[error("must not be an empty list")]
    EmptyList,
    /// Two rules with the same name.
    #[error("rule name {0:?} is not unique")]
    DuplicateRuleName(String),
    /// `metadata.creationTimestamp` is not RFC 3339.
    #[error("invalid timestamp {0:?} (want RFC 3339)")]
    BadTimestamp(String),
    /// Not a lower-case RFC 1123 hostname (with an optional leading `*.`
    /// where allowed), or an IP address.
    #[error("invalid hostname {0:?}")]
    BadHostname(String),
    /// A port that is not 1–65535.
    #[error("invalid port {0}")]
    BadPort(i64),
    /// A backend weight outside 0–1,000,000.
    #[error("invalid weight {0} (want 0-1000000)")]
    BadWeight(i64),
    /// A core Service reference without a port.
    #[error("a Service backend needs a port")]
    MissingPort,
    /// A value an enumeration does not have (match type, filter type, path
    /// modifier type).
    #[error("unsupported value {0:?}")]
    UnsupportedValue(String),
    /// An HTTP method Gateway API does not list.
    #[error("unknown method {0:?}")]
    BadMethod(String),
    /// A malformed path in a match, redirect or rewrite.
    #[error("invalid path {value:?}: {why}")]
    BadPath {
        /// The path.
        value: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A regular expression that is too long, does not parse or exceeds the
    /// compile limits.
    #[error("{0}")]
    BadRegex(RegexError),
    /// A header or query parameter name that is not an HTTP token.
    #[error("invalid name {0:?}")]
    BadName(String),
    /// A header or query value that is empty, too long or has control
    /// characters.
    #[error("invalid value {0:?}")]
    BadValue(String),
    /// A header name given more than one action in one modifier.
    #[error("header {0:?} is given more than one action")]
    DuplicateHeader(String),
    /// A filter type this crate does not implement (`ExtensionRef`,
    /// `CORS`, `ExternalAuth`, or a redirect/rewrite on a backend).
    #[error("filter type {0} is not supported here")]
    UnsupportedFilter(String),
    /// A filter whose `type` does not match the one configuration field it
    /// sets.
    #[error("filter of type {0} must set exactly its own configuration field")]
    FilterConfigMismatch(String),
    /// A filter type that may appear once per rule appears again.
    #[error("filter {0} cannot be repeated")]
    RepeatedFilter(String),
    /// RequestRedirect together with backendRefs.
    #[error("RequestRedirect cannot be used together with backendRefs")]
    RedirectWithBackends,
    /// RequestRedirect together with URLRewrite.
    #[error("RequestRedirect and URLRewrite cannot be combined")]
    RedirectWithRewrite,
    /// ReplacePrefixMatch without exactly one PathPrefix match on the rule.
    #[error("ReplacePrefixMatch needs exactly one PathPrefix match")]
    PrefixRewriteWithoutPrefixMatch,
    /// A path modifier whose type and value fields disagree.
    #[error("path modifier type {0} must set exactly its own value field")]
    PathModifierMismatch(String),
    /// A redirect scheme other than `http` or `https`.
    #[error("invalid scheme {0:?} (want http or https)")]
    BadScheme(String),
    /// A redirect status other than 301, 302, 303, 307 or 308, or a retry
    /// code outside 400–599.
    #[error("invalid status code {0}")]
    BadStatusCode(i64),
    /// A mirror `percent` outside 0–100.
    #[error("invalid percent {0} (want 0-100)")]
    BadPercent(i64),
    /// A mirror fraction with a non-positive denominator or a numerator
    /// outside `0..=denominator`.
    #[error("invalid fraction {numerator}/{denominator}")]
    BadFraction {
        /// Numerator given.
        numerator: i64,
        /// Denominator given (or the default 100).
        denominator: i64,
    },
    /// Mirror `percent` and `fraction` both set.
    #[error("percent and fraction are mutually exclusive")]
    PercentAndFraction,
    /// A timeout that is not a Gateway API duration.
    #[error("invalid duration {0:?}")]
    BadDuration(String),
    /// A negative retry `attempts`.
    #[error("invalid attempts {0}")]
    BadAttempts(i64),
    /// `backendRequest` longer than a non-zero `request` timeout.
    #[error("backendRequest timeout cannot be longer than request timeout")]
    BackendTimeoutTooLong,
}
