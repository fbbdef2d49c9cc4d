//! Shared helpers for the appnet bench binaries.
