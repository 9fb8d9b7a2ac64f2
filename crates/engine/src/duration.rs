//! Durations as runbook authors write them: `500ms`, `30s`, `5m`, `1h30m`, `90d`.

use std::fmt;
use std::str::FromStr;

/// A length of time written in a runbook. Displayed back in the same compact form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "invalid duration `{0}`: write a number and a unit, such as 500ms, 30s, 5m, 1h30m or 90d"
    )]
    Invalid(String),
    #[error("duration `{0}` is longer than the longest allowed, 3650d")]
    TooLong(String),
}

impl Duration {
    pub const fn from_std(duration: std::time::Duration) -> Self {
        Duration(duration)
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || DurationError::Invalid(text.to_owned());
        // humantime accepts a bare number as well ("0") and spaces between parts; runbooks
        // always name the unit and write it in one word, so that `timeout: 5` is an error
        // rather than five seconds someone did not mean.
        let starts_with_digit = text.starts_with(|c: char| c.is_ascii_digit());
        let ends_with_unit = text.ends_with(|c: char| c.is_ascii_alphabetic());
        if !starts_with_digit || !ends_with_unit || text.contains(char::is_whitespace) {
            return Err(error());
        }
        // Ten years is longer than any procedure waits; beyond it, deadlines stop being dates.
        const LONGEST: std::time::Duration = std::time::Duration::from_secs(3650 * 86_400);
        match humantime::parse_duration(text) {
            Ok(duration) if duration <= LONGEST => Ok(Duration(duration)),
            Ok(_) => Err(DurationError::TooLong(text.to_owned())),
            Err(_) => Err(error()),
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u128); 5] =
            [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
        let mut millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            if millis >= size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, shown: &str) {
        let duration: Duration = text.parse().expect("a valid duration");
        assert_eq!(duration.to_string(), shown);
    }

    #[test]
    fn authors_write_durations_in_one_word_with_a_unit() {
        check("500ms", "500ms");
        check("30s", "30s");
        check("5m", "5m");
        check("1h30m", "1h30m");
        check("90d", "90d");
        check("90m", "1h30m");
    }

    #[test]
    fn numbers_without_units_and_prose_are_refused() {
        for text in
            ["5", "", "m", "five minutes", "5 m", "-5s", "5x", "3651d", "99999999999999999s"]
        {
            assert!(text.parse::<Duration>().is_err(), "{text:?} should be refused");
        }
    }
}
