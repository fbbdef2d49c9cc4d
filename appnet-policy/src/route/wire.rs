//! HTTPRoute YAML as users write it. Unknown fields are rejected everywhere
//! except `metadata` (Kubernetes object metadata carries many fields routing
//! does not read). Enumerations and numbers are read loosely (strings and
//! `i64`) so an unsupported value or an out-of-range number becomes a typed
//! error naming the field rather than a generic type error.

use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Document {
    // Checked from the raw value before the shape is read.
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    pub(super) metadata: Metadata,
    pub(super) spec: Option<Spec>,
    // Written by controllers; routing ignores it.
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Metadata {
    pub(super) name: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) creation_timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Spec {
    pub(super) parent_refs: Option<Vec<ParentRef>>,
    pub(super) hostnames: Option<Vec<String>>,
    pub(super) rules: Option<Vec<Rule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ParentRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    pub(super) section_name: Option<String>,
    pub(super) port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Rule {
    pub(super) name: Option<String>,
    pub(super) matches: Option<Vec<Match>>,
    pub(super) filters: Option<Vec<Filter>>,
    pub(super) backend_refs: Option<Vec<BackendRef>>,
    pub(super) timeouts: Option<Timeouts>,
    pub(super) retry: Option<Retry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Match {
    pub(super) path: Option<PathMatch>,
    pub(super) headers: Option<Vec<ValueMatch>>,
    pub(super) query_params: Option<Vec<ValueMatch>>,
    pub(super) method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PathMatch {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ValueMatch {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Filter {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) request_header_modifier: Option<HeaderFilter>,
    pub(super) response_header_modifier: Option<HeaderFilter>,
    pub(super) request_redirect: Option<Redirect>,
    pub(super) url_rewrite: Option<Rewrite>,
    pub(super) request_mirror: Option<Mirror>,
    pub(super) extension_ref: Option<IgnoredAny>,
    pub(super) cors: Option<IgnoredAny>,
    pub(super) external_auth: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderFilter {
    pub(super) set: Option<Vec<Header>>,
    pub(super) add: Option<Vec<Header>>,
    pub(super) remove: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Header {
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Redirect {
    pub(super) scheme: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) path: Option<PathModifier>,
    pub(super) port: Option<i64>,
    pub(super) status_code: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rewrite {
    pub(super) hostname: Option<String>,
    pub(super) path: Option<PathModifier>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PathModifier {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) replace_full_path: Option<String>,
    pub(super) replace_prefix_match: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Mirror {
    pub(super) backend_ref: ObjectRef,
    pub(super) percent: Option<i64>,
    pub(super) fraction: Option<WireFraction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WireFraction {
    pub(super) numerator: i64,
    pub(super) denominator: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) weight: Option<i64>,
    pub(super) filters: Option<Vec<Filter>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Timeouts {
    pub(super) request: Option<String>,
    pub(super) backend_request: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Retry {
    pub(super) codes: Option<Vec<i64>>,
    pub(super) attempts: Option<i64>,
    pub(super) backoff: Option<String>,
}
