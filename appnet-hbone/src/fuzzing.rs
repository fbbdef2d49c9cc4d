//! Fuzz entry point for the HBONE wire parsers (re-exported as
//! `appnet_hbone::fuzzing`). Not part of the stable API.

use crate::proxy_protocol::ProxyHeader;
use crate::wire::{Authority, Baggage, TraceParent, forwarded_for, parse_forwarded_for};

/// The first byte picks a parser — `:authority`, `baggage`, `traceparent`,
/// `Forwarded`, or a PROXY v2 header — and the rest is its input. Whatever
/// parses must print back to a value that parses equal (for PROXY v2:
/// encode to bytes that parse to the same header and length); nothing may
/// panic.
pub fn wire_parsers(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 5 {
        0 => {
            if let Ok(a) = text.parse::<Authority>() {
                assert_eq!(a.to_string().parse::<Authority>().ok(), Some(a));
            }
        }
        1 => {
            if let Ok(b) = text.parse::<Baggage>() {
                assert_eq!(b.encode().parse::<Baggage>().ok(), Some(b));
            }
        }
        2 => {
            if let Ok(t) = text.parse::<TraceParent>() {
                assert_eq!(t.to_string().parse::<TraceParent>().ok(), Some(t));
            }
        }
        3 => {
            if let Ok(addr) = parse_forwarded_for(&text) {
                assert_eq!(parse_forwarded_for(&forwarded_for(addr)).ok(), Some(addr));
            }
        }
        _ => {
            if let Ok((Some(h), _)) = ProxyHeader::parse(rest) {
                let bytes = h
                    .encode()
                    .unwrap_or_else(|e| panic!("a parsed header must encode: {e}"));
                let (again, used) = ProxyHeader::parse(&bytes)
                    .unwrap_or_else(|e| panic!("an encoded header must parse: {e}"));
                assert_eq!(again.as_ref(), Some(&h));
                assert_eq!(used, bytes.len());
            }
        }
    }
}
