//! Instants as people type them (`10m`, `2026-12-01T10:00`, `@1764583200`) and as the CLI
//! prints them (UTC, no time-zone database: the same output on every machine).

use std::fmt;

/// Why a time did not parse: the text, and what forms are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a time ({}): use an age such as 30s, 10m, 2h, 1d or 1h30m, a UTC date \
             and time such as 2026-12-01, 2026-12-01T10:00 or 2026-12-01T10:00:00Z (an offset \
             like +01:00 also works), or @SECONDS since the epoch",
            self.input, self.reason
        )
    }
}

impl std::error::Error for TimeError {}

/// Parses an instant, in milliseconds since the Unix epoch. `now_ms` anchors ages (`10m` is
/// ten minutes before it).
///
/// # Errors
/// [`TimeError`] naming the accepted forms.
pub fn parse_instant(text: &str, now_ms: u64) -> Result<u64, TimeError> {
    let t = text.trim();
    let fail = |reason| TimeError {
        input: text.to_owned(),
        reason,
    };
    if t.is_empty() {
        return Err(fail("empty"));
    }
    if let Some(secs) = t.strip_prefix('@') {
        return parse_epoch(secs).ok_or_else(|| fail("not a number of seconds after @"));
    }
    if t.as_bytes().get(4) == Some(&b'-') {
        return parse_date_time(t).map_err(fail);
    }
    let age = parse_age(t).map_err(fail)?;
    Ok(now_ms.saturating_sub(age))
}

/// `1764583200` or `1764583200.250` seconds → milliseconds.
fn parse_epoch(text: &str) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let ms = frac_ms(frac);
    secs.checked_mul(1000)?.checked_add(ms)
}

/// Milliseconds of a fraction of a second's digits (`"25"` → 250).
fn frac_ms(digits: &str) -> u64 {
    let mut ms = 0u64;
    let mut scale = 100;
    for b in digits.bytes().take(3) {
        ms += u64::from(b - b'0') * scale;
        scale /= 10;
    }
    ms
}

/// `90s`, `10m`, `1h30m`, `2d`, `1w`, `500ms` → milliseconds.
fn parse_age(text: &str) -> Result<u64, &'static str> {
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected a number");
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err("a number needs a unit (ms, s, m, h, d or w)");
        }
        let (unit, next) = after.split_at(unit_len);
        let per: u64 = match unit {
            "ms" => 1,
            "s" | "sec" | "secs" => 1000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hr" | "hrs" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 604_800_000,
            _ => return Err("unknown unit (use ms, s, m, h, d or w)"),
        };
        let n: u64 = number.parse().map_err(|_| "number too large")?;
        total = n
            .checked_mul(per)
            .and_then(|v| total.checked_add(v))
            .ok_or("too long ago")?;
        rest = next;
    }
    Ok(total)
}

/// `2026-12-01`, `2026-12-01T10:00`, `2026-12-01 10:00:05.5`, with an optional `Z`,
/// `+01:00` or `-0500`. Without an offset the time is UTC.
fn parse_date_time(text: &str) -> Result<u64, &'static str> {
    let bytes = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let part = text.get(range).ok_or("incomplete date")?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expected digits");
        }
        part.parse().map_err(|_| "expected digits")
    };
    let year = num(0..4)?;
    if bytes.get(7) != Some(&b'-') {
        return Err("a date is YYYY-MM-DD");
    }
    let month = num(5..7)?;
    let day = num(8..10)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let mut rest = text.get(10..).unwrap_or_default();
    if let Some(time) = rest.strip_prefix(['T', 't', ' ']) {
        let hour = num2(time, 0)?;
        if time.as_bytes().get(2) != Some(&b':') {
            return Err("a time is HH:MM or HH:MM:SS");
        }
        let minute = num2(time, 3)?;
        let mut used = 5;
        let mut second = 0;
        let mut millis = 0;
        if time.as_bytes().get(5) == Some(&b':') {
            second = num2(time, 6)?;
            used = 8;
            if time.as_bytes().get(8) == Some(&b'.') {
                let digits = time
                    .get(9..)
                    .unwrap_or_default()
                    .bytes()
                    .take_while(u8::is_ascii_digit)
                    .count();
                if digits == 0 {
                    return Err("expected digits after the decimal point");
                }
                millis = i64::try_from(frac_ms(time.get(9..9 + digits).unwrap_or_default()))
                    .unwrap_or(0);
                used = 9 + digits;
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err("no such time of day");
        }
        ms += ((hour * 60 + minute) * 60 + second) * 1000 + millis;
        rest = time.get(used..).unwrap_or_default();
    }
    ms -= parse_offset(rest)? * 60_000;
    u64::try_from(ms).map_err(|_| "before 1970")
}

fn num2(text: &str, at: usize) -> Result<i64, &'static str> {
    let part = text.get(at..at + 2).ok_or("incomplete time")?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected two digits");
    }
    part.parse().map_err(|_| "expected two digits")
}

/// `""`/`Z` → 0; `+01:00`, `+0100`, `-05` → minutes east of UTC.
fn parse_offset(text: &str) -> Result<i64, &'static str> {
    match text {
        "" | "Z" | "z" => return Ok(0),
        _ => {}
    }
    let sign = match text.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err("unexpected text after the time"),
    };
    let digits: String = text
        .get(1..)
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return Err("an offset is +HH:MM");
    }
    let hours: i64 = digits.get(..2).unwrap_or("0").parse().unwrap_or(0);
    let minutes: i64 = digits.get(2..).unwrap_or("0").parse().unwrap_or(0);
    if hours > 23 || minutes > 59 {
        return Err("an offset is +HH:MM");
    }
    Ok(sign * (hours * 60 + minutes))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Date and time of day, UTC, of milliseconds since the epoch.
struct Civil {
    y: i64,
    m: i64,
    d: i64,
    hh: u64,
    mm: u64,
    ss: u64,
    ms: u64,
}

fn civil(ms: u64) -> Civil {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    Civil {
        y,
        m,
        d,
        hh: rem / 3600,
        mm: rem % 3600 / 60,
        ss: rem % 60,
        ms: ms % 1000,
    }
}

/// `2026-12-01 10:00:03Z`: UTC, second precision.
#[must_use]
pub fn utc(ms: u64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        c.y, c.m, c.d, c.hh, c.mm, c.ss
    )
}

/// `2026-12-01T10:00:03.250Z`: RFC 3339, UTC, millisecond precision (for JSON output).
#[must_use]
pub fn rfc3339(ms: u64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.y, c.m, c.d, c.hh, c.mm, c.ss, c.ms
    )
}

/// `10:00:03.250`: the time of day, UTC (transcripts, where the date rarely changes).
#[must_use]
pub fn time_of_day(ms: u64) -> String {
    let c = civil(ms);
    format!("{:02}:{:02}:{:02}.{:03}", c.hh, c.mm, c.ss, c.ms)
}

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn ages_count_back_from_now() {
        assert_eq!(parse_instant("10m", NOW), Ok(NOW - 600_000));
        assert_eq!(parse_instant("1h30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_instant("2d", NOW), Ok(NOW - 172_800_000));
        assert_eq!(parse_instant("500ms", NOW), Ok(NOW - 500));
        assert_eq!(parse_instant("99999w", 5), Ok(0), "saturates at the epoch");
        for bad in ["10", "m", "10x", "", "1h 30m", "-5m"] {
            assert!(parse_instant(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_utc_unless_an_offset_is_given() {
        // date -u -d 2026-12-01T10:00:00 +%s → 1796119200
        assert_eq!(
            parse_instant("2026-12-01T10:00", NOW),
            Ok(1_796_119_200_000)
        );
        assert_eq!(
            parse_instant("2026-12-01 10:00:00Z", NOW),
            Ok(1_796_119_200_000)
        );
        assert_eq!(
            parse_instant("2026-12-01T11:00:00+01:00", NOW),
            Ok(1_796_119_200_000)
        );
        assert_eq!(
            parse_instant("2026-12-01T05:00-0500", NOW),
            Ok(1_796_119_200_000)
        );
        assert_eq!(
            parse_instant("2026-12-01T10:00:00.25Z", NOW),
            Ok(1_796_119_200_250)
        );
        assert_eq!(parse_instant("2026-12-01", NOW), Ok(1_796_083_200_000));
        assert_eq!(parse_instant("2024-02-29", NOW), Ok(1_709_164_800_000));
        for bad in [
            "2026-13-01",
            "2025-02-29",
            "2026-12-01T25:00",
            "2026-12-01T10",
            "2026-12-01T10:00 UTC",
            "1969-12-31",
        ] {
            assert!(parse_instant(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn epoch_seconds_follow_an_at_sign() {
        assert_eq!(parse_instant("@1796119200", NOW), Ok(1_796_119_200_000));
        assert_eq!(parse_instant("@1796119200.5", NOW), Ok(1_796_119_200_500));
        assert!(parse_instant("@x", NOW).is_err());
    }

    #[test]
    fn printed_times_round_trip_through_the_parser() {
        for ms in [0, 951_782_400_000 + 3_661_000, 1_796_119_200_250] {
            assert_eq!(parse_instant(&rfc3339(ms), NOW), Ok(ms));
            assert_eq!(parse_instant(&utc(ms), NOW), Ok(ms - ms % 1000));
        }
        assert_eq!(utc(951_782_400_000 + 3_661_000), "2000-02-29 01:01:01Z");
        assert_eq!(time_of_day(1_796_119_200_250), "10:00:00.250");
    }

    #[test]
    fn an_error_names_the_accepted_forms() {
        let e = parse_instant("yesterday", NOW).unwrap_err().to_string();
        assert!(e.contains("\"yesterday\""), "{e}");
        assert!(e.contains("10m") && e.contains("2026-12-01T10:00"), "{e}");
    }
}
