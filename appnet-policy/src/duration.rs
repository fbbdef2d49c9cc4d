//! Duration strings as Kubernetes resources write them.
//!
//! Istio fields (`fixedDelay: 5s`) take Go's `time.ParseDuration` syntax
//! without a sign: one or more decimal numbers, each with an optional
//! fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), or a bare `0`.
//! Gateway API fields (`timeouts.request: 10s`) take the stricter GEP-2257
//! form: one to four groups of 1–5 digits, each followed by `h`, `m`, `s` or
//! `ms`.

use std::time::Duration;

/// Parses Go duration syntax without a sign; `None` on any malformed,
/// negative or overflowing input.
pub(crate) fn parse_go(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, next) = after.split_at(unit_len);
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        total = total.checked_add(whole.checked_mul(nanos_per)?)?;
        // The fraction, to nanosecond precision (extra digits truncated).
        let mut scale = nanos_per;
        for d in frac.bytes() {
            if scale < 10 {
                break;
            }
            scale /= 10;
            total = total.checked_add(u128::from(d - b'0') * scale)?;
        }
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Parses a GEP-2257 Gateway API duration (`1h30m`, `500ms`, `0s`).
pub(crate) fn parse_gateway(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut groups = 0;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=5).contains(&n) {
            return None;
        }
        let value: u64 = rest[..n].parse().ok()?;
        let after = &rest[n..];
        let (unit, next) = if let Some(a) = after.strip_prefix("ms") {
            (Duration::from_millis(value), a)
        } else if let Some(a) = after.strip_prefix('h') {
            (Duration::from_secs(value * 3600), a)
        } else if let Some(a) = after.strip_prefix('m') {
            (Duration::from_secs(value * 60), a)
        } else if let Some(a) = after.strip_prefix('s') {
            (Duration::from_secs(value), a)
        } else {
            return None;
        };
        total += unit;
        groups += 1;
        rest = next;
    }
    (1..=4).contains(&groups).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_go("1.5s"), Some(ms(1500)));
        assert_eq!(parse_go("100ms"), Some(ms(100)));
        assert_eq!(parse_go("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go(".5s"), Some(ms(500)));
        assert_eq!(parse_go("2us"), Some(Duration::from_micros(2)));
        assert_eq!(parse_go("3µs"), Some(Duration::from_micros(3)));
        assert_eq!(parse_go("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_go("0"), Some(Duration::ZERO));
        assert_eq!(parse_go("1.0000000001s"), Some(Duration::from_secs(1)));
        for bad in [
            "",
            "5",
            "-5s",
            "+5s",
            "5x",
            "s",
            ".s",
            "5s5",
            "1e3s",
            "99999999999999999999999h",
        ] {
            assert_eq!(parse_go(bad), None, "{bad}");
        }
    }

    #[test]
    fn gateway_syntax() {
        assert_eq!(parse_gateway("10s"), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_gateway("1h2m3s4ms"),
            Some(Duration::from_millis(3_723_004))
        );
        assert_eq!(parse_gateway("0s"), Some(Duration::ZERO));
        for bad in ["", "1.5s", "100000s", "1h1h1h1h1h", "5", "5us", "s"] {
            assert_eq!(parse_gateway(bad), None, "{bad}");
        }
    }
}
