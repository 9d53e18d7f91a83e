//! Civil time: the calendar of event times (epoch milliseconds, UTC), through `jiff`.
//!
//! One place turns a timestamp into a date, an hour or RFC 3339 text, so the S3 sink's
//! partitions, the evaluation reports and the parser agree on every date, leap years and
//! years before 1970 included.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_splits_dates() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(utc_date_hour(1_709_210_096_789), (2024, 2, 29, 12));
    }

    #[test]
    fn impossible_dates_are_none() {
        assert_eq!(millis_from_utc(2024, 2, 31, 0, 0, 0, 0), None);
        assert_eq!(millis_from_utc(2023, 2, 29, 0, 0, 0, 0), None);
        assert_eq!(
            millis_from_utc(2024, 2, 29, 12, 34, 56, 789),
            Some(1_709_210_096_789)
        );
    }

    #[test]
    fn agrees_with_a_naive_day_count_over_centuries() {
        // Days from 1600-03-01 to 2400-02-28 stepping a day at a time.
        let mut ms = millis_from_utc(1600, 3, 1, 0, 0, 0, 0).unwrap();
        let end = millis_from_utc(2400, 2, 28, 0, 0, 0, 0).unwrap();
        let (mut y, mut m, mut d) = (1600i16, 3i8, 1i8);
        let leap = |y: i16| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        while ms <= end {
            let (yy, mm, dd, _) = utc_date_hour(ms);
            assert_eq!((yy, mm, dd), (y, m, d));
            let days = [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            d += 1;
            if d > days[(m - 1) as usize] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
            ms += 86_400_000;
        }
    }
}
