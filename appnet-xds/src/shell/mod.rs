//! tonic shells around the protocol core: [`XdsServer`] and [`XdsClient`].

mod client;
mod per_type;
mod server;

pub use client::{
    Backoff, ClientClosed, ClientSnapshot, DEFAULT_CONNECTION_WINDOW, DEFAULT_STREAM_WINDOW,
    NoPerTypeService, ResourceHandler, XdsClient, XdsClientBuilder,
};
pub use server::{
    ClientStatus, DEFAULT_DEBOUNCE, DEFAULT_GRPC_MESSAGE_SIZE, XdsServer, XdsServerConfig,
};
