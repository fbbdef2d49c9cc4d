//! The two protocol variants and their message envelopes.

use super::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse};

/// Which xDS protocol variant a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// State of the world: every response carries a whole set of resources.
    Sotw,
    /// Incremental: responses carry changed resources and removed names.
    Delta,
}

/// A discovery request of either variant (client → server).
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A state-of-the-world request.
    Sotw(DiscoveryRequest),
    /// An incremental request.
    Delta(DeltaDiscoveryRequest),
}

/// A discovery response of either variant (server → client).
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// A state-of-the-world response.
    Sotw(DiscoveryResponse),
    /// An incremental response.
    Delta(DeltaDiscoveryResponse),
}

impl Request {
    /// The variant of this request.
    pub fn variant(&self) -> Variant {
        match self {
            Request::Sotw(_) => Variant::Sotw,
            Request::Delta(_) => Variant::Delta,
        }
    }

    /// The request's type URL.
    pub fn type_url(&self) -> &str {
        match self {
            Request::Sotw(r) => &r.type_url,
            Request::Delta(r) => &r.type_url,
        }
    }

    /// The nonce of the response this request answers (empty if none).
    pub fn response_nonce(&self) -> &str {
        match self {
            Request::Sotw(r) => &r.response_nonce,
            Request::Delta(r) => &r.response_nonce,
        }
    }

    /// Whether this request is a NACK (carries `error_detail`).
    pub fn is_nack(&self) -> bool {
        match self {
            Request::Sotw(r) => r.error_detail.is_some(),
            Request::Delta(r) => r.error_detail.is_some(),
        }
    }

    /// The state-of-the-world request, if this is one.
    pub fn into_sotw(self) -> Option<DiscoveryRequest> {
        match self {
            Request::Sotw(r) => Some(r),
            Request::Delta(_) => None,
        }
    }

    /// The incremental request, if this is one.
    pub fn into_delta(self) -> Option<DeltaDiscoveryRequest> {
        match self {
            Request::Delta(r) => Some(r),
            Request::Sotw(_) => None,
        }
    }
}

impl Response {
    /// The variant of this response.
    pub fn variant(&self) -> Variant {
        match self {
            Response::Sotw(_) => Variant::Sotw,
            Response::Delta(_) => Variant::Delta,
        }
    }

    /// The response's type URL.
    pub fn type_url(&self) -> &str {
        match self {
            Response::Sotw(r) => &r.type_url,
            Response::Delta(r) => &r.type_url,
        }
    }

    /// The response's nonce.
    pub fn nonce(&self) -> &str {
        match self {
            Response::Sotw(r) => &r.nonce,
            Response::Delta(r) => &r.nonce,
        }
    }

    /// The encoded size of the message in bytes.
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            Response::Sotw(r) => r.encoded_len(),
            Response::Delta(r) => r.encoded_len(),
        }
    }

    /// The state-of-the-world response, if this is one.
    pub fn into_sotw(self) -> Option<DiscoveryResponse> {
        match self {
            Response::Sotw(r) => Some(r),
            Response::Delta(_) => None,
        }
    }

    /// The incremental response, if this is one.
    pub fn into_delta(self) -> Option<DeltaDiscoveryResponse> {
        match self {
            Response::Delta(r) => Some(r),
            Response::Sotw(_) => None,
        }
    }
}

impl From<DiscoveryRequest> for Request {
    fn from(r: DiscoveryRequest) -> Self {
        Request::Sotw(r)
    }
}

impl From<DeltaDiscoveryRequest> for Request {
    fn from(r: DeltaDiscoveryRequest) -> Self {
        Request::Delta(r)
    }
}

impl From<DiscoveryResponse> for Response {
    fn from(r: DiscoveryResponse) -> Self {
        Response::Sotw(r)
    }
}

impl From<DeltaDiscoveryResponse> for Response {
    fn from(r: DeltaDiscoveryResponse) -> Self {
        Response::Delta(r)
    }
}
