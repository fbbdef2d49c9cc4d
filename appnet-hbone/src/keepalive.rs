//! HTTP/2 PING keepalive, shared by client and server connections.

use h2::{Ping, PingPong};

use crate::config::Keepalive;

/// Pings every `interval`; returns when a PONG does not come back within
/// `timeout` (or the connection is gone). Never returns when keepalive is
/// off. The connection must be polled meanwhile for PONGs to arrive.
pub(crate) async fn keepalive(ping_pong: Option<PingPong>, config: Option<Keepalive>) {
    let (Some(mut ping_pong), Some(config)) = (ping_pong, config) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(config.interval).await;
        match tokio::time::timeout(config.timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
