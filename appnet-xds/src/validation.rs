//! Phase 2 of decoding: what can be wrong with a well-formed message, and
//! the small checks every conversion shares.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A field that failed validation, and why: the error of every
/// wire → domain `TryFrom` in this crate.
///
/// `field` is a path from the message being converted, in protobuf field
/// names, e.g. `workload.addresses[1]` or `services["default/web"][0].target_port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {violation}")]
pub struct ValidationError {
    /// Path to the offending field.
    pub field: String,
    /// What is wrong with it.
    pub violation: Violation,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A required string or list is empty.
    #[error("must not be empty")]
    Empty,
    /// A required message or oneof is not set.
    #[error("must be set")]
    Missing,
    /// An IP address field holds neither 4 nor 16 bytes.
    #[error("{0} bytes is not an IPv4 or IPv6 address")]
    IpLength(usize),
    /// A CIDR prefix length exceeds the address width.
    #[error("prefix length {length} is longer than the {max}-bit address")]
    PrefixLength {
        /// The prefix length given.
        length: u32,
        /// The address width in bits (32 or 128).
        max: u8,
    },
    /// A port number above 65535.
    #[error("{0} is not a port number (0..=65535)")]
    Port(u32),
    /// An enum field holds a number this schema does not define.
    #[error("{0} is not a known enum value")]
    UnknownEnum(i32),
    /// An enum field holds its "unspecified" value where a real one is needed.
    #[error("must not be unspecified")]
    Unspecified,
    /// A string is not `namespace/hostname` with both parts non-empty.
    #[error("{0:?} is not of the form namespace/hostname")]
    NotNamespacedHostname(String),
}

impl ValidationError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, violation: Violation) -> Self {
        Self {
            field: field.into(),
            violation,
        }
    }

    /// Prefixes the path with the field that contains it: `uid` under
    /// `workload` becomes `workload.uid`.
    #[must_use]
    pub(crate) fn under(mut self, parent: impl fmt::Display) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// Result of a wire → domain conversion.
pub(crate) type Validated<T> = Result<T, ValidationError>;

/// Fails with [`Violation::Empty`] at `field` when `value` is empty.
pub(crate) fn non_empty(field: &str, value: &str) -> Validated<()> {
    if value.is_empty() {
        return Err(ValidationError::new(field, Violation::Empty));
    }
    Ok(())
}

/// Reads a 4- or 16-byte IP address.
pub(crate) fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr, Violation> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return Ok(IpAddr::V6(Ipv6Addr::from(v6)));
    }
    Err(Violation::IpLength(bytes.len()))
}

/// Writes an IP address as 4 or 16 bytes.
pub(crate) fn ip_to_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Reads a port number carried as `uint32`.
pub(crate) fn port(field: impl Into<String>, value: u32) -> Validated<u16> {
    u16::try_from(value).map_err(|_| ValidationError::new(field, Violation::Port(value)))
}

/// Reads ports from a repeated `uint32` field.
pub(crate) fn ports(field: &str, values: &[u32]) -> Validated<Vec<u16>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            u16::try_from(p)
                .map_err(|_| ValidationError::new(format!("{field}[{i}]"), Violation::Port(p)))
        })
        .collect()
}

/// Reads an enum carried as `int32` into its generated Rust enum.
pub(crate) fn enumeration<E>(field: &str, value: i32) -> Validated<E>
where
    E: TryFrom<i32, Error = prost::UnknownEnumValue>,
{
    E::try_from(value).map_err(|e| ValidationError::new(field, Violation::UnknownEnum(e.0)))
}

/// Converts each element of a repeated message field, naming the index of
/// the first bad one.
pub(crate) fn each<W, D>(
    field: &str,
    items: impl IntoIterator<Item = W>,
    convert: impl Fn(W) -> Validated<D>,
) -> Validated<Vec<D>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| convert(item).map_err(|e| e.under(format_args!("{field}[{i}]"))))
        .collect()
}

/// Converts an optional sub-message, naming it on error.
pub(crate) fn optional<W, D>(
    field: &str,
    item: Option<W>,
    convert: impl FnOnce(W) -> Validated<D>,
) -> Validated<Option<D>> {
    item.map(|w| convert(w).map_err(|e| e.under(field)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_nest_outward() {
        let e = ValidationError::new("uid", Violation::Empty).under("workload");
        assert_eq!(e.field, "workload.uid");
        assert_eq!(e.to_string(), "workload.uid: must not be empty");
        let e = ValidationError::new("", Violation::Missing).under("waypoint");
        assert_eq!(e.field, "waypoint");
    }

    #[test]
    fn ip_lengths() {
        assert_eq!(
            ip_from_bytes(&[10, 0, 0, 1]),
            Ok("10.0.0.1".parse().unwrap())
        );
        assert!(ip_from_bytes(&[0; 16]).unwrap().is_ipv6());
        assert_eq!(ip_from_bytes(&[1; 5]), Err(Violation::IpLength(5)));
        assert_eq!(ip_from_bytes(&[]), Err(Violation::IpLength(0)));
        assert_eq!(
            Violation::IpLength(5).to_string(),
            "5 bytes is not an IPv4 or IPv6 address"
        );
    }

    #[test]
    fn port_bounds() {
        assert_eq!(port("p", 65535), Ok(65535));
        assert_eq!(
            port("p", 65536),
            Err(ValidationError::new("p", Violation::Port(65536)))
        );
        assert_eq!(ports("ps", &[1, 70000]).unwrap_err().field, "ps[1]");
    }
}
