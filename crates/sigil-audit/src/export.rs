//! The export format, JSON lines: a header, the audit keys, the checkpoints, the records in
//! sequence order, and a closing checkpoint over the last record signed when the export was
//! made. Verifying an export needs nothing but the file (and, to not take the keys from the
//! file itself, the keys to trust); lines are read one at a time, each bounded in size.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::checkpoint::{AuditKey, Checkpoint, TrustedKeys};
use crate::record::AuditRecord;
use crate::verify::{Break, ChainVerifier, Problem, Summary};

/// The `format` named in an export's header.
pub const EXPORT_FORMAT: &str = "sigil-audit-export";
/// The export format version this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;
/// Longest line accepted in an export, in bytes (a record is at most about 15 KiB).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Header {
        format: String,
        version: u32,
    },
    Key(AuditKey),
    Checkpoint(Checkpoint),
    Record(AuditRecord),
    /// The closing checkpoint: covers the last record, so a cut file is detected.
    End(Checkpoint),
}

/// Why an export does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the export: {0}")]
    Read(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    #[error(transparent)]
    Key(AuditError),
    #[error("line {line}: {source}")]
    Break {
        line: u64,
        #[source]
        source: Break,
    },
    #[error(
        "the export ends without its closing checkpoint after seq {last_seq}: it was cut short (truncated)"
    )]
    NoEnd { last_seq: u64 },
}

impl ExportLine {
    /// The header line of this build's format.
    pub fn header() -> Self {
        Self::Header {
            format: EXPORT_FORMAT.to_owned(),
            version: EXPORT_VERSION,
        }
    }
}

/// What the keys of an export are checked against.
pub enum KeySource {
    /// The keys the export lists (proves the file is self-consistent, not who wrote it).
    Embedded,
    /// Only these keys; keys the export lists are ignored.
    Trusted(TrustedKeys),
}

/// Reads and verifies an export: header, keys, checkpoints, then records, then the closing
/// checkpoint, which must cover the last record. Fails on the first malformed line, the first
/// break of the chain (naming its line and sequence), or a missing closing checkpoint.
pub fn verify_export(reader: impl BufRead, keys: KeySource) -> Result<Summary, ExportError> {
    let mut lines = BoundedLines::new(reader);
    let mut embedded: Vec<AuditKey> = Vec::new();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    match lines.next_line()? {
        Some((_, ExportLine::Header { format, version }))
            if format == EXPORT_FORMAT && version == EXPORT_VERSION => {}
        Some((line, ExportLine::Header { format, version })) => {
            return Err(ExportError::Malformed {
                line,
                reason: format!("unsupported format `{format}` version {version}"),
            });
        }
        Some((line, _)) => {
            return Err(ExportError::Malformed {
                line,
                reason: "the first line is not the export header".to_owned(),
            });
        }
        None => return Err(ExportError::NoEnd { last_seq: 0 }),
    }
    let trusted = |embedded: &[AuditKey]| match &keys {
        KeySource::Embedded => TrustedKeys::from_keys(embedded).map_err(ExportError::Key),
        KeySource::Trusted(keys) => Ok(keys.clone()),
    };
    let mut verifier: Option<(ChainVerifier, TrustedKeys)> = None;
    let mut last_seq = 0;
    while let Some((line, parsed)) = lines.next_line()? {
        let out_of_place = |what: &str| ExportError::Malformed {
            line,
            reason: format!("{what} after the records began"),
        };
        match parsed {
            ExportLine::Header { .. } => {
                return Err(ExportError::Malformed {
                    line,
                    reason: "a second header".to_owned(),
                });
            }
            ExportLine::Key(key) if verifier.is_none() => embedded.push(key),
            ExportLine::Key(_) => return Err(out_of_place("a key")),
            ExportLine::Checkpoint(cp) if verifier.is_none() => checkpoints.push(cp),
            ExportLine::Checkpoint(_) => return Err(out_of_place("a checkpoint")),
            ExportLine::Record(record) => {
                if verifier.is_none() {
                    let keys = trusted(&embedded)?;
                    let v = ChainVerifier::new(std::mem::take(&mut checkpoints), &keys)
                        .map_err(|source| ExportError::Break { line, source })?;
                    verifier = Some((v, keys));
                }
                if let Some((v, _)) = verifier.as_mut() {
                    v.push(&record)
                        .map_err(|source| ExportError::Break { line, source })?;
                    last_seq = record.seq;
                }
            }
            ExportLine::End(end) => {
                let (v, keys) = match verifier.take() {
                    Some(started) => started,
                    None => {
                        let keys = trusted(&embedded)?;
                        let v = ChainVerifier::new(std::mem::take(&mut checkpoints), &keys)
                            .map_err(|source| ExportError::Break { line, source })?;
                        (v, keys)
                    }
                };
                let summary = v
                    .finish()
                    .map_err(|source| ExportError::Break { line, source })?;
                let at = |problem| ExportError::Break {
                    line,
                    source: Break {
                        position: end.seq,
                        problem,
                    },
                };
                end.verify(&keys).map_err(|e| at(Problem::Checkpoint(e)))?;
                if end.seq > summary.last_seq {
                    return Err(at(Problem::Truncated {
                        last: summary.last_seq,
                    }));
                }
                if end.seq != summary.last_seq || end.hash != summary.last_hash {
                    return Err(at(Problem::CheckpointMismatch {
                        key_id: end.key_id.clone(),
                    }));
                }
                if let Some((line, _)) = lines.next_line()? {
                    return Err(ExportError::Malformed {
                        line,
                        reason: "lines after the closing checkpoint".to_owned(),
                    });
                }
                return Ok(Summary {
                    signed_through: summary.last_seq,
                    checkpoints: summary.checkpoints + 1,
                    ..summary
                });
            }
        }
    }
    Err(ExportError::NoEnd { last_seq })
}

/// Lines of at most [`MAX_LINE_BYTES`], parsed as [`ExportLine`]s, numbered from 1.
struct BoundedLines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> BoundedLines<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    fn next_line(&mut self) -> Result<Option<(u64, ExportLine)>, ExportError> {
        loop {
            self.buf.clear();
            let limit = u64::try_from(MAX_LINE_BYTES + 1).unwrap_or(u64::MAX);
            let read =
                std::io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buf)?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(ExportError::Malformed {
                    line: self.line,
                    reason: format!("longer than {MAX_LINE_BYTES} bytes"),
                });
            }
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let parsed = serde_json::from_slice(text).map_err(|e| ExportError::Malformed {
                line: self.line,
                reason: e.to_string(),
            })?;
            return Ok(Some((self.line, parsed)));
        }
    }
}

#[cfg(test)]
mod tests {
    use sigil_keys::PrivateKey;

    use super::*;
    use crate::record::{AuditEvent, GENESIS_HASH, Outcome};

    fn export(n: u64, key: &PrivateKey) -> Vec<String> {
        let mut lines = vec![
            ExportLine::header(),
            ExportLine::Key(AuditKey::for_key(key, "", 0)),
        ];
        let mut prev = GENESIS_HASH.to_owned();
        let mut records = Vec::new();
        for seq in 1..=n {
            let r = AuditEvent {
                time: 0,
                replica: String::new(),
                actor: "uid:0".to_owned(),
                action: "entry.create".to_owned(),
                target: format!("e{seq}"),
                outcome: Outcome::Success,
                details: r#"{"status":201}"#.to_owned(),
            }
            .into_record(seq, prev.clone());
            prev.clone_from(&r.hash);
            records.push(r);
        }
        let mid = &records[1];
        lines.push(ExportLine::Checkpoint(
            Checkpoint::sign(key, "", mid.seq, &mid.hash, 0).unwrap(),
        ));
        lines.extend(records.iter().cloned().map(ExportLine::Record));
        lines.push(ExportLine::End(
            Checkpoint::sign(key, "", n, &prev, 0).unwrap(),
        ));
        lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect()
    }

    fn check(lines: &[String], keys: KeySource) -> Result<Summary, ExportError> {
        verify_export(lines.join("\n").as_bytes(), keys)
    }

    #[test]
    fn an_export_verifies_and_a_cut_one_does_not() {
        let key = PrivateKey::generate().unwrap();
        let lines = export(5, &key);
        let s = check(&lines, KeySource::Embedded).unwrap();
        assert_eq!((s.records, s.signed_through, s.checkpoints), (5, 5, 2));

        let cut = &lines[..lines.len() - 2];
        let e = check(cut, KeySource::Embedded).unwrap_err();
        assert!(matches!(e, ExportError::NoEnd { last_seq: 4 }), "{e}");
    }

    #[test]
    fn pinned_keys_refuse_an_export_signed_by_another() {
        let key = PrivateKey::generate().unwrap();
        let other = PrivateKey::generate().unwrap();
        let lines = export(3, &other);
        let pinned = TrustedKeys::from_keys([&AuditKey::for_key(&key, "", 0)]).unwrap();
        let e = check(&lines, KeySource::Trusted(pinned)).unwrap_err();
        assert!(e.to_string().contains("not a trusted audit key"), "{e}");
    }

    #[test]
    fn an_edited_line_is_named_by_line_and_seq() {
        let key = PrivateKey::generate().unwrap();
        let mut lines = export(5, &key);
        // Header, key, checkpoint, then the records from line 4 (seq 1): seq 3 is line 6.
        lines[5] = lines[5].replace("\"e3\"", "\"e9\"");
        let e = check(&lines, KeySource::Embedded).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 6: chain breaks at seq 3: the record's hash does not match its contents (edited)"
        );
    }

    #[test]
    fn bounds_and_malformed_lines_are_refused() {
        let long = format!("{}\n", "x".repeat(MAX_LINE_BYTES + 10));
        let e = verify_export(long.as_bytes(), KeySource::Embedded).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let e = verify_export(&b"{\"type\":\"record\"}\n"[..], KeySource::Embedded).unwrap_err();
        assert!(e.to_string().starts_with("line 1:"), "{e}");
    }
}
