//! `sigil inventory [summary|entries|show|owners|report]`: what the server has issued and to
//! whom, who owns it, and the findings about it (a table, JSON, or Markdown for a ticket or a
//! review document).

use clap::{Args, Subcommand, ValueEnum};
use sigil_api::{
    Finding, FindingQuery, FindingReport, InventoryEntry, InventoryEntryDetail, InventoryEntryList,
    InventoryEntryQuery, InventorySummary, OwnerList, OwnerQuery, OwnerSummary, PageQuery, paths,
};

use super::client::AdminClient;
use super::output::{Block, ListWriter, emit, emit_json, format_time, with_query, yes_no};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Counts (entries, usage, agents, tokens, revocations, federations, issuers, findings)
    /// and owners.
    Summary(SummaryArgs),
    /// Entries with their owner, usage and last review.
    Entries(EntriesArgs),
    /// One entry with the workloads seen using it, the credentials issued under it and the
    /// database credentials served under it.
    Show(ShowArgs),
    /// Owners and what each owns.
    Owners(OwnersArgs),
    /// The findings, each with its OWASP NHI Top 10 risk and a remediation.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct EntriesArgs {
    /// Only entries with exactly this owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Only entries whose SPIFFE ID starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub spiffe_id_prefix: Option<String>,
    /// Only entries unused (or, never used, created) at least this long ago (`30d`).
    #[arg(long, value_name = "DURATION")]
    pub unused_for: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Entry id.
    #[arg(long, value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct OwnersArgs {
    /// Only this owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// `--output` of `sigil inventory report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ReportFormat {
    /// An aligned table.
    #[default]
    Table,
    /// The API's JSON.
    Json,
    /// A Markdown table with a heading, for a ticket or a review document.
    Markdown,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The lowest severity shown: low, medium or high.
    #[arg(long, value_name = "SEVERITY")]
    pub severity: Option<String>,
    /// Only this OWASP NHI risk (`NHI1` … `NHI10`).
    #[arg(long, value_name = "NHI")]
    pub category: Option<String>,
    /// Only this kind of finding (`entry_unused`, `missing_owner`, …).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only findings about things of this owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,
    #[command(flatten)]
    pub conn: AdminConnection,
}

pub async fn run(command: InventoryCommand) -> anyhow::Result<()> {
    match command {
        InventoryCommand::Summary(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let summary: InventorySummary = client.get(paths::INVENTORY).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&summary),
                OutputFormat::Text => emit(&summary_text(&summary)),
            }
        }
        InventoryCommand::Entries(args) => entries(args).await,
        InventoryCommand::Show(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let detail: InventoryEntryDetail =
                client.get(&paths::inventory_entry(&args.id)).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&detail),
                OutputFormat::Text => emit(&detail_text(&detail)),
            }
        }
        InventoryCommand::Owners(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let query = OwnerQuery { owner: args.owner };
            let owners: OwnerList = client
                .get(&with_query(
                    paths::INVENTORY_OWNERS,
                    &query.to_query_string(),
                ))
                .await?;
            let mut writer = ListWriter::new(args.out.output, "owners", "owner", "owners");
            writer.page(&owners.owners, true, owner_block)
        }
        InventoryCommand::Report(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let query = FindingQuery {
                severity: args.severity,
                category: args.category,
                kind: args.kind,
                owner: args.owner,
            };
            let report: FindingReport = client
                .get(&with_query(
                    paths::INVENTORY_REPORT,
                    &query.to_query_string(),
                ))
                .await?;
            match args.output {
                ReportFormat::Json => emit_json(&report),
                ReportFormat::Table => emit(&report_table(&report)),
                ReportFormat::Markdown => emit(&report_markdown(&report)),
            }
        }
    }
}

async fn entries(args: EntriesArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let mut query = InventoryEntryQuery {
        owner: args.owner,
        spiffe_id_prefix: args.spiffe_id_prefix,
        unused_for: args.unused_for,
        page: PageQuery::default(),
    };
    let mut writer = ListWriter::new(args.out.output, "entries", "entry", "entries");
    loop {
        let page: InventoryEntryList = client
            .get(&with_query(
                paths::INVENTORY_ENTRIES,
                &query.to_query_string(),
            ))
            .await?;
        writer.page(&page.entries, page.next_page_token.is_none(), entry_block)?;
        match page.next_page_token {
            Some(token) => query.page.page_token = Some(token),
            None => return Ok(()),
        }
    }
}

fn summary_text(s: &InventorySummary) -> String {
    let mut out = Block::default()
        .line("Generated", format_time(s.generated_at))
        .line(
            "Entries",
            format!("{} ({} node aliases)", s.entries, s.node_aliases),
        )
        .line(
            "Entries used",
            format!(
                "{} ({} workloads, {} fetches, {} SVIDs)",
                s.entries_with_usage, s.workloads, s.fetches, s.svids_issued
            ),
        )
        .line(
            "Agents",
            format!(
                "{} ({} banned, {} seen in the last day)",
                s.agents, s.agents_banned, s.agents_seen_last_day
            ),
        )
        .line("Join tokens pending", s.join_tokens_pending.to_string())
        .line("Revocations", s.revocations.to_string())
        .line("Federations", s.federations.to_string())
        .line("External issuers", s.external_issuers.to_string())
        .line(
            "Findings",
            format!(
                "{} high, {} medium, {} low",
                s.findings.high, s.findings.medium, s.findings.low
            ),
        )
        .render();
    if !s.owners.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["OWNER", "ENTRIES", "FEDERATIONS", "ISSUERS", "FINDINGS"],
            s.owners
                .iter()
                .map(|o| {
                    vec![
                        display_owner(&o.owner),
                        o.entries.to_string(),
                        o.federations.to_string(),
                        o.issuers.to_string(),
                        o.findings.to_string(),
                    ]
                })
                .collect(),
        ));
    }
    out
}

fn entry_block(e: &InventoryEntry) -> Block {
    let usage = e.usage.as_ref().map_or_else(
        || "never".to_owned(),
        |u| {
            format!(
                "last {} ({} workloads, {} fetches, {} SVIDs)",
                format_time(u.last_seen),
                u.workloads,
                u.fetches,
                u.svids_issued
            )
        },
    );
    let review = e.last_review.as_ref().map_or_else(
        || "never".to_owned(),
        |r| format!("{} by {}", format_time(r.reviewed_at), r.reviewed_by),
    );
    Block::default()
        .line("Entry ID", e.id.clone())
        .line("SPIFFE ID", e.spiffe_id.clone())
        .line("Parent ID", e.parent_id.clone())
        .line("Owner", display_owner(&e.owner))
        .line("Created", format_time(e.created_at))
        .line("Used", usage)
        .line("Reviewed", review)
        .line("Admin", yes_no(e.admin))
        .line("Downstream", yes_no(e.downstream))
}

fn detail_text(d: &InventoryEntryDetail) -> String {
    let mut out = entry_block(&InventoryEntry {
        id: d.entry.id.clone(),
        spiffe_id: d.entry.spiffe_id.clone(),
        parent_id: d.entry.parent_id.clone(),
        owner: d.entry.owner.clone(),
        admin: d.entry.admin,
        downstream: d.entry.downstream,
        created_at: d.entry.created_at,
        expires_at: d.entry.expires_at,
        usage: d.usage.clone(),
        last_review: d.last_review.clone(),
    })
    .render();
    out.push_str(&format!("\nWorkloads seen ({}):\n", d.workloads.len()));
    if !d.workloads.is_empty() {
        out.push_str(&table(
            &[
                "AGENT", "UID", "BINARY", "SHA-256", "FIRST", "LAST", "FETCHES", "SVIDS",
            ],
            d.workloads
                .iter()
                .map(|w| {
                    vec![
                        w.agent_id.clone(),
                        w.uid.to_string(),
                        w.binary_path.clone(),
                        w.binary_sha256.chars().take(16).collect(),
                        format_time(w.first_seen),
                        format_time(w.last_seen),
                        w.fetches.to_string(),
                        w.svids_issued.to_string(),
                    ]
                })
                .collect(),
        ));
    }
    if d.workloads_truncated {
        out.push_str("(more workloads than shown)\n");
    }
    out.push_str(&format!(
        "\nCredentials issued ({}):\n",
        d.credentials.len()
    ));
    if !d.credentials.is_empty() {
        out.push_str(&table(
            &["KIND", "ID", "ISSUED TO", "ISSUED", "EXPIRES", "REVOKED"],
            d.credentials
                .iter()
                .map(|c| {
                    vec![
                        c.kind.clone(),
                        c.id.clone(),
                        c.issued_to.clone(),
                        format_time(c.issued_at),
                        format_time(c.expires_at),
                        c.revoked_at.map_or_else(|| "no".to_owned(), format_time),
                    ]
                })
                .collect(),
        ));
    }
    if d.credentials_truncated {
        out.push_str("(more credentials than shown)\n");
    }
    out.push_str(&format!("\nDatabase credentials ({}):\n", d.leases.len()));
    if !d.leases.is_empty() {
        out.push_str(&table(
            &[
                "LEASE", "TARGET", "ROLE", "USER", "STATE", "CREATED", "EXPIRES", "REVOKED",
            ],
            d.leases
                .iter()
                .map(|l| {
                    vec![
                        l.id.clone(),
                        l.target.clone(),
                        l.role.clone(),
                        l.username.clone(),
                        l.state.clone(),
                        format_time(l.created_at),
                        format_time(l.expires_at),
                        revoked_text(l.revoked_at, l.revoke_reason.as_deref()),
                    ]
                })
                .collect(),
        ));
    }
    if d.leases_truncated {
        out.push_str("(more database credentials than shown)\n");
    }
    out
}

/// The REVOKED cell of a lease: `no`, the time, and the reason when there is one.
fn revoked_text(revoked_at: Option<i64>, reason: Option<&str>) -> String {
    match (revoked_at, reason) {
        (None, None) => "no".to_owned(),
        (None, Some(reason)) => format!("in progress ({reason})"),
        (Some(at), None) => format_time(at),
        (Some(at), Some(reason)) => format!("{} ({reason})", format_time(at)),
    }
}

fn owner_block(o: &OwnerSummary) -> Block {
    Block::default()
        .line("Owner", display_owner(&o.owner))
        .line("Entries", o.entries.to_string())
        .line("Federations", o.federations.to_string())
        .line("Issuers", o.issuers.to_string())
        .line("Findings", o.findings.to_string())
}

fn display_owner(owner: &str) -> String {
    if owner.is_empty() {
        "(none)".to_owned()
    } else {
        owner.to_owned()
    }
}

const REPORT_COLUMNS: [&str; 7] = [
    "SEVERITY",
    "RISK",
    "KIND",
    "SUBJECT",
    "OWNER",
    "DETAIL",
    "REMEDIATION",
];

fn report_row(f: &Finding) -> Vec<String> {
    vec![
        f.severity.clone(),
        f.category.clone(),
        f.kind.clone(),
        format!("{} {}", f.subject_kind, f.subject_id),
        display_owner(&f.owner),
        f.detail.clone(),
        f.remediation.clone(),
    ]
}

fn report_table(report: &FindingReport) -> String {
    if report.findings.is_empty() {
        return format!("No findings ({})\n", format_time(report.generated_at));
    }
    let mut out = table(
        &REPORT_COLUMNS,
        report.findings.iter().map(report_row).collect(),
    );
    out.push_str(&format!(
        "\n{} finding(s) at {}\n",
        report.findings.len(),
        format_time(report.generated_at)
    ));
    out
}

fn report_markdown(report: &FindingReport) -> String {
    let mut out = format!(
        "# Sigil NHI findings\n\nGenerated {}: {} finding(s).\n\n",
        format_time(report.generated_at),
        report.findings.len()
    );
    if report.findings.is_empty() {
        return out;
    }
    out.push_str("| Severity | OWASP NHI risk | Kind | Subject | Owner | Detail | Remediation |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for f in &report.findings {
        let cells = [
            f.severity.clone(),
            format!("{} {}", f.category, f.category_name),
            format!("`{}`", f.kind),
            format!("{} `{}`", f.subject_kind, f.subject_id),
            display_owner(&f.owner),
            f.detail.clone(),
            f.remediation.clone(),
        ];
        out.push('|');
        for cell in cells {
            out.push(' ');
            out.push_str(&markdown_cell(&cell));
            out.push_str(" |");
        }
        out.push('\n');
    }
    out
}

/// A table cell's text with the characters that would end the cell or the row escaped.
fn markdown_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// Rows under a header, columns padded to their widest cell (the last column unpadded).
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(detail: &str) -> Finding {
        Finding {
            kind: "entry_unused".to_owned(),
            severity: "medium".to_owned(),
            category: "NHI1:2025".to_owned(),
            category_name: "Improper Offboarding".to_owned(),
            subject_kind: "entry".to_owned(),
            subject_id: "e1".to_owned(),
            owner: String::new(),
            detail: detail.to_owned(),
            remediation: "delete it".to_owned(),
        }
    }

    #[test]
    fn markdown_escapes_what_would_break_the_table() {
        let report = FindingReport {
            generated_at: 0,
            findings: vec![finding("a | b\nc")],
        };
        let text = report_markdown(&report);
        let row = text.lines().last().expect("a row");
        assert!(row.contains(r"a \| b c"), "{row}");
        // Seven cells: eight unescaped bars.
        let bars = row.match_indices('|').count() - row.match_indices(r"\|").count();
        assert_eq!(bars, 8, "{row}");
        assert!(row.contains("NHI1:2025 Improper Offboarding"));
        assert!(row.contains("(none)"));
    }

    #[test]
    fn detail_shows_the_database_credentials_block() {
        use sigil_api::inventory::InventoryLease;

        let entry = serde_json::from_value(serde_json::json!({
            "id": "e1", "spiffe_id": "spiffe://td/a", "parent_id": "spiffe://td/p",
            "selectors": ["unix:uid:1"], "x509_svid_ttl": 0, "jwt_svid_ttl": 0, "dns_names": [],
            "federates_with": [], "admin": false, "downstream": false, "hint": "", "owner": "t",
            "description": "", "expires_at": null, "revision": 1, "created_at": 0, "updated_at": 0,
        }))
        .expect("an entry");
        let lease = |n: u32, revoked: bool| InventoryLease {
            id: format!("lease_{n:032x}"),
            target: "orders-db".to_owned(),
            role: "readonly".to_owned(),
            username: format!("v_readonly_{n}"),
            state: if revoked { "revoked" } else { "active" }.to_owned(),
            created_at: 0,
            expires_at: 3600,
            revoked_at: revoked.then_some(60),
            revoke_reason: revoked.then(|| "expired".to_owned()),
        };
        let mut detail = InventoryEntryDetail {
            entry,
            usage: None,
            last_review: None,
            workloads: Vec::new(),
            workloads_truncated: false,
            credentials: Vec::new(),
            credentials_truncated: false,
            leases: vec![lease(1, false), lease(2, true)],
            leases_truncated: true,
        };
        let text = detail_text(&detail);
        let block = text
            .split_once("Database credentials (2):\n")
            .expect("the block")
            .1;
        let mut lines = block.lines();
        let header = lines.next().expect("a header");
        assert!(header.starts_with("LEASE"), "{text}");
        assert!(header.contains("REVOKED"), "{text}");
        let active = lines.next().expect("a row");
        assert!(active.contains("v_readonly_1"), "{active}");
        assert!(active.ends_with("no"), "{active}");
        let revoked = lines.next().expect("a row");
        assert!(
            revoked.ends_with("1970-01-01T00:01:00Z (expired)"),
            "{revoked}"
        );
        assert_eq!(lines.next(), Some("(more database credentials than shown)"));

        detail.leases.clear();
        detail.leases_truncated = false;
        let text = detail_text(&detail);
        assert!(text.ends_with("\nDatabase credentials (0):\n"), "{text}");
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&["A", "BB"], vec![vec!["xxx".to_owned(), "y".to_owned()]]);
        assert_eq!(text, "A    BB\nxxx  y\n");
    }
}
