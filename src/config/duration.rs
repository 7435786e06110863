//! Durations as the config file writes them: `"30s"`, `"5m"`, `"1h 30m"`
//! (humantime's forms), or a whole number of seconds.

use std::time::Duration;

use toml::de::DeValue;

/// Why a value is no duration, said after the key's name.
pub(super) fn parse(value: &DeValue<'_>) -> Result<Duration, String> {
    let duration = match value {
        DeValue::Integer(integer) => {
            let seconds = u64::from_str_radix(integer.as_str(), integer.radix())
                .map_err(|_| format!("{integer} is not a number of seconds"))?;
            Duration::from_secs(seconds)
        }
        // A string of digits alone is seconds too, as the integer is.
        DeValue::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            Duration::from_secs(
                text.parse()
                    .map_err(|_| format!("{text:?} is too many seconds"))?,
            )
        }
        DeValue::String(text) => humantime::parse_duration(text).map_err(|e| {
            format!("invalid duration {text:?} ({e}); write e.g. \"30s\", \"5m\", \"1h\"")
        })?,
        other => {
            return Err(format!(
                "must be a duration such as \"30s\" or a number of seconds, not {}",
                super::settings::a_type(other)
            ))
        }
    };
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::de::DeTable;

    fn duration(toml: &str) -> Result<Duration, String> {
        let table = DeTable::parse(toml).expect("the test's TOML parses");
        let value = table.get_ref().get("d").expect("the test sets d");
        parse(value.get_ref())
    }

    #[test]
    fn config_durations_in_humantime_or_seconds() {
        assert_eq!(duration("d = \"30s\""), Ok(Duration::from_secs(30)));
        assert_eq!(duration("d = \"5m\""), Ok(Duration::from_secs(300)));
        assert_eq!(duration("d = \"1h 30m\""), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("d = 45"), Ok(Duration::from_secs(45)));
        assert_eq!(duration("d = \"45\""), Ok(Duration::from_secs(45)));
        assert_eq!(duration("d = \"1500ms\""), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn config_bad_durations_say_why() {
        assert_eq!(
            duration("d = \"5 parsecs\""),
            Err("invalid duration \"5 parsecs\" (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); write e.g. \"30s\", \"5m\", \"1h\"".into())
        );
        assert_eq!(
            duration("d = -3"),
            Err("-3 is not a number of seconds".into())
        );
        assert_eq!(duration("d = 0"), Err("must be longer than zero".into()));
        assert_eq!(
            duration("d = 1.5"),
            Err("must be a duration such as \"30s\" or a number of seconds, not a float".into())
        );
    }
}
