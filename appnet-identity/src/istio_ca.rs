//! The Istio CSR API (being written).
