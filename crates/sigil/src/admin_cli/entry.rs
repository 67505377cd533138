//! `sigil entry create|list|show|update|delete`. The server validates every field; these
//! commands only shape the request, so a bad value gets the server's own message.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use sigil_api::{
    Entry, EntryBatch, EntryBatchRequest, EntryList, EntryQuery, EntryRequest, MAX_ENTRY_BATCH,
    MAX_REQUEST_BODY_BYTES, PageQuery, TtlValue, paths,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::client::AdminClient;
use super::output::{
    Block, ListWriter, emit, emit_json, format_time, format_ttl, with_query, yes_no,
};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

/// TTL flag value that asks for the server default.
const DEFAULT_TTL_WORD: &str = "default";
/// Room left in a batch request's body for the `{"entries":[...]}` around the entries.
const BATCH_ENVELOPE_BYTES: usize = 64;

#[derive(Debug, Subcommand)]
pub enum EntryCommand {
    /// Create a registration entry.
    Create(CreateArgs),
    /// List registration entries, optionally filtered.
    List(ListArgs),
    /// Show one registration entry.
    Show(IdArgs),
    /// Change the given fields of an entry (others are kept).
    Update(UpdateArgs),
    /// Delete a registration entry.
    Delete(IdArgs),
    /// Record that an owner reviewed an entry and still needs it (clears the
    /// `entry_not_reviewed` finding until the next review is due).
    Review(ReviewArgs),
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Entry id.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// Who reviewed it: the owner (team or person) confirming it is still needed.
    #[arg(long = "by", value_name = "OWNER")]
    pub reviewed_by: String,
    /// Why it is still needed, or what was checked.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub note: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// The fields of an entry, all optional on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct EntryFields {
    /// SPIFFE ID to issue, e.g. spiffe://example.org/web.
    #[arg(long, value_name = "ID")]
    pub spiffe_id: Option<String>,
    /// Parent: an agent's SPIFFE ID or a node alias.
    #[arg(long, value_name = "ID")]
    pub parent_id: Option<String>,
    /// Selector `type:value`, e.g. unix:uid:1000 (repeat for several; all must match).
    #[arg(long = "selector", value_name = "SELECTOR")]
    pub selectors: Vec<String>,
    /// X509-SVID lifetime, e.g. 1h, or `default`.
    #[arg(long, value_name = "TTL")]
    pub x509_svid_ttl: Option<String>,
    /// JWT-SVID lifetime, e.g. 5m, or `default`.
    #[arg(long, value_name = "TTL")]
    pub jwt_svid_ttl: Option<String>,
    /// DNS name for the X509-SVID (repeat for several).
    #[arg(long = "dns-name", value_name = "NAME")]
    pub dns_names: Vec<String>,
    /// Trust domain whose bundle the workload also receives (repeat for several).
    #[arg(long = "federates-with", value_name = "TD")]
    pub federates_with: Vec<String>,
    /// Grant admin rights (`--admin` or `--admin=false`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub admin: Option<bool>,
    /// Entry for a downstream server (`--downstream` or `--downstream=false`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub downstream: Option<bool>,
    /// Hint that tells workloads apart when they receive several identities.
    #[arg(long, value_name = "TEXT")]
    pub hint: Option<String>,
    /// Team or contact accountable for this identity (required on create).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Free-text description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Label `key=value` that policy reads as the workload's `labels` (repeat for several; on
    /// update they replace the entry's labels whole).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// When the entry stops being served: Unix seconds, or `never`.
    #[arg(long, value_name = "WHEN", value_parser = parse_expires_at)]
    pub expires_at: Option<Expiry>,
}

/// `--expires-at`: a Unix time or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    At(i64),
}

/// `--label`: split at the first `=` (a key never holds one; a value may). The server checks the
/// key and value themselves.
fn parse_label(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{value}` is not KEY=VALUE")),
    }
}

fn parse_expires_at(value: &str) -> Result<Expiry, String> {
    if value == "never" {
        return Ok(Expiry::Never);
    }
    value
        .parse::<i64>()
        .map(Expiry::At)
        .map_err(|_| format!("`{value}` is neither Unix seconds nor `never`"))
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub fields: EntryFields,
    /// Create the entries in this file instead of one from the flags (`/dev/stdin` reads
    /// standard input).
    /// Newline-delimited JSON: one entry per line, a JSON object with the fields of the admin
    /// API's entry create body (`spiffe_id`, `parent_id`, `selectors` as a list of `type:value`,
    /// `owner`, and optionally `x509_svid_ttl`, `jwt_svid_ttl`, `dns_names`, `federates_with`,
    /// `admin`, `downstream`, `hint`, `description`, `labels` as an object of strings,
    /// `expires_at`); blank lines are skipped.
    /// Sent in batches of up to 1000 entries, each created all or nothing: the first refused
    /// entry (named by its line) stops the command, the batches before it stay created and
    /// nothing after it is.
    #[arg(long, value_name = "PATH", conflicts_with = "EntryFields")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only entries with this SPIFFE ID.
    #[arg(long, value_name = "ID")]
    pub spiffe_id: Option<String>,
    /// Only entries with this parent ID.
    #[arg(long, value_name = "ID")]
    pub parent_id: Option<String>,
    /// Only entries having this selector (repeat: all must be present).
    #[arg(long = "selector", value_name = "SELECTOR")]
    pub selectors: Vec<String>,
    /// Only entries with this owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Only entries whose SPIFFE ID starts with this text (compared literally).
    #[arg(long, value_name = "PREFIX")]
    pub spiffe_id_prefix: Option<String>,
    /// Only entries that federate with this trust domain.
    #[arg(long, value_name = "TD")]
    pub federates_with: Option<String>,
    /// Entries asked of the server per request (the server's default when absent).
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Entry id.
    #[arg(long, value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Entry id.
    #[arg(long, value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub fields: EntryFields,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Runs one `sigil entry` command.
pub async fn run(command: EntryCommand) -> anyhow::Result<()> {
    match command {
        EntryCommand::Create(CreateArgs {
            file: Some(path),
            out,
            conn,
            ..
        }) => {
            let client = AdminClient::new(&conn.admin_socket);
            create_from_file(&client, &path, out.output).await
        }
        EntryCommand::Create(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let request = args.fields.apply_to(EntryRequest::default());
            let entry: Entry = client.post(paths::ENTRIES, &request).await?;
            print_entry(&entry, args.out.output)
        }
        EntryCommand::List(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let mut query = EntryQuery {
                spiffe_id: args.spiffe_id,
                spiffe_id_prefix: args.spiffe_id_prefix,
                parent_id: args.parent_id,
                selectors: args.selectors,
                owner: args.owner,
                federates_with: args.federates_with,
                page: PageQuery {
                    page_size: args.page_size.map(|n| n.to_string()),
                    page_token: None,
                },
            };
            let mut writer = ListWriter::new(args.out.output, "entries", "entry", "entries");
            loop {
                let path = with_query(paths::ENTRIES, &query.to_query_string());
                let page: EntryList = client.get(&path).await?;
                let next = page.next_page_token.filter(|t| !t.is_empty());
                writer.page(&page.entries, next.is_none(), entry_block)?;
                match next {
                    Some(token) => query.page.page_token = Some(token),
                    None => return Ok(()),
                }
            }
        }
        EntryCommand::Show(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let entry: Entry = client.get(&paths::entry(&args.id)).await?;
            print_entry(&entry, args.out.output)
        }
        EntryCommand::Update(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let path = paths::entry(&args.id);
            let current: Entry = client.get(&path).await?;
            let request = args.fields.apply_to(current.to_update_request());
            let updated: Entry = client.put(&path, &request).await?;
            print_entry(&updated, args.out.output)
        }
        EntryCommand::Delete(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let deleted: Entry = client.delete(&paths::entry(&args.id)).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&deleted),
                OutputFormat::Text => emit(&format!(
                    "Deleted entry {} ({})\n",
                    deleted.id, deleted.spiffe_id
                )),
            }
        }
        EntryCommand::Review(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let review: sigil_api::EntryReview = client
                .post(
                    &format!("{}/review", paths::entry(&args.id)),
                    &sigil_api::EntryReviewRequest {
                        reviewed_by: args.reviewed_by,
                        note: args.note,
                    },
                )
                .await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&review),
                OutputFormat::Text => emit(&format!(
                    "Entry {} reviewed by {} at {}\n",
                    review.entry_id,
                    review.reviewed_by,
                    super::output::format_time(review.reviewed_at)
                )),
            }
        }
    }
}

/// `sigil entry create --file PATH`: reads newline-delimited entries from `path` and creates
/// them in batches of at most [`MAX_ENTRY_BATCH`] entries and [`MAX_REQUEST_BODY_BYTES`] of
/// request body, one batch in flight. Prints the created entries as `{"entries": [...]}` (JSON)
/// or one `Created entry ID (SPIFFE ID)` line each and a count (text).
async fn create_from_file(
    client: &AdminClient,
    path: &Path,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open the entries file {}", path.display()))?;
    let mut lines = EntryLines {
        input: BufReader::new(file),
        line: 0,
    };
    let mut out = CreatedWriter {
        json: ListWriter::new(format, "entries", "entry", "entries"),
        format,
        count: 0,
    };
    let mut batch = PendingBatch::default();
    loop {
        let next = lines.next().await.map_err(|err| {
            let created = match out.count {
                0 => "nothing was created".to_owned(),
                n => format!("only the {n} entries of the batches sent before were created"),
            };
            anyhow!("{err:#} ({created})")
        })?;
        let Some((line, request, size)) = next else {
            break;
        };
        if !batch.fits(size) {
            send_batch(client, &mut batch, &mut out, false).await?;
        }
        batch.push(line, request, size);
    }
    send_batch(client, &mut batch, &mut out, true).await
}

/// Writes what the batches created, as they are answered.
struct CreatedWriter {
    json: ListWriter,
    format: OutputFormat,
    /// Entries created so far.
    count: usize,
}

impl CreatedWriter {
    fn batch(&mut self, entries: &[Entry], last: bool) -> anyhow::Result<()> {
        self.count += entries.len();
        match self.format {
            OutputFormat::Json => self.json.page(entries, last, entry_block),
            OutputFormat::Text => {
                let mut text = String::new();
                for entry in entries {
                    text.push_str(&format!(
                        "Created entry {} ({})\n",
                        entry.id, entry.spiffe_id
                    ));
                }
                if last {
                    let noun = if self.count == 1 { "entry" } else { "entries" };
                    text.push_str(&format!("Created {} {noun}\n", self.count));
                }
                emit(&text)
            }
        }
    }
}

/// Entries read but not yet sent, with the line each came from.
#[derive(Default)]
struct PendingBatch {
    entries: Vec<EntryRequest>,
    lines: Vec<usize>,
    bytes: usize,
}

impl PendingBatch {
    /// Whether one more entry of `size` JSON bytes may join this batch.
    fn fits(&self, size: usize) -> bool {
        self.entries.len() < MAX_ENTRY_BATCH
            && self.bytes + size < MAX_REQUEST_BODY_BYTES - BATCH_ENVELOPE_BYTES
    }

    fn push(&mut self, line: usize, request: EntryRequest, size: usize) {
        self.entries.push(request);
        self.lines.push(line);
        self.bytes += size + 1;
    }
}

/// Sends `batch` (emptying it) and writes what it created.
async fn send_batch(
    client: &AdminClient,
    batch: &mut PendingBatch,
    out: &mut CreatedWriter,
    last: bool,
) -> anyhow::Result<()> {
    let pending = std::mem::take(batch);
    if pending.entries.is_empty() {
        return out.batch(&[], last);
    }
    let request = EntryBatchRequest {
        entries: pending.entries,
    };
    let answer: EntryBatch = client
        .post(paths::ENTRIES_BATCH_CREATE, &request)
        .await
        .map_err(|err| {
            let message = format!("{err:#}");
            let message = locate_in_batch(&message, &pending.lines).unwrap_or(message);
            let (first, end) = (
                pending.lines.first().copied().unwrap_or_default(),
                pending.lines.last().copied().unwrap_or_default(),
            );
            let created = match out.count {
                0 => "nothing was created".to_owned(),
                n => format!("only the {n} entries before line {first} were created"),
            };
            anyhow!("{message} (lines {first} to {end} were one batch, so {created})")
        })?;
    out.batch(&answer.entries, last)
}

/// The server's "entry N of the batch: reason" as "line L: reason", L being entry N's line.
fn locate_in_batch(message: &str, lines: &[usize]) -> Option<String> {
    let (head, reason) = message.split_once(" of the batch: ")?;
    let (before, index) = head.rsplit_once("entry ")?;
    let line = lines.get(index.parse::<usize>().ok()?)?;
    Some(format!("{before}line {line}: {reason}"))
}

/// The entries of a newline-delimited JSON input, with their line numbers.
struct EntryLines {
    input: BufReader<tokio::fs::File>,
    line: usize,
}

impl EntryLines {
    /// The next entry: its line, the request, and the size of its JSON; `None` at the end.
    /// A line longer than a request body may be is refused without being read whole.
    async fn next(&mut self) -> anyhow::Result<Option<(usize, EntryRequest, usize)>> {
        let limit = MAX_REQUEST_BODY_BYTES - BATCH_ENVELOPE_BYTES;
        loop {
            let mut buf = Vec::new();
            let read = (&mut self.input)
                .take(u64::try_from(limit).unwrap_or(u64::MAX) + 1)
                .read_until(b'\n', &mut buf)
                .await
                .context("cannot read the entries file")?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            let line = self.line;
            if buf.len() > limit && buf.last() != Some(&b'\n') {
                return Err(anyhow!("line {line} is longer than {limit} bytes"));
            }
            let text = std::str::from_utf8(&buf)
                .map_err(|_| anyhow!("line {line} is not UTF-8"))?
                .trim();
            if text.is_empty() {
                continue;
            }
            // serde would read a positional array into the struct; the API takes objects only.
            if !text.starts_with('{') {
                return Err(anyhow!(
                    "line {line} is not an entry: expected a JSON object"
                ));
            }
            let request: EntryRequest = serde_json::from_str(text)
                .map_err(|err| anyhow!("line {line} is not an entry: {err}"))?;
            let size = serde_json::to_vec(&request)
                .context("cannot encode an entry as JSON")?
                .len();
            return Ok(Some((line, request, size)));
        }
    }
}

impl EntryFields {
    /// `request` with every field given on the command line replaced (lists replace whole).
    pub fn apply_to(self, mut request: EntryRequest) -> EntryRequest {
        if let Some(v) = self.spiffe_id {
            request.spiffe_id = Some(v);
        }
        if let Some(v) = self.parent_id {
            request.parent_id = Some(v);
        }
        if !self.selectors.is_empty() {
            request.selectors = self.selectors;
        }
        if let Some(v) = self.x509_svid_ttl {
            request.x509_svid_ttl = Some(ttl_value(v));
        }
        if let Some(v) = self.jwt_svid_ttl {
            request.jwt_svid_ttl = Some(ttl_value(v));
        }
        if !self.dns_names.is_empty() {
            request.dns_names = self.dns_names;
        }
        if !self.federates_with.is_empty() {
            request.federates_with = self.federates_with;
        }
        if let Some(v) = self.admin {
            request.admin = v;
        }
        if let Some(v) = self.downstream {
            request.downstream = v;
        }
        if let Some(v) = self.hint {
            request.hint = v;
        }
        if let Some(v) = self.owner {
            request.owner = Some(v);
        }
        if let Some(v) = self.description {
            request.description = v;
        }
        if !self.labels.is_empty() {
            request.labels = self.labels.into_iter().collect();
        }
        match self.expires_at {
            Some(Expiry::Never) => request.expires_at = None,
            Some(Expiry::At(t)) => request.expires_at = Some(t),
            None => {}
        }
        request
    }
}

/// `default` asks for the server default (0); anything else goes to the server to parse.
fn ttl_value(flag: String) -> TtlValue {
    if flag == DEFAULT_TTL_WORD {
        TtlValue::Seconds(0)
    } else {
        TtlValue::Text(flag)
    }
}

fn print_entry(entry: &Entry, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => emit_json(entry),
        OutputFormat::Text => emit(&entry_block(entry).render()),
    }
}

fn entry_block(e: &Entry) -> Block {
    Block::default()
        .line("Entry ID", e.id.clone())
        .line("SPIFFE ID", e.spiffe_id.clone())
        .line("Parent ID", e.parent_id.clone())
        .line("Revision", e.revision.to_string())
        .line("Owner", e.owner.clone())
        .line("X509-SVID TTL", format_ttl(e.x509_svid_ttl))
        .line("JWT-SVID TTL", format_ttl(e.jwt_svid_ttl))
        .lines("Selector", e.selectors.iter().cloned())
        .lines("DNS name", e.dns_names.iter().cloned())
        .lines("FederatesWith", e.federates_with.iter().cloned())
        .line("Admin", yes_no(e.admin))
        .line("Downstream", yes_no(e.downstream))
        .optional("Hint", &e.hint)
        .optional("Description", &e.description)
        .lines("Label", e.labels.iter().map(|(k, v)| format!("{k}={v}")))
        .line(
            "Expires at",
            e.expires_at.map_or_else(|| "never".to_owned(), format_time),
        )
        .line("Created at", format_time(e.created_at))
        .line("Updated at", format_time(e.updated_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Entry {
        Entry {
            id: "e1".into(),
            spiffe_id: "spiffe://example.org/web".into(),
            parent_id: "spiffe://example.org/agent".into(),
            selectors: vec!["unix:uid:1000".into()],
            x509_svid_ttl: 3600,
            jwt_svid_ttl: 0,
            dns_names: vec!["web.example".into()],
            federates_with: vec![],
            admin: true,
            downstream: false,
            hint: String::new(),
            owner: "team-web".into(),
            description: "old".into(),
            labels: [("tier".to_owned(), "web".to_owned())].into(),
            expires_at: None,
            revision: 2,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn update_changes_only_the_given_fields_and_pins_the_revision() {
        let fields = EntryFields {
            selectors: vec!["unix:uid:2000".into()],
            admin: Some(false),
            description: Some("new".into()),
            jwt_svid_ttl: Some("5m".into()),
            ..EntryFields::default()
        };
        let req = fields.apply_to(stored().to_update_request());
        assert_eq!(req.revision, Some(2));
        assert_eq!(req.selectors, ["unix:uid:2000"]);
        assert!(!req.admin);
        assert_eq!(req.description, "new");
        assert_eq!(req.jwt_svid_ttl, Some(TtlValue::Text("5m".into())));
        assert_eq!(req.x509_svid_ttl, Some(TtlValue::Seconds(3600)));
        assert_eq!(req.dns_names, ["web.example"]);
        assert_eq!(req.owner.as_deref(), Some("team-web"));
        assert_eq!(req.labels, stored().labels, "labels not given are kept");
    }

    #[test]
    fn labels_given_replace_the_entrys_labels() {
        let fields = EntryFields {
            labels: vec![
                ("zone".into(), "eu=1".into()),
                ("app".into(), String::new()),
            ],
            ..EntryFields::default()
        };
        let req = fields.apply_to(stored().to_update_request());
        let labels: Vec<(&str, &str)> = req
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("app", ""), ("zone", "eu=1")]);
    }

    #[test]
    fn label_flag_is_key_equals_value() {
        assert_eq!(
            parse_label("tier=web=1"),
            Ok(("tier".to_owned(), "web=1".to_owned()))
        );
        assert_eq!(parse_label("tier="), Ok(("tier".to_owned(), String::new())));
        assert_eq!(
            parse_label("tier"),
            Err("`tier` is not KEY=VALUE".to_owned())
        );
        assert!(parse_label("=web").is_err());
    }

    #[test]
    fn expiry_is_unix_seconds_or_never() {
        assert_eq!(parse_expires_at("never"), Ok(Expiry::Never));
        assert_eq!(
            parse_expires_at("1700000000"),
            Ok(Expiry::At(1_700_000_000))
        );
        assert!(parse_expires_at("tomorrow").is_err());
        let mut entry = stored();
        entry.expires_at = Some(5);
        let fields = EntryFields {
            expires_at: Some(Expiry::Never),
            ..EntryFields::default()
        };
        assert_eq!(fields.apply_to(entry.to_update_request()).expires_at, None);
    }

    #[test]
    fn default_ttl_word_asks_for_the_server_default() {
        assert_eq!(ttl_value("default".into()), TtlValue::Seconds(0));
        assert_eq!(ttl_value("0".into()), TtlValue::Text("0".into()));
    }

    #[test]
    fn text_block_reads_like_spire_server() {
        let text = entry_block(&stored()).render();
        assert!(
            text.starts_with("Entry ID      : e1\nSPIFFE ID     : spiffe://example.org/web\n"),
            "{text}"
        );
        assert!(text.contains("Selector      : unix:uid:1000\n"), "{text}");
        assert!(text.contains("JWT-SVID TTL  : default\n"), "{text}");
        assert!(text.contains("X509-SVID TTL : 1h\n"), "{text}");
        assert!(text.contains("Expires at    : never\n"), "{text}");
        assert!(!text.contains("Hint"), "{text}");
        assert!(text.contains("Label         : tier=web\n"), "{text}");
    }
}
