//! Wall-clock helpers: unix milliseconds in the store, RFC 3339 (UTC) in machine output,
//! `13:06 UTC` on cards, and durations. Calendar arithmetic is chrono's and duration
//! parsing humantime's; this module only fixes the formats. Imports nothing from the crate.

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch, now.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2026-11-22T14:00:00Z` for a unix time in milliseconds (JSON, `show`, `history`).
pub fn rfc3339(ms: i64) -> String {
    utc(ms).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `14:00 UTC` for a unix time in milliseconds: the one way cards show a time.
pub fn hhmm(ms: i64) -> String {
    utc(ms).format("%H:%M UTC").to_string()
}

/// `14:00 UTC` when `ms` falls on the same UTC day as `reference`, else
/// `Nov 24 14:00 UTC`: a time a day or more away never reads as today's.
pub fn hhmm_from(ms: i64, reference: i64) -> String {
    let (t, r) = (utc(ms), utc(reference));
    if t.date_naive() == r.date_naive() {
        hhmm(ms)
    } else {
        day_hhmm(ms)
    }
}

/// `Nov 24 14:00 UTC`: a time with its day, at minute resolution (a status message).
pub fn day_hhmm(ms: i64) -> String {
    utc(ms).format("%b %-d %H:%M UTC").to_string()
}

/// Parses an RFC 3339 time (`2026-11-22T14:00:00Z`, with an offset or fractional seconds)
/// or plain unix seconds into unix milliseconds. Impossible dates (`2026-02-31`) are
/// refused, not rolled over.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Parses a duration like `90s`, `10m`, `24h`, `7d`, `1h30m`, `1h 30m` (humantime's
/// syntax; a bare number is seconds) into milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000).filter(|ms| *ms >= 0);
    }
    let d = humantime::parse_duration(s).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// One compact duration format everywhere: `45s`, `10m`, `1h30m`, `2d3h`, `850ms` (the
/// two largest units; what `parse_duration` reads back).
pub fn human_duration(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", human_duration(ms.saturating_neg()));
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut out = String::new();
    let mut rest = s;
    let mut parts = 0;
    for (size, name) in units {
        if rest >= size && parts < 2 {
            out.push_str(&format!("{}{name}", rest / size));
            rest %= size;
            parts += 1;
        } else if parts > 0 {
            parts = 2; // only adjacent units: `1d5s` reads as noise
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = parse_instant("2026-11-22T14:00:00Z").expect("parses");
        assert_eq!(rfc3339(ms), "2026-11-22T14:00:00Z");
        assert_eq!(parse_instant("2026-11-22T15:00:00+01:00"), Some(ms));
        assert_eq!(parse_instant("1790000000"), Some(1_790_000_000_000));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(hhmm(ms), "14:00 UTC");
        assert_eq!(hhmm_from(ms, ms - 3_600_000), "14:00 UTC");
        assert_eq!(hhmm_from(ms, ms - 86_400_000), "Nov 22 14:00 UTC");
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn impossible_dates_are_refused_not_rolled_over() {
        assert_eq!(parse_instant("2026-02-31T10:00:00Z"), None);
        assert_eq!(parse_instant("2026-13-01T10:00:00Z"), None);
        assert_eq!(parse_instant("2026-11-22T24:00:00Z"), None);
        assert!(parse_instant("2028-02-29T10:00:00Z").is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(86_400_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("1h 30m"), Some(5_400_000));
        assert_eq!(parse_duration("45"), Some(45_000));
        assert_eq!(parse_duration("90d"), Some(90 * 86_400_000));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(human_duration(5_400_000), "1h30m");
        assert_eq!(human_duration(86_400_000), "1d");
        assert_eq!(human_duration(90 * 86_400_000), "90d");
        assert_eq!(human_duration(45_000), "45s");
        assert_eq!(human_duration(850), "850ms");
        assert_eq!(human_duration(86_400_000 + 5_000), "1d");
        for ms in [45_000, 600_000, 5_400_000, 86_400_000, 93_600_000] {
            assert_eq!(parse_duration(&human_duration(ms)), Some(ms));
        }
    }
}
