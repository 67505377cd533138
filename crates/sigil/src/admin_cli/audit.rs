//! `sigil audit list|export|verify|keys`: the server's audit log read through the admin API,
//! exported as JSON lines, and verified either by the server (against its store) or here,
//! offline, from an export file.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use sigil_api::{AuditKeyList, AuditQuery, AuditRecordList, AuditVerification, paths};
use sigil_audit::export::{ExportError, KeySource, verify_export};
use sigil_audit::{AuditKey, AuditRecord, TrustedKeys};

use super::client::{AdminClient, describe_io_error};
use super::output::{Block, ListWriter, emit, emit_json, format_time, with_query};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, oldest first, optionally filtered.
    List(ListArgs),
    /// Export the whole chain as JSON lines (keys, checkpoints, records, a closing checkpoint).
    Export(ExportArgs),
    /// Verify the chain: the server's (against its store), or an export file offline.
    Verify(VerifyArgs),
    /// List the replicas' audit signing keys.
    Keys(KeysArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only records by this actor (a SPIFFE ID, `uid:N`, `server`).
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Only this action (`entry.create`), or every action under a prefix ending in `.`
    /// (`entry.`).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only records about this target.
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Only this outcome: success, failure or denied.
    #[arg(long, value_name = "OUTCOME")]
    pub outcome: Option<String>,
    /// Only records at or after this time (Unix milliseconds).
    #[arg(long, value_name = "UNIX_MS")]
    pub since: Option<String>,
    /// Only records before this time (Unix milliseconds).
    #[arg(long, value_name = "UNIX_MS")]
    pub until: Option<String>,
    /// Only records after this sequence number.
    #[arg(long, value_name = "SEQ")]
    pub after: Option<String>,
    /// Most records shown (all when absent).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The file to write (created new next to its target and renamed into place, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify this export offline instead of asking the server.
    #[arg(long, value_name = "EXPORT")]
    pub file: Option<PathBuf>,
    /// With `--file`: trust only the keys in this file (the JSON of `sigil audit keys --output
    /// json`, taken from the server beforehand); without it the export's own keys are used,
    /// which proves the file is intact but not who wrote it.
    #[arg(long, value_name = "KEYS", requires = "file")]
    pub trusted_keys: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List(args) => list(args).await,
        AuditCommand::Export(args) => export(&args).await,
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Keys(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let keys: AuditKeyList = client.get(paths::AUDIT_KEYS).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&keys),
                OutputFormat::Text => {
                    let mut writer = ListWriter::new(OutputFormat::Text, "keys", "key", "keys");
                    writer.page(&keys.keys, true, key_block)
                }
            }
        }
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let mut query = AuditQuery {
        actor: args.actor,
        action: args.action,
        target: args.target,
        outcome: args.outcome,
        since: args.since,
        until: args.until,
        after: args.after,
        page_size: None,
    };
    let mut left = args.limit;
    let mut writer = ListWriter::new(args.out.output, "records", "record", "records");
    loop {
        let size = left.map_or(sigil_api::audit::MAX_AUDIT_PAGE, |n| {
            u32::try_from(n.min(u64::from(sigil_api::audit::MAX_AUDIT_PAGE))).unwrap_or(1)
        });
        query.page_size = Some(size.max(1).to_string());
        let mut page: AuditRecordList = client
            .get(&with_query(paths::AUDIT, &query.to_query_string()))
            .await?;
        if let Some(n) = left {
            page.records
                .truncate(usize::try_from(n).unwrap_or(usize::MAX));
            left = Some(n - page.records.len() as u64);
        }
        let last = page.next_after.is_none() || left == Some(0);
        writer.page(&page.records, last, record_block)?;
        match page.next_after {
            Some(after) if !last => query.after = Some(after.to_string()),
            _ => return Ok(()),
        }
    }
}

async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let (temp, file) = create_beside(&args.file)?;
    let mut out = BufWriter::new(file);
    let written = client.download(paths::AUDIT_EXPORT, &mut out).await;
    let finished = written.and_then(|n| {
        let file = out
            .into_inner()
            .map_err(|e| anyhow!("cannot write {}: {}", temp.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", temp.display()))?;
        std::fs::rename(&temp, &args.file).map_err(|e| {
            anyhow!(
                "cannot move the export into place at {}: {}",
                args.file.display(),
                describe_io_error(&e)
            )
        })?;
        Ok(n)
    });
    match finished {
        Ok(bytes) => emit(&format!(
            "exported the audit log to {} ({bytes} bytes)\n",
            args.file.display()
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// A new file (mode 0600, never an existing file or link) in the directory of `target`, to be
/// renamed over it once complete.
fn create_beside(target: &Path) -> anyhow::Result<(PathBuf, File)> {
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("cannot export to {}: not a file name", target.display()))?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = dir.join(format!(
        ".{}.{}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| {
            anyhow!(
                "cannot export to {}: cannot create a file in {}: {}",
                target.display(),
                dir.display(),
                describe_io_error(&e)
            )
        })?;
    Ok((temp, file))
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let Some(file) = &args.file else {
        let client = AdminClient::new(&args.conn.admin_socket);
        let verdict: AuditVerification = client.post_empty(paths::AUDIT_VERIFY).await?;
        return finish(args.out.output, &verdict);
    };
    let keys = match &args.trusted_keys {
        None => KeySource::Embedded,
        Some(path) => KeySource::Trusted(read_trusted_keys(path)?),
    };
    let reader = File::open(file)
        .map_err(|e| anyhow!("cannot open {}: {}", file.display(), describe_io_error(&e)))?;
    let verdict = match verify_export(BufReader::new(reader), keys) {
        Ok(summary) => AuditVerification::verified(&summary, "the export"),
        Err(ExportError::Read(e)) => {
            bail!("cannot read {}: {}", file.display(), describe_io_error(&e))
        }
        Err(e) => {
            let break_at = match &e {
                ExportError::Break { source, .. } => Some(source.position),
                ExportError::NoEnd { last_seq } => Some(last_seq + 1),
                _ => None,
            };
            AuditVerification {
                verified: false,
                records: 0,
                last_seq: 0,
                signed_through: 0,
                checkpoints: 0,
                break_at,
                message: format!("{}: {e}", file.display()),
            }
        }
    };
    finish(args.out.output, &verdict)
}

/// Prints the verdict; a chain that does not verify is an error (non-zero exit) naming where it
/// breaks.
fn finish(format: OutputFormat, verdict: &AuditVerification) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        emit_json(verdict)?;
    }
    if verdict.verified {
        if format == OutputFormat::Text {
            emit(&format!("{}\n", verdict.message))?;
        }
        Ok(())
    } else {
        Err(anyhow!(
            "the audit chain does not verify: {}",
            verdict.message
        ))
    }
}

/// The keys of a `sigil audit keys --output json` file (or a bare JSON list of keys).
fn read_trusted_keys(path: &Path) -> anyhow::Result<TrustedKeys> {
    let text = crate::pem_files::read_bounded(path, "trusted keys file")?;
    let keys: Vec<AuditKey> = match serde_json::from_str::<AuditKeyList>(&text) {
        Ok(list) => list.keys,
        Err(_) => serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{} is not a list of audit keys (the JSON of `sigil audit keys --output json`): {e}",
                path.display()
            )
        })?,
    };
    if keys.is_empty() {
        bail!("{} lists no audit keys", path.display());
    }
    TrustedKeys::from_keys(&keys).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn record_block(record: &AuditRecord) -> Block {
    Block::default()
        .line("Seq", record.seq.to_string())
        .line("Time", format_time(record.event.time.div_euclid(1000)))
        .optional("Replica", &record.event.replica)
        .line("Actor", record.event.actor.clone())
        .line("Action", record.event.action.clone())
        .optional("Target", &record.event.target)
        .line("Outcome", record.event.outcome.as_str())
        .optional("Details", &record.event.details)
}

fn key_block(key: &AuditKey) -> Block {
    Block::default()
        .line("Key ID", key.key_id.clone())
        .optional("Replica", &key.replica)
        .line("Registered", format_time(key.created_at.div_euclid(1000)))
}
