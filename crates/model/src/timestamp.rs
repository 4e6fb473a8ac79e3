//! UTC timestamps stored and printed as RFC 3339 text with microseconds.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant, printed as `2026-11-25T10:00:00.123456Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time, truncated to microseconds so that it round-trips through text.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Wraps a date-time, converting to UTC and truncating to microseconds.
    pub fn from_datetime(dt: OffsetDateTime) -> Self {
        let dt = dt.to_offset(time::UtcOffset::UTC);
        let micros = dt.microsecond();
        Timestamp(dt.replace_microsecond(micros).unwrap_or(dt))
    }

    /// Parses RFC 3339 text.
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(text, &Rfc3339).map(Self::from_datetime)
    }

    /// The wrapped date-time.
    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// This instant plus a duration (saturating at the far future).
    pub fn plus(self, d: std::time::Duration) -> Self {
        Timestamp(
            self.0
                .checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
                .unwrap_or(self.0),
        )
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        // Every recorded event prints one: digits into a fixed buffer cost a fraction
        // of `write!` with seven padded arguments.
        let Ok(year) = u32::try_from(t.year()) else {
            return write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.microsecond()
            );
        };
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                if let Some(b) = out.get_mut(i) {
                    *b = b'0' + (n % 10) as u8;
                }
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(t.month())));
        put(8, 2, u32::from(t.day()));
        put(11, 2, u32::from(t.hour()));
        put(14, 2, u32::from(t.minute()));
        put(17, 2, u32::from(t.second()));
        put(20, 6, t.microsecond());
        // Only ASCII digits were written into an ASCII template.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_pads_every_field() {
        let t = Timestamp::parse("0987-02-03T04:05:06.000007Z").unwrap();
        assert_eq!(t.to_string(), "0987-02-03T04:05:06.000007Z");
        let t = Timestamp::parse("2026-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(t.to_string(), "2026-12-31T23:59:59.999999Z");
    }

    #[test]
    fn display_round_trips_through_parse() {
        let now = Timestamp::now();
        let text = now.to_string();
        assert_eq!(Timestamp::parse(&text).unwrap(), now);
        assert!(text.ends_with('Z'));
    }
}
