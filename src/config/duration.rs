//! Human durations for flags and config files: `500ms`, `2s`, `1m`, `1h`,
//! `30d`, and sums of them such as `1m30s`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 500ms, 2s, 1m, 1m30s)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "" => return Err(err("missing unit (ms, s, m, h or d)")),
            _ => return Err(err("unknown unit (use ms, s, m, h or d)")),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration as whole milliseconds in JSON (`#[serde(with = ...)]`).
pub mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        use serde::Deserialize;
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A duration as people read it, in its largest whole units: `3d4h`,
/// `25m`, `40s` (at most two units, rounded down).
pub fn format_duration(d: Duration) -> String {
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut left = d.as_secs();
    let mut out = String::new();
    for (name, secs) in units {
        if left >= secs && out.matches(char::is_alphabetic).count() < 2 {
            out.push_str(&format!("{}{name}", left / secs));
            left %= secs;
        } else if !out.is_empty() {
            break;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// An optional duration as milliseconds (`null` when absent).
pub mod millis_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        use serde::Deserialize;
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_in_their_largest_units() {
        for (secs, text) in [
            (0, "0s"),
            (40, "40s"),
            (1500, "25m"),
            (3 * 86_400 + 4 * 3600 + 59, "3d4h"),
            (3600, "1h"),
            (86_400 + 60, "1d"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn table() {
        let ok: &[(&str, u64)] = &[
            ("500ms", 500),
            ("2s", 2000),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("30d", 2_592_000_000),
            ("1m30s", 90_000),
            (" 60s ", 60_000),
            ("0s", 0),
        ];
        for (input, ms) in ok {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(*ms)),
                "{input}"
            );
        }
        for bad in ["", "5", "s", "1x", "1.5s", "-1s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }
}
