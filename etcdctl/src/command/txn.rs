//! txn: compares, success ops and failure ops read from stdin in etcdctl's line grammar,
//! each section ended by an empty line:
//!
//! ```text
//! mod("key1") > "0"
//! val("key2") = "v"
//!
//! put key1 x
//! get key2 --prefix
//!
//! del key1
//! ```

use std::io::BufRead;

use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::{Compare, RequestOp, TxnRequest};
use clap::{Args, Parser};

use super::kv::{DelArgs, GetArgs, PutArgs};
use crate::error::{CommandError, ExitCode, Result};
use crate::format::{go_quote, parse_i64};
use crate::global::GlobalArgs;
use crate::printer::Display;

#[derive(Debug, Args)]
pub struct TxnArgs {
    args: Vec<String>,
    /// Input transaction in interactive mode
    #[arg(short, long)]
    interactive: bool,
}

impl TxnArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        if !self.args.is_empty() {
            return Err(CommandError::bad_args(
                "txn command does not accept argument",
            ));
        }
        let request = {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            self.prompt("compares:");
            let compare = read_compares(&mut input)?;
            self.prompt("success requests (get, put, del):");
            let success = read_ops(&mut input)?;
            self.prompt("failure requests (get, put, del):");
            let failure = read_ops(&mut input)?;
            TxnRequest {
                compare,
                success,
                failure,
            }
        };
        let client = global.client().await?;
        let response = client.txn(request).await?;
        global.printer().print(&Display::Txn(&response))
    }

    fn prompt(&self, text: &str) {
        if self.interactive {
            println!("{text}");
        }
    }
}

fn invalid_input(message: impl Into<String>) -> CommandError {
    CommandError::new(ExitCode::InvalidInput, message)
}

/// Reads one line, trimmed; `None` at end of input.
fn read_trimmed(input: &mut impl BufRead) -> Result<Option<String>> {
    let mut line = String::new();
    let read = input
        .read_line(&mut line)
        .map_err(|e| invalid_input(e.to_string()))?;
    if read == 0 {
        return Ok(None);
    }
    let complete = line.ends_with('\n');
    let trimmed = line.trim().to_string();
    // etcdctl reads with ReadString('\n'): a last line without a newline ends the input.
    if !complete && !trimmed.is_empty() {
        return Ok(None);
    }
    Ok(Some(trimmed))
}

fn read_compares(input: &mut impl BufRead) -> Result<Vec<Compare>> {
    let mut compares = Vec::new();
    loop {
        let Some(line) = read_trimmed(input)? else {
            return Err(invalid_input("EOF"));
        };
        if line.is_empty() {
            return Ok(compares);
        }
        compares.push(parse_compare(&line).map_err(invalid_input)?);
    }
}

/// Every section, the last included, ends with an empty line; running out of input first is
/// an error, as in etcdctl.
fn read_ops(input: &mut impl BufRead) -> Result<Vec<RequestOp>> {
    let mut ops = Vec::new();
    loop {
        let Some(line) = read_trimmed(input)? else {
            return Err(invalid_input("EOF"));
        };
        if line.is_empty() {
            return Ok(ops);
        }
        ops.push(parse_op(&line)?);
    }
}

/// The get/put/del commands with their flags, as txn lines spell them.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
enum TxnOp {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

fn parse_op(line: &str) -> Result<RequestOp> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(invalid_input(format!(
            "invalid txn compare request: {line}"
        )));
    }
    let op = TxnOp::try_parse_from(&args)
        .map_err(|_| invalid_input(format!("invalid txn request: {line}")))?;
    Ok(match op {
        TxnOp::Get(get) => client::txn::range(get.request()?),
        TxnOp::Put(put) => client::txn::put(put.request()?),
        TxnOp::Del(del) => client::txn::delete(del.request()?),
    })
}

/// Splits a line into words as etcdctl does: double-quoted strings with Go escapes,
/// single-quoted strings taken literally, else runs of non-space characters.
pub(crate) fn argify(line: &str) -> Result<Vec<String>> {
    let mut args = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let (word, after) = scan_quoted(rest).ok_or_else(|| invalid_input("unexpected EOF"))?;
            args.push(word);
            rest = after;
        } else if let Some(body) = rest.strip_prefix('\'') {
            let end = body
                .find('\'')
                .ok_or_else(|| invalid_input("unexpected EOF"))?;
            args.push(body[..end].to_string());
            rest = &body[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            args.push(rest[..end].to_string());
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(args)
}

/// Scans a Go-quoted string (`"..."` with escapes, or `` `raw` ``) at the start of `input`,
/// returning it and what follows, as `fmt.Sscanf("%q")` does.
fn scan_quoted(input: &str) -> Option<(String, &str)> {
    if let Some(body) = input.strip_prefix('`') {
        let end = body.find('`')?;
        return Some((body[..end].to_string(), &body[end + 1..]));
    }
    let body = input.strip_prefix('"')?;
    let mut out: Vec<u8> = Vec::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..])),
            '\\' => {
                let (_, escape) = chars.next()?;
                match escape {
                    'n' => out.push(b'\n'),
                    't' => out.push(b'\t'),
                    'r' => out.push(b'\r'),
                    'a' => out.push(7),
                    'b' => out.push(8),
                    'f' => out.push(12),
                    'v' => out.push(11),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    '\'' => out.push(b'\''),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        out.push(u8::from_str_radix(&hex, 16).ok()?);
                    }
                    'u' | 'U' => {
                        let len = if escape == 'u' { 4 } else { 8 };
                        let hex: String = (0..len)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                        out.extend_from_slice(c.to_string().as_bytes());
                    }
                    '0'..='7' => {
                        let mut digits = String::from(escape);
                        digits.extend((0..2).filter_map(|_| chars.next().map(|(_, c)| c)));
                        out.push(u8::from_str_radix(&digits, 8).ok()?);
                    }
                    _ => return None,
                }
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    None
}

/// Parses `target("key") op "value"`, e.g. `mod("foo") > "0"` or `val("foo") = "bar"`.
fn parse_compare(line: &str) -> std::result::Result<Compare, String> {
    let malformed = || format!("malformed comparison: {line}");
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let (key, rest) = scan_quoted(rest).ok_or_else(malformed)?;
    let rest = rest.strip_prefix(')').ok_or_else(malformed)?.trim_start();
    let op_end = rest.find(char::is_whitespace).ok_or_else(malformed)?;
    let (op, rest) = rest.split_at(op_end);
    let (value, _) = scan_quoted(rest.trim_start()).ok_or_else(malformed)?;
    let result = match op {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => {
            return Err(format!(
                "malformed comparison: {line}; invalid result op {}",
                go_quote(op.as_bytes())
            ))
        }
    };
    // Like etcdctl, report a bad number as a bad compare line.
    let number =
        |value: &str| parse_i64(value).map_err(|_| format!("invalid txn compare request: {line}"));
    let (target, union) = match target {
        "ver" | "version" => (
            CompareTarget::Version,
            TargetUnion::Version(number(&value)?),
        ),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number(&value)?),
        ),
        "m" | "mod" => (
            CompareTarget::Mod,
            TargetUnion::ModRevision(number(&value)?),
        ),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(value.into_bytes())),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(number(&value)?)),
        _ => {
            return Err(format!(
                "malformed comparison: {line}; invalid target {}",
                go_quote(target.as_bytes())
            ))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compares() {
        let cmp = parse_compare(r#"mod("foo") > "0""#).unwrap();
        assert_eq!(cmp.key, b"foo");
        assert_eq!(cmp.target, CompareTarget::Mod as i32);
        assert_eq!(cmp.result, CompareResult::Greater as i32);
        assert_eq!(cmp.target_union, Some(TargetUnion::ModRevision(0)));
        let cmp = parse_compare(r#"val("a b") != "x\ty""#).unwrap();
        assert_eq!(cmp.key, b"a b");
        assert_eq!(cmp.target_union, Some(TargetUnion::Value(b"x\ty".to_vec())));
        assert!(parse_compare("nonsense").is_err());
        assert!(parse_compare(r#"foo("a") = "1""#).is_err());
        assert!(parse_compare(r#"ver("a") = "x""#).is_err());
    }

    #[test]
    fn splits_words_like_etcdctl() {
        assert_eq!(
            argify(r#"put "a key" 'raw \n' v --prev-kv"#).unwrap(),
            vec!["put", "a key", "raw \\n", "v", "--prev-kv"]
        );
    }

    #[test]
    fn parses_ops_with_flags() {
        let op = parse_op("get a --prefix").unwrap();
        match op.request {
            Some(api::etcdserverpb::request_op::Request::RequestRange(r)) => {
                assert_eq!(r.key, b"a");
                assert_eq!(r.range_end, b"b");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse_op("frob a").is_err());
    }
}
