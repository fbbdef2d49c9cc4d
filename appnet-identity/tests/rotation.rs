//! Certificate rotation through the public API: the pure schedule (unit
//! cases and properties) and the tokio driver on paused time against a
//! real CA.

#[path = "rotation/driver.rs"]
mod driver;
#[path = "rotation/handshake.rs"]
mod handshake;
#[path = "rotation/schedule.rs"]
mod schedule;
