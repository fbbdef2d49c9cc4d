//! Certificate rotation (being written).
