//! Flag values as etcd's Go flag packages read them. A duration flag (`--dial-timeout 2s`,
//! `--auto-compaction-retention 1h30m`, `--experimental-lease-checkpoint-interval 5m0s`) goes
//! through Go's `time.ParseDuration`; [`parse_go_duration_nanos`] is that function, and
//! [`parse_go_duration`] the same for a length of time held in a [`Duration`].

use std::time::Duration;

/// Why a duration was refused. `Display` is Go's message, so a flag error reads as etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Not of Go's form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or beyond an int64 of nanoseconds.
    #[error("time: invalid duration {}", go_quote(input))]
    Invalid { input: String },
    /// A number without its unit (only `0` may omit it).
    #[error("time: missing unit in duration {}", go_quote(input))]
    MissingUnit { input: String },
    /// A unit other than ns, us, µs, μs, ms, s, m and h.
    #[error(
        "time: unknown unit {} in duration {}",
        go_quote(unit),
        go_quote(input)
    )]
    UnknownUnit { unit: String, input: String },
    /// A negative duration, which Go accepts but a length of time cannot be; the message is
    /// the one these flags always gave for it.
    #[error("time: invalid duration {}", go_quote(input))]
    Negative { input: String },
}

/// Go's `time.ParseDuration`: a possibly signed sequence of decimal numbers, each with an
/// optional fraction and a unit (`300ms`, `-1.5h`, `2h45m`, `0`), as signed nanoseconds (a Go
/// `time.Duration`). Accepts and refuses exactly what Go does, with Go's messages.
pub fn parse_go_duration_nanos(input: &str) -> Result<i64, ParseDurationError> {
    let invalid = || ParseDurationError::Invalid {
        input: input.to_owned(),
    };
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = digits_len(rest);
        let whole = leading_int(&rest[..int_len]).ok_or_else(invalid)?;
        rest = &rest[int_len..];
        let mut fraction = (0, 1.0);
        let mut has_fraction = false;
        if let Some(after_point) = rest.strip_prefix('.') {
            let fraction_len = digits_len(after_point);
            fraction = leading_fraction(&after_point[..fraction_len]);
            has_fraction = fraction_len > 0;
            rest = &after_point[fraction_len..];
        }
        if int_len == 0 && !has_fraction {
            // No digits at all, as in ".s" or "-.s".
            return Err(invalid());
        }
        let unit_len = rest
            .bytes()
            .position(|c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(ParseDurationError::MissingUnit {
                input: input.to_owned(),
            });
        }
        let (unit, after_unit) = rest.split_at(unit_len);
        rest = after_unit;
        let nanos_per_unit: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(ParseDurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    input: input.to_owned(),
                })
            }
        };
        if whole > LIMIT / nanos_per_unit {
            return Err(invalid());
        }
        let mut value = whole * nanos_per_unit;
        let (digits, scale) = fraction;
        if digits > 0 {
            // As Go: a float64 is exact to the nanosecond for a fraction of an hour.
            value += (digits as f64 * (nanos_per_unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        // Go's sum can wrap past 2^64 on two terms of 2^63 each; refuse that instead.
        total = total
            .checked_add(value)
            .filter(|&t| t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if negative {
        // 2^63 negated is i64::MIN, the most negative Go duration.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// [`parse_go_duration_nanos`] for a flag that holds a length of time (a timeout, an interval,
/// a retention): the same forms, but a negative duration is refused
/// ([`ParseDurationError::Negative`]).
pub fn parse_go_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let nanos = parse_go_duration_nanos(input)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| ParseDurationError::Negative {
            input: input.to_owned(),
        })
}

/// The length of the leading run of ASCII digits.
fn digits_len(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Go's `leadingInt` over a run of digits: None past 2^63.
fn leading_int(digits: &str) -> Option<u64> {
    let mut x: u64 = 0;
    for c in digits.bytes() {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None;
        }
    }
    Some(x)
}

/// Go's `leadingFraction` over a run of digits: the digits as an integer and the power of ten
/// that divides it; digits past what a u64 holds only lose precision.
fn leading_fraction(digits: &str) -> (u64, f64) {
    let mut x: u64 = 0;
    let mut scale = 1.0;
    for c in digits.bytes() {
        if x > ((1 << 63) - 1) / 10 {
            break;
        }
        let next = x * 10 + u64::from(c - b'0');
        if next > 1 << 63 {
            break;
        }
        x = next;
        scale *= 10.0;
    }
    (x, scale)
}

/// Go's `time.quote`: the text in double quotes, `"` and `\` escaped, and every byte of a
/// control or non-ASCII character written as `\xNN`.
fn go_quote(s: &str) -> String {
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        } else {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                quoted.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests;
