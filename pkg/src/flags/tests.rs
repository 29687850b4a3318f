//! Go's own cases for `time.ParseDuration` (time_test.go), so a value etcd takes is taken here
//! and a value etcd refuses is refused with etcd's message.

use super::*;

const NS: i64 = 1;
const US: i64 = 1_000 * NS;
const MS: i64 = 1_000 * US;
const S: i64 = 1_000 * MS;
const M: i64 = 60 * S;
const H: i64 = 60 * M;

#[test]
fn accepts_what_go_accepts() {
    let cases: &[(&str, i64)] = &[
        // simple
        ("0", 0),
        ("5s", 5 * S),
        ("30s", 30 * S),
        ("1478s", 1478 * S),
        // sign
        ("-5s", -5 * S),
        ("+5s", 5 * S),
        ("-0", 0),
        ("+0", 0),
        // decimal
        ("5.0s", 5 * S),
        ("5.6s", 5 * S + 600 * MS),
        ("5.s", 5 * S),
        (".5s", 500 * MS),
        ("1.0s", S),
        ("1.00s", S),
        ("1.004s", S + 4 * MS),
        ("1.0040s", S + 4 * MS),
        ("100.00100s", 100 * S + MS),
        // units
        ("10ns", 10 * NS),
        ("11us", 11 * US),
        ("12µs", 12 * US),
        ("12μs", 12 * US),
        ("10us", 10 * US),
        ("13ms", 13 * MS),
        ("14s", 14 * S),
        ("15m", 15 * M),
        ("16h", 16 * H),
        // sequences
        ("3h30m", 3 * H + 30 * M),
        ("10.5s4m", 4 * M + 10 * S + 500 * MS),
        ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
        (
            "1h2m3s4ms5us6ns",
            H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
        ),
        ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
        ("1h2m3.5s", H + 2 * M + 3 * S + 500 * MS),
        // large values and precision
        ("52763797000ns", 52_763_797_000),
        ("0.3333333333333333333h", 20 * M),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", i64::MAX),
        ("9223372036854775.807us", i64::MAX),
        ("9223372036s854ms775us807ns", i64::MAX),
        ("-9223372036854775808ns", i64::MIN),
        ("-9223372036854775.808us", i64::MIN),
        ("-9223372036s854ms775us808ns", i64::MIN),
        ("-2562047h47m16.854775808s", i64::MIN),
        ("0.100000000000000000000h", 6 * M),
        ("0.830103483285477580700h", 49 * M + 48 * S + 372_539_827),
    ];
    for &(input, want) in cases {
        assert_eq!(parse_go_duration_nanos(input), Ok(want), "{input}");
    }
}

#[test]
fn refuses_what_go_refuses_with_gos_message() {
    let cases: &[(&str, &str)] = &[
        ("", r#"time: invalid duration """#),
        ("3", r#"time: missing unit in duration "3""#),
        ("-", r#"time: invalid duration "-""#),
        ("s", r#"time: invalid duration "s""#),
        ("h", r#"time: invalid duration "h""#),
        (".", r#"time: invalid duration ".""#),
        ("-.", r#"time: invalid duration "-.""#),
        (".s", r#"time: invalid duration ".s""#),
        ("+.s", r#"time: invalid duration "+.s""#),
        ("1..5s", r#"time: missing unit in duration "1..5s""#),
        ("1d", r#"time: unknown unit "d" in duration "1d""#),
        (" 2s", r#"time: invalid duration " 2s""#),
        ("2s ", r#"time: unknown unit "s " in duration "2s ""#),
        (
            "5 parsecs",
            r#"time: unknown unit " parsecs" in duration "5 parsecs""#,
        ),
        ("1s-1s", r#"time: unknown unit "s-" in duration "1s-1s""#),
        ("\u{FFFD}", r#"time: invalid duration "\xef\xbf\xbd""#),
        (
            "\u{FFFD} hello \u{FFFD} world",
            r#"time: invalid duration "\xef\xbf\xbd hello \xef\xbf\xbd world""#,
        ),
        (
            "3µ",
            r#"time: unknown unit "\xc2\xb5" in duration "3\xc2\xb5""#,
        ),
        ("tab\t", r#"time: invalid duration "tab\x09""#),
        ("\"1\\s", r#"time: invalid duration "\"1\\s""#),
        // overflow
        (
            "9223372036854775810ns",
            r#"time: invalid duration "9223372036854775810ns""#,
        ),
        (
            "9223372036854775808ns",
            r#"time: invalid duration "9223372036854775808ns""#,
        ),
        (
            "-9223372036854775809ns",
            r#"time: invalid duration "-9223372036854775809ns""#,
        ),
        (
            "9223372036854776us",
            r#"time: invalid duration "9223372036854776us""#,
        ),
        ("3000000h", r#"time: invalid duration "3000000h""#),
        (
            "9223372036854775.808us",
            r#"time: invalid duration "9223372036854775.808us""#,
        ),
        (
            "9223372036854ms775us808ns",
            r#"time: invalid duration "9223372036854ms775us808ns""#,
        ),
        (
            "9223372036854775808ns9223372036854775808ns",
            r#"time: invalid duration "9223372036854775808ns9223372036854775808ns""#,
        ),
    ];
    for &(input, want) in cases {
        let error = parse_go_duration_nanos(input).expect_err(input);
        assert_eq!(error.to_string(), want, "{input:?}");
    }
    assert_eq!(
        parse_go_duration_nanos("7y"),
        Err(ParseDurationError::UnknownUnit {
            unit: "y".into(),
            input: "7y".into()
        })
    );
}

#[test]
fn a_length_of_time_is_never_negative() {
    assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
    assert_eq!(parse_go_duration("2h45m"), Ok(Duration::from_secs(9900)));
    assert_eq!(parse_go_duration("+1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration("-0s"), Ok(Duration::ZERO));
    assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("10us"), Ok(Duration::from_micros(10)));
    assert_eq!(
        parse_go_duration("9223372036854775807ns"),
        Ok(Duration::from_nanos(i64::MAX as u64))
    );
    let negative = parse_go_duration("-1s").unwrap_err();
    assert_eq!(
        negative,
        ParseDurationError::Negative {
            input: "-1s".into()
        }
    );
    assert_eq!(negative.to_string(), r#"time: invalid duration "-1s""#);
    assert!(matches!(
        parse_go_duration("5"),
        Err(ParseDurationError::MissingUnit { .. })
    ));
}
