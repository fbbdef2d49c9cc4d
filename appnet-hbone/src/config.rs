//! Flow control and limits, with Istio's defaults.

use std::time::Duration;

use crate::error::ConfigError;

const MIB: u32 = 1024 * 1024;
/// The largest HTTP/2 flow-control window (2^31 - 1).
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The HTTP/2 bounds of SETTINGS_MAX_FRAME_SIZE.
const FRAME_SIZE_RANGE: std::ops::RangeInclusive<u32> = 16_384..=16_777_215;

/// HTTP/2 flow control for data this side receives.
///
/// Every field is tunable; the defaults are Istio's (ztunnel's), kept
/// because they measured best or tied. `hbone_bench` (figure 1b in
/// benches/README.md, "hbone_bench") moves one stream's bulk data on
/// loopback, directly and through a node-proxy pair, with both sides set
/// alike:
/// - windows of 256 KiB / 1 MiB cost the proxy pair about a third of its
///   throughput, and 16 KiB frames cost 7–35 % (more frames, more wake-ups
///   per byte);
/// - 128 KiB frames, and 16 MiB / 64 MiB windows, came out within the
///   run-to-run noise of the defaults;
/// - loopback has almost no bandwidth-delay product, so it cannot reward
///   windows past about 1 MiB; a real network can (one stream moves at
///   most a window per round trip: 1 MiB at 10 ms is ~100 MB/s), which is
///   why the stream window stays at 4 MiB rather than the smallest one that
///   tied.
///
/// Windows are credit, not buffers: an idle tunnel costs the same memory
/// whatever they are. What they bound is what a peer can make this side
/// hold unread: `stream_window` per stream, `connection_window` per
/// connection.
///
/// Head-of-line: data a reader has not consumed holds connection window as
/// well as stream window, so `connection_window / stream_window` streams
/// whose readers stall (4 with the defaults) stop every other stream of
/// the connection until they read (figure 5 of the bench; one stalled
/// stream costs the others nothing). Raising `connection_window` tolerates
/// more slow readers per connection at the price of more unread data held;
/// lowering `stream_window` does too, at the price of long-distance
/// single-stream throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowControl {
    /// Initial per-stream receive window. Istio: 4 MiB.
    pub stream_window: u32,
    /// Connection-wide receive window. Istio: 16 MiB.
    pub connection_window: u32,
    /// Largest DATA frame this side accepts. Istio: 1 MiB.
    pub max_frame_size: u32,
}

impl Default for FlowControl {
    fn default() -> Self {
        Self {
            stream_window: 4 * MIB,
            connection_window: 16 * MIB,
            max_frame_size: MIB,
        }
    }
}

impl FlowControl {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.stream_window > MAX_WINDOW {
            return Err(ConfigError {
                field: "flow_control.stream_window",
                reason: "at most 2^31-1",
            });
        }
        if self.connection_window > MAX_WINDOW || self.connection_window < 65_535 {
            return Err(ConfigError {
                field: "flow_control.connection_window",
                reason: "between 65535 and 2^31-1",
            });
        }
        if !FRAME_SIZE_RANGE.contains(&self.max_frame_size) {
            return Err(ConfigError {
                field: "flow_control.max_frame_size",
                reason: "between 16384 and 16777215",
            });
        }
        Ok(())
    }
}

/// HTTP/2 PING keepalive: a PING every `interval`; no PONG within
/// `timeout` closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keepalive {
    /// Time between PINGs. Istio: 10 s.
    pub interval: Duration,
    /// How long to wait for the PONG. Istio: 20 s.
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
        }
    }
}

/// Settings of an [`HboneConnector`](crate::HboneConnector).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectorConfig {
    /// Receive windows and frame size.
    pub flow_control: FlowControl,
    /// PING keepalive; `None` disables it.
    pub keepalive: Option<Keepalive>,
    /// Most CONNECT streams on one pooled connection, whatever the peer
    /// allows. Istio: 100.
    pub max_streams_per_connection: u32,
    /// A pooled connection with no stream for this long is closed. Istio:
    /// 5 minutes.
    pub idle_timeout: Duration,
    /// Bound on TCP connect + TLS + HTTP/2 handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Largest response header block accepted. Default 16 KiB.
    pub max_header_list_size: u32,
    /// Bytes buffered per stream before writes wait. Default 1 MiB.
    pub max_send_buffer_size: usize,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            flow_control: FlowControl::default(),
            keepalive: Some(Keepalive::default()),
            max_streams_per_connection: 100,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_header_list_size: 16 * 1024,
            max_send_buffer_size: MIB as usize,
        }
    }
}

impl ConnectorConfig {
    /// Checks every value against what HTTP/2 allows.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.flow_control.validate()?;
        if self.max_streams_per_connection == 0 {
            return Err(ConfigError {
                field: "max_streams_per_connection",
                reason: "at least 1",
            });
        }
        if self.max_send_buffer_size == 0 || self.max_send_buffer_size > MAX_WINDOW as usize {
            return Err(ConfigError {
                field: "max_send_buffer_size",
                reason: "between 1 and 2^31-1",
            });
        }
        Ok(())
    }

    pub(crate) fn h2_builder(&self) -> h2::client::Builder {
        let mut b = h2::client::Builder::new();
        b.initial_window_size(self.flow_control.stream_window)
            .initial_connection_window_size(self.flow_control.connection_window)
            .max_frame_size(self.flow_control.max_frame_size)
            .max_header_list_size(self.max_header_list_size)
            .max_send_buffer_size(self.max_send_buffer_size)
            .enable_push(false);
        b
    }
}

/// Settings of an [`HboneServer`](crate::HboneServer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Receive windows and frame size.
    pub flow_control: FlowControl,
    /// PING keepalive; `None` disables it.
    pub keepalive: Option<Keepalive>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection. Istio: 200.
    pub max_concurrent_streams: u32,
    /// Most connections served at once; more are closed on accept.
    /// Default 10 000.
    pub max_connections: usize,
    /// Bound on TLS + HTTP/2 handshake of an accepted socket. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest request header block accepted. Default 16 KiB.
    pub max_header_list_size: u32,
    /// Streams the client may reset before the server accepts them, before
    /// the connection is closed (rapid-reset protection). Default 20.
    pub max_pending_accept_reset_streams: usize,
    /// Streams this side may reset for the client's protocol errors before
    /// the connection is closed. Default 1024.
    pub max_local_error_reset_streams: usize,
    /// Bytes buffered per stream before writes wait. Default 1 MiB.
    pub max_send_buffer_size: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            flow_control: FlowControl::default(),
            keepalive: Some(Keepalive::default()),
            max_concurrent_streams: 200,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            max_header_list_size: 16 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_send_buffer_size: MIB as usize,
        }
    }
}

impl ServerConfig {
    /// Checks every value against what HTTP/2 allows.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.flow_control.validate()?;
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError {
                field: "max_concurrent_streams",
                reason: "at least 1",
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError {
                field: "max_connections",
                reason: "at least 1",
            });
        }
        if self.max_send_buffer_size == 0 || self.max_send_buffer_size > MAX_WINDOW as usize {
            return Err(ConfigError {
                field: "max_send_buffer_size",
                reason: "between 1 and 2^31-1",
            });
        }
        Ok(())
    }

    pub(crate) fn h2_builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.initial_window_size(self.flow_control.stream_window)
            .initial_connection_window_size(self.flow_control.connection_window)
            .max_frame_size(self.flow_control.max_frame_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_header_list_size(self.max_header_list_size)
            .max_pending_accept_reset_streams(self.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(Some(self.max_local_error_reset_streams))
            .max_send_buffer_size(self.max_send_buffer_size);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_istios_and_valid() {
        let c = ConnectorConfig::default();
        assert_eq!(c.flow_control.stream_window, 4 * MIB);
        assert_eq!(c.flow_control.connection_window, 16 * MIB);
        assert_eq!(c.flow_control.max_frame_size, MIB);
        assert_eq!(c.max_streams_per_connection, 100);
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(
            c.keepalive,
            Some(Keepalive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(20)
            })
        );
        assert_eq!(c.validate(), Ok(()));
        let s = ServerConfig::default();
        assert_eq!(s.max_concurrent_streams, 200);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let mut c = ConnectorConfig::default();
        c.flow_control.max_frame_size = 1024;
        assert_eq!(
            c.validate().unwrap_err().field,
            "flow_control.max_frame_size"
        );
        let mut c = ConnectorConfig::default();
        c.flow_control.stream_window = u32::MAX;
        assert_eq!(
            c.validate().unwrap_err().field,
            "flow_control.stream_window"
        );
        let c = ConnectorConfig {
            max_streams_per_connection: 0,
            ..ConnectorConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().field,
            "max_streams_per_connection"
        );
        let mut s = ServerConfig::default();
        s.flow_control.connection_window = 100;
        assert_eq!(
            s.validate().unwrap_err().field,
            "flow_control.connection_window"
        );
        let s = ServerConfig {
            max_connections: 0,
            ..ServerConfig::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "max_connections");
    }
}
