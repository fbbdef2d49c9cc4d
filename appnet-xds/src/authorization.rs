//! The WDS resource `istio.security.Authorization`: an authorization policy
//! in the form a node proxy enforces at L4.

use std::borrow::Cow;

use ipnet::IpNet;

use crate::Resource;
use crate::validation::{
    Validated, ValidationError, Violation, each, enumeration, ip_from_bytes, ip_to_bytes,
    non_empty, ports,
};
use crate::wire::istio::security as pb;

pub use pb::{Action as AuthorizationAction, Scope as AuthorizationScope};

/// An authorization policy, type URL
/// `type.googleapis.com/istio.security.Authorization`, named
/// `namespace/name`.
///
/// Kept close to the wire: the policy matches when any [`Rule`] does; a rule
/// when all its [`Clause`]s do; a clause when any of its [`Match`]es does.
/// Validation checks that name and namespace are set, enums are known,
/// CIDRs are 4 or 16 bytes with a prefix no longer than the address, ports
/// fit 16 bits and every string match says what kind it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authorization {
    /// Policy name (never empty once validated).
    pub name: String,
    /// Policy namespace (never empty once validated).
    pub namespace: String,
    /// Which workloads it applies to.
    pub scope: AuthorizationScope,
    /// What a match does.
    pub action: AuthorizationAction,
    /// Alternatives: the policy matches when any rule matches.
    pub rules: Vec<Rule>,
}

/// A rule: matches when every clause matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Rule {
    /// Clauses that must all match.
    pub clauses: Vec<Clause>,
}

/// A clause: matches when any of its matches does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Clause {
    /// Alternatives.
    pub matches: Vec<Match>,
}

/// Conditions on a connection. Within a field the values are alternatives;
/// every non-empty field must be satisfied and no `not_` field may match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Match {
    /// Source namespace.
    pub namespaces: Vec<StringMatch>,
    /// Source namespace must not match.
    pub not_namespaces: Vec<StringMatch>,
    /// Source principal (SPIFFE ID without `spiffe://`).
    pub principals: Vec<StringMatch>,
    /// Source principal must not match.
    pub not_principals: Vec<StringMatch>,
    /// Source address ranges.
    pub source_ips: Vec<IpNet>,
    /// Source address must not be in these.
    pub not_source_ips: Vec<IpNet>,
    /// Destination address ranges.
    pub destination_ips: Vec<IpNet>,
    /// Destination address must not be in these.
    pub not_destination_ips: Vec<IpNet>,
    /// Destination ports.
    pub destination_ports: Vec<u16>,
    /// Destination port must not be one of these.
    pub not_destination_ports: Vec<u16>,
    /// Source service account.
    pub service_accounts: Vec<ServiceAccountMatch>,
    /// Source service account must not be one of these.
    pub not_service_accounts: Vec<ServiceAccountMatch>,
}

/// A string condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StringMatch {
    /// Equal to this.
    Exact(String),
    /// Starts with this.
    Prefix(String),
    /// Ends with this.
    Suffix(String),
    /// Present and non-empty.
    Presence,
}

/// A service account in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccountMatch {
    /// Namespace (never empty once validated).
    pub namespace: String,
    /// Service account name (never empty once validated).
    pub service_account: String,
}

impl TryFrom<pb::Authorization> for Authorization {
    type Error = ValidationError;

    fn try_from(a: pb::Authorization) -> Validated<Self> {
        non_empty("name", &a.name)?;
        non_empty("namespace", &a.namespace)?;
        Ok(Self {
            scope: enumeration("scope", a.scope)?,
            action: enumeration("action", a.action)?,
            rules: each("rules", a.rules, |r| {
                Ok(Rule {
                    clauses: each("clauses", r.clauses, |c| {
                        Ok(Clause {
                            matches: each("matches", c.matches, Match::try_from)?,
                        })
                    })?,
                })
            })?,
            name: a.name,
            namespace: a.namespace,
        })
    }
}

impl From<&Authorization> for pb::Authorization {
    fn from(a: &Authorization) -> Self {
        Self {
            name: a.name.clone(),
            namespace: a.namespace.clone(),
            scope: a.scope.into(),
            action: a.action.into(),
            rules: a
                .rules
                .iter()
                .map(|r| pb::Rule {
                    clauses: r
                        .clauses
                        .iter()
                        .map(|c| pb::Clause {
                            matches: c.matches.iter().map(Into::into).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::Match> for Match {
    type Error = ValidationError;

    fn try_from(m: pb::Match) -> Validated<Self> {
        Ok(Self {
            namespaces: each("namespaces", m.namespaces, StringMatch::try_from)?,
            not_namespaces: each("not_namespaces", m.not_namespaces, StringMatch::try_from)?,
            principals: each("principals", m.principals, StringMatch::try_from)?,
            not_principals: each("not_principals", m.not_principals, StringMatch::try_from)?,
            source_ips: each("source_ips", m.source_ips, cidr)?,
            not_source_ips: each("not_source_ips", m.not_source_ips, cidr)?,
            destination_ips: each("destination_ips", m.destination_ips, cidr)?,
            not_destination_ips: each("not_destination_ips", m.not_destination_ips, cidr)?,
            destination_ports: ports("destination_ports", &m.destination_ports)?,
            not_destination_ports: ports("not_destination_ports", &m.not_destination_ports)?,
            service_accounts: each(
                "service_accounts",
                m.service_accounts,
                ServiceAccountMatch::try_from,
            )?,
            not_service_accounts: each(
                "not_service_accounts",
                m.not_service_accounts,
                ServiceAccountMatch::try_from,
            )?,
        })
    }
}

impl From<&Match> for pb::Match {
    fn from(m: &Match) -> Self {
        let strings = |v: &[StringMatch]| v.iter().map(Into::into).collect();
        let cidrs = |v: &[IpNet]| v.iter().map(cidr_to_wire).collect();
        let ports = |v: &[u16]| v.iter().map(|&p| u32::from(p)).collect();
        let accounts = |v: &[ServiceAccountMatch]| v.iter().map(Into::into).collect();
        Self {
            namespaces: strings(&m.namespaces),
            not_namespaces: strings(&m.not_namespaces),
            principals: strings(&m.principals),
            not_principals: strings(&m.not_principals),
            source_ips: cidrs(&m.source_ips),
            not_source_ips: cidrs(&m.not_source_ips),
            destination_ips: cidrs(&m.destination_ips),
            not_destination_ips: cidrs(&m.not_destination_ips),
            destination_ports: ports(&m.destination_ports),
            not_destination_ports: ports(&m.not_destination_ports),
            service_accounts: accounts(&m.service_accounts),
            not_service_accounts: accounts(&m.not_service_accounts),
        }
    }
}

/// Reads `Address { address, length }` as a CIDR. Host bits past the prefix
/// are kept as sent.
fn cidr(a: pb::Address) -> Validated<IpNet> {
    let ip = ip_from_bytes(&a.address).map_err(|v| ValidationError::new("address", v))?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    u8::try_from(a.length)
        .ok()
        .and_then(|len| IpNet::new(ip, len).ok())
        .ok_or_else(|| {
            ValidationError::new(
                "length",
                Violation::PrefixLength {
                    length: a.length,
                    max,
                },
            )
        })
}

fn cidr_to_wire(net: &IpNet) -> pb::Address {
    pb::Address {
        address: ip_to_bytes(net.addr()),
        length: u32::from(net.prefix_len()),
    }
}

impl TryFrom<pb::StringMatch> for StringMatch {
    type Error = ValidationError;

    fn try_from(s: pb::StringMatch) -> Validated<Self> {
        use pb::string_match::MatchType;
        match s.match_type {
            Some(MatchType::Exact(v)) => Ok(Self::Exact(v)),
            Some(MatchType::Prefix(v)) => Ok(Self::Prefix(v)),
            Some(MatchType::Suffix(v)) => Ok(Self::Suffix(v)),
            Some(MatchType::Presence(())) => Ok(Self::Presence),
            // An empty condition would silently widen or narrow the policy.
            None => Err(ValidationError::new("match_type", Violation::Missing)),
        }
    }
}

impl From<&StringMatch> for pb::StringMatch {
    fn from(s: &StringMatch) -> Self {
        use pb::string_match::MatchType;
        Self {
            match_type: Some(match s {
                StringMatch::Exact(v) => MatchType::Exact(v.clone()),
                StringMatch::Prefix(v) => MatchType::Prefix(v.clone()),
                StringMatch::Suffix(v) => MatchType::Suffix(v.clone()),
                StringMatch::Presence => MatchType::Presence(()),
            }),
        }
    }
}

impl TryFrom<pb::ServiceAccountMatch> for ServiceAccountMatch {
    type Error = ValidationError;

    fn try_from(s: pb::ServiceAccountMatch) -> Validated<Self> {
        non_empty("namespace", &s.namespace)?;
        non_empty("serviceAccount", &s.service_account)?;
        Ok(Self {
            namespace: s.namespace,
            service_account: s.service_account,
        })
    }
}

impl From<&ServiceAccountMatch> for pb::ServiceAccountMatch {
    fn from(s: &ServiceAccountMatch) -> Self {
        Self {
            namespace: s.namespace.clone(),
            service_account: s.service_account.clone(),
        }
    }
}

impl Resource for Authorization {
    type Wire = pb::Authorization;
    const TYPE_URL: &'static str = "type.googleapis.com/istio.security.Authorization";

    fn name(&self) -> Cow<'_, str> {
        Cow::Owned(format!("{}/{}", self.namespace, self.name))
    }

    fn wire_name(wire: &pb::Authorization) -> Option<String> {
        (!wire.name.is_empty() || !wire.namespace.is_empty())
            .then(|| format!("{}/{}", wire.namespace, wire.name))
    }

    fn from_wire(wire: pb::Authorization) -> Validated<Self> {
        Self::try_from(wire)
    }

    fn to_wire(&self) -> pb::Authorization {
        self.into()
    }
}
