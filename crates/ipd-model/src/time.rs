//! Timestamps and durations in the formats Google APIs use.

use chrono::{DateTime, FixedOffset, Utc};

pub type Timestamp = DateTime<Utc>;

/// Parses an RFC 3339 timestamp (0 to 9 fractional digits, any offset) into UTC.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    DateTime::<FixedOffset>::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses a `google-duration` (`"0s"`, `"0.183s"`, `"60.369159188s"`) into seconds.
pub fn parse_duration_secs(s: &str) -> Option<f64> {
    let n = s.trim().strip_suffix('s')?;
    let v: f64 = n.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// Formats a timestamp the way the report prints it (seconds precision, `Z`).
pub fn fmt(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("0s"), Some(0.0));
        assert_eq!(parse_duration_secs("60.369159188s"), Some(60.369159188));
        assert_eq!(parse_duration_secs("12"), None);
        assert_eq!(parse_duration_secs("-1s"), None);
        assert_eq!(parse_duration_secs("NaNs"), None);
    }

    #[test]
    fn timestamps_with_nanoseconds() {
        let t = parse_rfc3339("2025-10-21T05:06:03.212889263Z").unwrap();
        assert_eq!(fmt(&t), "2025-10-21T05:06:03.212889263Z");
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
