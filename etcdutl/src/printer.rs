//! `-w simple|json|table|fields` for `snapshot status`, as etcdctl 3.4 and etcdutl 3.5 print
//! a `snapshot.Status` (etcdctl calls this too).

use pkg::humanize::humanize_bytes;
use pkg::table::Table;

use crate::SnapshotStatus;

/// The output formats of `--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Simple,
    Json,
    Table,
    Fields,
    Protobuf,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Simple => "simple",
            OutputFormat::Json => "json",
            OutputFormat::Table => "table",
            OutputFormat::Fields => "fields",
            OutputFormat::Protobuf => "protobuf",
        }
    }
}

/// A format that cannot show a snapshot status (etcd's `printerUnsupported`).
#[derive(Debug, thiserror::Error)]
#[error("{0} not supported as output format")]
pub struct Unsupported(pub &'static str);

/// What `snapshot status` prints on stdout, newline included.
pub fn format_status(s: &SnapshotStatus, format: OutputFormat) -> Result<String, Unsupported> {
    let row = vec![
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_key.to_string(),
        humanize_bytes(s.total_size),
    ];
    Ok(match format {
        OutputFormat::Simple => format!("{}\n", row.join(", ")),
        OutputFormat::Table => {
            Table::new(&["hash", "revision", "total keys", "total size"], vec![row]).render()
        }
        OutputFormat::Json => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            s.hash, s.revision, s.total_key, s.total_size
        ),
        OutputFormat::Fields => format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            s.hash, s.revision, s.total_key, s.total_size
        ),
        OutputFormat::Protobuf => return Err(Unsupported(format.name())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_etcdctl() {
        let s = SnapshotStatus {
            hash: 0x1c2a_b3f0,
            revision: 7,
            total_key: 12,
            total_size: 20480,
        };
        assert_eq!(
            format_status(&s, OutputFormat::Simple).unwrap(),
            "1c2ab3f0, 7, 12, 20 kB\n"
        );
        assert_eq!(
            format_status(&s, OutputFormat::Json).unwrap(),
            "{\"hash\":472560624,\"revision\":7,\"totalKey\":12,\"totalSize\":20480}\n"
        );
        assert_eq!(
            format_status(&s, OutputFormat::Fields).unwrap(),
            "\"Hash\" : 472560624\n\"Revision\" : 7\n\"Keys\" : 12\n\"Size\" : 20480\n"
        );
        assert_eq!(
            format_status(&s, OutputFormat::Table).unwrap(),
            "+----------+----------+------------+------------+\n\
             |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
             +----------+----------+------------+------------+\n\
             | 1c2ab3f0 |        7 |         12 |      20 kB |\n\
             +----------+----------+------------+------------+\n"
        );
        assert!(format_status(&s, OutputFormat::Protobuf).is_err());
    }
}
