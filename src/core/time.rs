//! Civil time: the calendar of event times (epoch milliseconds, UTC), through `jiff`.
//!
//! One place turns a timestamp into a date, an hour or RFC 3339 text, and text or an epoch
//! number back into a timestamp, so the S3 sink's partitions, the evaluation reports and the
//! parser agree on every date, leap years and years before 1970 included.
//!
//! # What [`parse_time`] accepts
//!
//! - **Epoch numbers** in a [`TimeUnit`] (`record.time_unit`, default milliseconds): an integer
//!   (`1704067200000`, `-5`, `+5`), or a decimal (`1704067200.5` with `s`), as text or as a
//!   JSON number. A decimal is cut to the millisecond; seconds are first rounded to the
//!   microsecond so that `1.123` s is 1123 ms despite binary floating point.
//! - **RFC 3339 / ISO 8601 text**, read by jiff's Temporal parser: `2024-01-01T00:00:00Z`,
//!   `t` or a space instead of `T`, `z` for `Z`, offsets `+02:00` / `+0200` / `+02`, fractional
//!   seconds after `.` or `,` (cut to the millisecond, never rounded), a date alone
//!   (`2024-01-01`, midnight), a time to the minute or hour (`2024-01-01T12:30`), the basic
//!   format (`20240101T120000Z`) and six-digit signed years (`+002024-01-01`). No offset means
//!   UTC.
//! - Two old rules kept so existing inputs keep their times: more than nine fractional digits
//!   (past jiff's nanoseconds) are cut, and a leap second `23:59:60` is the first second of the
//!   next minute.
//!
//! Rejected, each with a reason: impossible dates and times (February 31, February 29 of a
//! common year, hour 24, minute 60), offsets past ±25:59, time zone annotations
//! (`[Europe/Paris]`: a name needs a tz database and would make a record's time depend on it),
//! week dates, and instants outside jiff's range (-9999-01-02 to 9999-12-30 UTC).

use std::borrow::Cow;

use jiff::Timestamp;
use jiff::civil::{DateTime, Time};
use jiff::fmt::temporal::Pieces;
use jiff::tz::Offset;
use serde::Deserialize;

/// The UTC civil date and time of `ms` milliseconds since the Unix epoch, clamped to jiff's
/// range (years -9999 to 9999).
pub fn utc_datetime(ms: i64) -> DateTime {
    let ts = Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    Offset::UTC.to_datetime(ts)
}

/// `(year, month, day, hour)` in UTC of `ms` milliseconds since the epoch.
pub fn utc_date_hour(ms: i64) -> (i16, i8, i8, i8) {
    let dt = utc_datetime(ms);
    (dt.year(), dt.month(), dt.day(), dt.hour())
}

/// `ms` as RFC 3339 UTC with exactly three fractional digits: `2024-01-01T00:00:00.000Z`.
pub fn format_rfc3339_millis(ms: i64) -> String {
    utc_datetime(ms)
        .strftime("%Y-%m-%dT%H:%M:%S.%3fZ")
        .to_string()
}

/// Milliseconds since the epoch of a UTC civil date and time; `None` for an impossible date
/// (February 31) or a field out of range.
pub fn millis_from_utc(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8, millis: i32) -> Option<i64> {
    let dt = DateTime::new(y, mo, d, h, mi, s, millis.checked_mul(1_000_000)?).ok()?;
    let ts = Offset::UTC.to_timestamp(dt).ok()?;
    Some(ts.as_millisecond())
}

/// The unit of a numeric event time (`record.time_unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum TimeUnit {
    /// Seconds since the epoch (Unix time).
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds since the epoch (the default, JavaScript's `Date.now()`).
    #[default]
    #[serde(rename = "ms")]
    Millis,
    /// Microseconds since the epoch.
    #[serde(rename = "us")]
    Micros,
    /// Nanoseconds since the epoch.
    #[serde(rename = "ns")]
    Nanos,
}

impl TimeUnit {
    /// The config spelling: `s`, `ms`, `us` or `ns`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Millis => "ms",
            TimeUnit::Micros => "us",
            TimeUnit::Nanos => "ns",
        }
    }

    /// Epoch milliseconds of an integer count of this unit; finer units are floored (an
    /// instant belongs to the millisecond it falls in, before 1970 too). `None` past i64.
    pub fn millis_from_int(self, v: i64) -> Option<i64> {
        match self {
            TimeUnit::Seconds => v.checked_mul(1000),
            TimeUnit::Millis => Some(v),
            TimeUnit::Micros => Some(v.div_euclid(1000)),
            TimeUnit::Nanos => Some(v.div_euclid(1_000_000)),
        }
    }

    /// Epoch milliseconds of a fractional count of this unit; `None` when not finite or past
    /// i64 milliseconds.
    pub fn millis_from_float(self, v: f64) -> Option<i64> {
        let ms = match self {
            // Rounded to the microsecond first: `1.123` is 1.12299999… in binary.
            TimeUnit::Seconds => ((v * 1e6).round() / 1e3).floor(),
            // Truncated, as numeric times always were.
            TimeUnit::Millis => v.trunc(),
            TimeUnit::Micros => (v / 1e3).floor(),
            TimeUnit::Nanos => (v / 1e6).floor(),
        };
        // -2^63 ..= 2^63 - 1; the `as` cast below would saturate, turning garbage into a time.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        // `ms` is a whole number here, so the cast is exact.
        (ms.is_finite() && (-LIMIT..LIMIT).contains(&ms)).then_some(ms as i64)
    }
}

/// Why a value is not an event time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Neither an epoch number nor RFC 3339 / ISO 8601 text, or an impossible date or time;
    /// jiff's explanation names the part (`parameter 'day' for `2023-02` is invalid …`).
    #[error("not an epoch number or RFC 3339 / ISO 8601 time: {0}")]
    Text(Box<str>),
    /// A time zone annotation (`…[Europe/Paris]`).
    #[error("time zone annotations like `[Europe/Paris]` are not supported; give an offset")]
    Annotation,
    /// An epoch number past i64 milliseconds.
    #[error("epoch number out of range for time_unit = \"{0}\"")]
    NumberOutOfRange(&'static str),
    /// An instant outside jiff's range (about the years -9999 to 9999).
    #[error("outside the supported range, -9999-01-02 to 9999-12-30")]
    TextOutOfRange,
    /// A JSON value that is neither a string nor a number.
    #[error("neither text nor a number")]
    NotTextOrNumber,
}

/// Epoch milliseconds of `text` (trimmed): an epoch number in `unit`, or RFC 3339 /
/// ISO 8601 text (see the [module docs](self) for exactly what is accepted).
pub fn parse_time(text: &str, unit: TimeUnit) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Ok(v) = text.parse::<i64>() {
        return unit
            .millis_from_int(v)
            .ok_or(TimeError::NumberOutOfRange(unit.as_str()));
    }
    // A decimal epoch number; the byte check keeps out `inf` and `NaN`, which Rust would parse.
    let decimal = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
    if decimal && let Ok(v) = text.parse::<f64>() {
        return unit
            .millis_from_float(v)
            .ok_or(TimeError::NumberOutOfRange(unit.as_str()));
    }
    parse_rfc3339_millis(text)
}

/// Epoch milliseconds of RFC 3339 / ISO 8601 text (not trimmed, no epoch numbers).
pub fn parse_rfc3339_millis(text: &str) -> Result<i64, TimeError> {
    let (text, leap) = old_rules(text);
    let pieces = Pieces::parse(text.as_ref()).map_err(|e| TimeError::Text(e.to_string().into()))?;
    if pieces.time_zone_annotation().is_some() {
        return Err(TimeError::Annotation);
    }
    let dt = pieces
        .date()
        .to_datetime(pieces.time().unwrap_or(Time::midnight()));
    let offset = pieces.to_numeric_offset().unwrap_or(Offset::UTC);
    let ts = offset
        .to_timestamp(dt)
        .map_err(|_| TimeError::TextOutOfRange)?;
    // Floored like the old parser: jiff's nanoseconds carry the sign of the seconds.
    let ms = ts.as_second() * 1000 + i64::from(ts.subsec_nanosecond().div_euclid(1_000_000));
    // jiff reads a leap second as :59; the old parser counted it as the next minute's :00.
    Ok(if leap && dt.second() == 59 {
        ms + 1000
    } else {
        ms
    })
}

/// The two rules of the old parser that jiff does not follow, for its shape
/// `YYYY-MM-DD?HH:MM:SS[.fff…]…`: fractional digits past the ninth are dropped (jiff rejects
/// them), and whether the seconds read `60`.
fn old_rules(text: &str) -> (Cow<'_, str>, bool) {
    let b = text.as_bytes();
    if b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return (Cow::Borrowed(text), false);
    }
    let leap = &b[17..19] == b"60";
    let digits = match b.get(19) {
        Some(b'.' | b',') => b[20..].iter().take_while(|c| c.is_ascii_digit()).count(),
        _ => 0,
    };
    if digits <= 9 {
        return (Cow::Borrowed(text), leap);
    }
    // Bytes 20.. are ASCII digits, so both cuts fall on character boundaries.
    let cut = format!("{}{}", &text[..29], &text[20 + digits..]);
    (Cow::Owned(cut), leap)
}

#[cfg(test)]
pub(crate) mod tests;
