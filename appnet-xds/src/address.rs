//! The WDS resource `istio.workload.Address`: a workload or a service.

use std::borrow::Cow;

use crate::Resource;
use crate::service::Service;
use crate::validation::{Validated, ValidationError, Violation};
use crate::wire::istio::workload as pb;
use crate::workload::Workload;

/// One WDS resource, type URL `type.googleapis.com/istio.workload.Address`.
///
/// Its xDS name is the workload's `uid`, or `namespace/hostname` for a
/// service, as Istio names them.
// A workload is much larger than a service; resources are moved into maps
// one at a time, so the size difference costs less than a box per workload.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    /// A single endpoint.
    Workload(Workload),
    /// A group of endpoints behind a hostname and virtual IPs.
    Service(Service),
}

impl From<Workload> for Address {
    fn from(w: Workload) -> Self {
        Self::Workload(w)
    }
}

impl From<Service> for Address {
    fn from(s: Service) -> Self {
        Self::Service(s)
    }
}

impl TryFrom<pb::Address> for Address {
    type Error = ValidationError;

    fn try_from(a: pb::Address) -> Validated<Self> {
        match a.r#type {
            Some(pb::address::Type::Workload(w)) => Ok(Self::Workload(
                Workload::try_from(w).map_err(|e| e.under("workload"))?,
            )),
            Some(pb::address::Type::Service(s)) => Ok(Self::Service(
                Service::try_from(s).map_err(|e| e.under("service"))?,
            )),
            None => Err(ValidationError::new("type", Violation::Missing)),
        }
    }
}

impl From<&Address> for pb::Address {
    fn from(a: &Address) -> Self {
        Self {
            r#type: Some(match a {
                Address::Workload(w) => pb::address::Type::Workload(w.into()),
                Address::Service(s) => pb::address::Type::Service(s.into()),
            }),
        }
    }
}

impl Resource for Address {
    type Wire = pb::Address;
    const TYPE_URL: &'static str = "type.googleapis.com/istio.workload.Address";

    fn name(&self) -> Cow<'_, str> {
        match self {
            Self::Workload(w) => Cow::Borrowed(&w.uid),
            Self::Service(s) => Cow::Owned(format!("{}/{}", s.namespace, s.hostname)),
        }
    }

    fn wire_name(wire: &pb::Address) -> Option<String> {
        match wire.r#type.as_ref()? {
            pb::address::Type::Workload(w) if !w.uid.is_empty() => Some(w.uid.clone()),
            pb::address::Type::Service(s) if !s.namespace.is_empty() || !s.hostname.is_empty() => {
                Some(format!("{}/{}", s.namespace, s.hostname))
            }
            _ => None,
        }
    }

    fn from_wire(wire: pb::Address) -> Validated<Self> {
        Self::try_from(wire)
    }

    fn to_wire(&self) -> pb::Address {
        self.into()
    }
}
