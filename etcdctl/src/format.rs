//! Go's text conventions that etcdctl's output depends on: `%q` quoting, `time.Duration`
//! printing, go-humanize's byte sizes, and strconv's parse errors.

use std::fmt::Write as _;
use std::time::Duration;

/// Go's `strconv.Quote` of a byte string (what `%q` prints for `string(bytes)`).
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if is_go_printable(c) => out.push(c),
                c if (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if (c as u32) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

/// Close to Go's `unicode.IsPrint`: graphic characters and the ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c as u32, 0xad | 0x600..=0x605 | 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff))
}

/// `\xNN` for every byte (etcdctl's `--hex`).
pub fn hex_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4);
    for byte in bytes {
        let _ = write!(out, "\\x{byte:02x}");
    }
    out
}

/// Go's `time.Duration.String()`: `1.5s`, `4.350929ms`, `850µs`, `2m3.5s`.
pub fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let mut out = String::new();
    let total_seconds = nanos / 1_000_000_000;
    let hours = total_seconds / 3600;
    let minutes = (total_seconds % 3600) / 60;
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let seconds_nanos = nanos % 60_000_000_000;
    let _ = write!(out, "{}s", decimal(seconds_nanos, 1_000_000_000));
    out
}

/// `value / unit` with the fraction's trailing zeros removed.
fn decimal(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

pub use pkg::humanize::humanize_bytes;

/// Go's `strconv.ParseInt(s, 10, 64)` with its error text.
pub fn parse_i64(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .map_err(|e| strconv_error("ParseInt", text, e.kind()))
}

/// Go's `strconv.ParseUint(s, 16, 64)` with its error text.
pub fn parse_hex_u64(text: &str) -> Result<u64, String> {
    u64::from_str_radix(text, 16).map_err(|e| strconv_error("ParseUint", text, e.kind()))
}

/// Go's `strconv.ParseInt(s, 16, 64)` with its error text (lease IDs).
pub fn parse_hex_i64(text: &str) -> Result<i64, String> {
    i64::from_str_radix(text, 16).map_err(|e| strconv_error("ParseInt", text, e.kind()))
}

/// The `*strconv.NumError` text Go prints for a failed `strconv.<function>` of `text`.
fn strconv_error(function: &str, text: &str, kind: &std::num::IntErrorKind) -> String {
    let reason = match kind {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            "value out of range"
        }
        _ => "invalid syntax",
    };
    format!(
        "strconv.{function}: parsing {}: {reason}",
        go_quote(text.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkg::flags::parse_go_duration;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("ü\\x01\"<".as_bytes()), r#""ü\\x01\"<""#);
        assert_eq!(go_quote(b"a\x01b\xff"), r#""a\x01b\xff""#);
        assert_eq!(go_quote(b"\x00"), r#""\x00""#);
        assert_eq!(go_quote(b"tab\there"), r#""tab\there""#);
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_nanos(4_350_929)), "4.350929ms");
        assert_eq!(go_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(123)), "2m3s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_nanos(12)), "12ns");
    }

    #[test]
    fn sizes_humanize_like_go_humanize() {
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(1_234_567), "1.2 MB");
        assert_eq!(humanize_bytes(24_576), "25 kB");
        assert_eq!(humanize_bytes(20_500), "20 kB");
    }

    #[test]
    fn parses_go_durations_and_reports_go_errors() {
        assert_eq!(parse_go_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_go_duration("x").is_err());
        assert_eq!(
            parse_i64("x").unwrap_err(),
            r#"strconv.ParseInt: parsing "x": invalid syntax"#
        );
        assert_eq!(
            parse_hex_u64("zz").unwrap_err(),
            r#"strconv.ParseUint: parsing "zz": invalid syntax"#
        );
    }
}
