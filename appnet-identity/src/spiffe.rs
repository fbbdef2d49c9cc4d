//! SPIFFE IDs and trust domains, parsed to the letter of the SPIFFE-ID
//! standard.
//!
//! # Case
//! The standard makes the scheme and the trust domain lower case. appnet does
//! not fold case: an upper-case letter in the scheme is [`SpiffeIdError::WrongScheme`]
//! and one in the trust domain is [`SpiffeIdError::TrustDomainChar`], the same
//! choice the reference implementation (go-spiffe) makes. Folding would let two
//! spellings name one identity in logs and policies while comparing unequal as
//! strings elsewhere. What appnet emits is therefore always lower case.

use std::fmt;
use std::str::FromStr;

/// The URI scheme and authority separator every SPIFFE ID starts with.
pub const SPIFFE_SCHEME: &str = "spiffe://";
/// The longest trust domain name the standard allows, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// The longest SPIFFE ID appnet accepts, in bytes (the standard's URI limit).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Why a string is not a SPIFFE ID or trust domain. Positions are byte
/// offsets into the string that was parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The input was empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The input is longer than [`MAX_SPIFFE_ID_LEN`] bytes.
    #[error("SPIFFE ID is {len} bytes long; at most {MAX_SPIFFE_ID_LEN} are allowed")]
    TooLong {
        /// The length of the input.
        len: usize,
    },
    /// The input does not start with `spiffe://` (lower case).
    #[error("SPIFFE ID must start with \"spiffe://\" in lower case")]
    WrongScheme,
    /// Nothing stands between `spiffe://` and the path.
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`] bytes.
    #[error("trust domain is {len} bytes long; at most {MAX_TRUST_DOMAIN_LEN} are allowed")]
    TrustDomainTooLong {
        /// The length of the trust domain.
        len: usize,
    },
    /// The trust domain carries a port (`:`).
    #[error("trust domain must not carry a port (':' at byte {at})")]
    Port {
        /// Where the `:` is.
        at: usize,
    },
    /// The trust domain carries user info (`@`).
    #[error("trust domain must not carry user info ('@' at byte {at})")]
    UserInfo {
        /// Where the `@` is.
        at: usize,
    },
    /// A `%` escape: SPIFFE IDs are never percent-encoded.
    #[error("percent-encoding is not allowed ('%' at byte {at})")]
    PercentEncoded {
        /// Where the `%` is.
        at: usize,
    },
    /// A character outside `[a-z0-9._-]` in the trust domain.
    #[error("trust domain may only contain [a-z0-9._-]; found {ch:?} at byte {at}")]
    TrustDomainChar {
        /// The offending character.
        ch: char,
        /// Where it is.
        at: usize,
    },
    /// A `?` query component.
    #[error("SPIFFE ID must not have a query ('?' at byte {at})")]
    Query {
        /// Where the `?` is.
        at: usize,
    },
    /// A `#` fragment component.
    #[error("SPIFFE ID must not have a fragment ('#' at byte {at})")]
    Fragment {
        /// Where the `#` is.
        at: usize,
    },
    /// Two slashes in a row: an empty path segment.
    #[error("path has an empty segment at byte {at}")]
    EmptySegment {
        /// Where the empty segment starts.
        at: usize,
    },
    /// A `.` or `..` path segment.
    #[error("path segment {segment:?} at byte {at} is a relative path modifier")]
    DotSegment {
        /// `.` or `..`.
        segment: &'static str,
        /// Where the segment starts.
        at: usize,
    },
    /// The path ends with `/`.
    #[error("path must not end with '/'")]
    TrailingSlash,
    /// A character outside `[a-zA-Z0-9._-]` in a path segment.
    #[error("path segments may only contain [a-zA-Z0-9._-]; found {ch:?} at byte {at}")]
    PathChar {
        /// The offending character.
        ch: char,
        /// Where it is.
        at: usize,
    },
    /// A path was given that does not start with `/`.
    #[error("path must be empty or start with '/'")]
    PathNotAbsolute,
}

/// A SPIFFE trust domain name such as `cluster.local`.
///
/// `Display` prints the bare name; `FromStr` parses the bare name (not a
/// `spiffe://` URI: use [`SpiffeId`] for that).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name.
    ///
    /// # Errors
    /// A [`SpiffeIdError`] naming the first rule the name breaks.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        check_trust_domain(name, 0)?;
        Ok(Self(name.to_owned()))
    }

    /// The name, e.g. `cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>` (no path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the trust-domain rules on `td`, which starts at byte `base` of the
/// original input (for error positions).
fn check_trust_domain(td: &str, base: usize) -> Result<(), SpiffeIdError> {
    for (i, ch) in td.char_indices() {
        let at = base + i;
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            ':' => return Err(SpiffeIdError::Port { at }),
            '@' => return Err(SpiffeIdError::UserInfo { at }),
            '%' => return Err(SpiffeIdError::PercentEncoded { at }),
            '?' => return Err(SpiffeIdError::Query { at }),
            '#' => return Err(SpiffeIdError::Fragment { at }),
            _ => return Err(SpiffeIdError::TrustDomainChar { ch, at }),
        }
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: td.len() });
    }
    Ok(())
}

/// Checks the path rules on `path` (empty, or starting with `/`), which starts
/// at byte `base` of the original input.
fn check_path(path: &str, base: usize) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err(SpiffeIdError::PathNotAbsolute);
    }
    let mut seg_start = 1;
    let bytes = path.as_bytes();
    for (i, ch) in path.char_indices().skip(1) {
        let at = base + i;
        match ch {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
            '/' => {
                check_segment(&path[seg_start..i], base + seg_start)?;
                seg_start = i + 1;
            }
            '%' => return Err(SpiffeIdError::PercentEncoded { at }),
            '?' => return Err(SpiffeIdError::Query { at }),
            '#' => return Err(SpiffeIdError::Fragment { at }),
            _ => return Err(SpiffeIdError::PathChar { ch, at }),
        }
    }
    if bytes.last() == Some(&b'/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    check_segment(&path[seg_start..], base + seg_start)
}

fn check_segment(seg: &str, at: usize) -> Result<(), SpiffeIdError> {
    match seg {
        "" => Err(SpiffeIdError::EmptySegment { at }),
        "." => Err(SpiffeIdError::DotSegment { segment: ".", at }),
        ".." => Err(SpiffeIdError::DotSegment { segment: "..", at }),
        _ => Ok(()),
    }
}

/// A SPIFFE ID: `spiffe://<trust-domain><path>`.
///
/// `FromStr` enforces every rule of the SPIFFE-ID standard and `Display`
/// prints the same string back. Istio names a workload
/// `spiffe://<td>/ns/<namespace>/sa/<service-account>`: see
/// [`SpiffeId::istio`], [`SpiffeId::ns`] and [`SpiffeId::sa`].
///
/// ```
/// use appnet_identity::SpiffeId;
/// let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/web".parse().unwrap();
/// assert_eq!(id.trust_domain().as_str(), "cluster.local");
/// assert_eq!(id.path(), "/ns/default/sa/web");
/// assert_eq!((id.ns(), id.sa()), (Some("default"), Some("web")));
/// assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/web");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty, or `/seg(/seg)*`.
    path: String,
}

impl SpiffeId {
    /// Parses a SPIFFE ID.
    ///
    /// # Errors
    /// A [`SpiffeIdError`] naming the first rule the string breaks.
    pub fn new(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: s.len() });
        }
        let rest = s
            .strip_prefix(SPIFFE_SCHEME)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let base = SPIFFE_SCHEME.len();
        let td_end = rest.find('/').unwrap_or(rest.len());
        let (td, path) = rest.split_at(td_end);
        if td.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        check_trust_domain(td, base)?;
        check_path(path, base + td_end)?;
        Ok(Self {
            trust_domain: TrustDomain(td.to_owned()),
            path: path.to_owned(),
        })
    }

    /// Builds an ID from a trust domain and a path (empty, or starting with
    /// `/`).
    ///
    /// # Errors
    /// A [`SpiffeIdError`] if the path breaks a path rule.
    pub fn from_parts(trust_domain: TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        check_path(path, 0)?;
        let id = Self {
            trust_domain,
            path: path.to_owned(),
        };
        let len = SPIFFE_SCHEME.len() + id.trust_domain.0.len() + id.path.len();
        if len > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong { len });
        }
        Ok(id)
    }

    /// The Istio form `spiffe://<td>/ns/<namespace>/sa/<service_account>`.
    ///
    /// # Errors
    /// A [`SpiffeIdError`] if the namespace or service account is not a valid
    /// path segment.
    pub fn istio(
        trust_domain: TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        // Each part must be exactly one segment: a `/` inside would yield a
        // valid SPIFFE ID that is not Istio's form.
        let ns_at = "/ns/".len();
        let sa_at = ns_at + namespace.len() + "/sa/".len();
        for (part, base) in [(namespace, ns_at), (service_account, sa_at)] {
            if let Some(i) = part.find('/') {
                return Err(SpiffeIdError::PathChar {
                    ch: '/',
                    at: base + i,
                });
            }
        }
        Self::from_parts(
            trust_domain,
            &format!("/ns/{namespace}/sa/{service_account}"),
        )
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, empty or starting with `/` (e.g. `/ns/default/sa/web`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the path is empty (the ID names the trust domain itself).
    pub fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// The path's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').skip(1)
    }

    fn istio_parts(&self) -> Option<(&str, &str)> {
        let mut it = self.segments();
        match (it.next(), it.next(), it.next(), it.next(), it.next()) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }

    /// The namespace, if the ID has Istio's `/ns/<ns>/sa/<sa>` form.
    pub fn ns(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The service account, if the ID has Istio's `/ns/<ns>/sa/<sa>` form.
    pub fn sa(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    /// The ID without its `spiffe://` prefix, as Istio's authorization
    /// principals are written (`cluster.local/ns/default/sa/web`).
    pub fn principal(&self) -> String {
        format!("{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SPIFFE_SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for TrustDomain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TrustDomain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
