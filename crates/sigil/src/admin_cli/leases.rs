//! `sigil lease list|show|renew|revoke`: the leases of brokered database credentials, through
//! the admin API. The server validates every value; these commands only shape the request.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use sigil_api::credentials::LeaseQuery;
use sigil_api::{
    Lease, LeaseList, LeasesRevoked, PageQuery, RenewLeaseRequest, RevokeLeasesRequest, TtlValue,
    paths,
};

use super::client::AdminClient;
use super::output::{Block, ListWriter, emit, emit_json, format_time, with_query};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// List leases, optionally filtered (every filter must match).
    List(ListArgs),
    /// Show one lease.
    Show(IdArgs),
    /// Extend an active lease (never past its maximum).
    Renew(RenewArgs),
    /// Revoke one lease by id, or every active lease matching the filters given.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only leases of this credential target.
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Only leases of this role.
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// Only leases held by this SPIFFE ID.
    #[arg(long, value_name = "ID")]
    pub spiffe_id: Option<String>,
    /// Only leases served under this registration entry.
    #[arg(long, value_name = "ID")]
    pub entry_id: Option<String>,
    /// Only leases requested through this agent (its SPIFFE ID).
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,
    /// Only leases in this state: active, revoking or revoked.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Leases asked of the server per request (the server's default when absent).
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The lease id (`lease_…`).
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The lease id (`lease_…`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// How long from now the credential should last, e.g. 30m (default: the role's default).
    #[arg(long, value_name = "DURATION")]
    pub increment: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The lease id (`lease_…`); or give filters instead.
    #[arg(value_name = "ID", conflicts_with_all = ["spiffe_id", "entry_id", "target", "agent_id"])]
    pub id: Option<String>,
    /// Revoke every active lease held by this SPIFFE ID.
    #[arg(long, value_name = "ID")]
    pub spiffe_id: Option<String>,
    /// Revoke every active lease served under this registration entry.
    #[arg(long, value_name = "ID")]
    pub entry_id: Option<String>,
    /// Revoke every active lease of this credential target.
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Revoke every active lease requested through this agent.
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Runs one `sigil lease` command.
pub async fn run(command: LeaseCommand) -> anyhow::Result<()> {
    match command {
        LeaseCommand::List(args) => list(args).await,
        LeaseCommand::Show(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let lease: Lease = client.get(&paths::lease(&args.id)).await?;
            print_lease(&lease, args.out.output)
        }
        LeaseCommand::Renew(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let request = RenewLeaseRequest {
                increment: args.increment.map(ttl_value),
            };
            let lease: Lease = client.post(&paths::lease_renew(&args.id), &request).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&lease),
                OutputFormat::Text => emit(&format!(
                    "Renewed lease {} until {}\n",
                    lease.id,
                    format_time(lease.expires_at)
                )),
            }
        }
        LeaseCommand::Revoke(args) => revoke(args).await,
    }
}

/// `sigil lease list`: follows the server's pages to the end, writing each as it comes.
async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let mut query = LeaseQuery {
        target: args.target,
        role: args.role,
        spiffe_id: args.spiffe_id,
        entry_id: args.entry_id,
        agent_id: args.agent_id,
        state: args.state,
        page: PageQuery {
            page_size: args.page_size.map(|n| n.to_string()),
            page_token: None,
        },
    };
    let mut writer = ListWriter::new(args.out.output, "leases", "lease", "leases");
    loop {
        let path = with_query(paths::LEASES, &query.to_query_string());
        let page: LeaseList = client.get(&path).await?;
        let next = page.next_page_token.filter(|t| !t.is_empty());
        writer.page(&page.leases, next.is_none(), lease_block)?;
        match next {
            Some(token) => query.page.page_token = Some(token),
            None => return Ok(()),
        }
    }
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    if let Some(id) = args.id {
        let lease: Lease = client.post_empty(&paths::lease_revoke(&id)).await?;
        return match args.out.output {
            OutputFormat::Json => emit_json(&lease),
            OutputFormat::Text => emit(&format!("Revoked lease {}\n", lease.id)),
        };
    }
    let request = RevokeLeasesRequest {
        spiffe_id: args.spiffe_id,
        entry_id: args.entry_id,
        target: args.target,
        agent_id: args.agent_id,
    };
    if request == RevokeLeasesRequest::default() {
        return Err(anyhow!(
            "give a lease id, or at least one of --spiffe-id, --entry-id, --target and --agent-id"
        ));
    }
    let answer: LeasesRevoked = client.post(paths::LEASES_REVOKE, &request).await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&answer)?,
        OutputFormat::Text => emit(&render_revoked(&answer))?,
    }
    if answer.failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "{} of {} leases could not be revoked now; they stay due and the server retries them",
            answer.failed.len(),
            answer.failed.len() + answer.revoked.len()
        ))
    }
}

/// `text` as a TTL: whole seconds when it is a number, else a duration for the server to parse.
fn ttl_value(text: String) -> TtlValue {
    text.parse::<u64>()
        .map_or(TtlValue::Text(text), TtlValue::Seconds)
}

fn render_revoked(answer: &LeasesRevoked) -> String {
    let mut out = String::new();
    for id in &answer.revoked {
        out.push_str(&format!("Revoked lease {id}\n"));
    }
    for failure in &answer.failed {
        out.push_str(&format!(
            "Failed to revoke lease {}: {}\n",
            failure.lease_id, failure.error
        ));
    }
    let noun = if answer.revoked.len() == 1 {
        "lease"
    } else {
        "leases"
    };
    out.push_str(&format!("Revoked {} {noun}\n", answer.revoked.len()));
    out
}

fn print_lease(lease: &Lease, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit_json(lease),
        OutputFormat::Text => emit(&lease_block(lease).render()),
    }
}

/// One lease as a block of aligned lines.
fn lease_block(lease: &Lease) -> Block {
    Block::default()
        .line("Lease ID", lease.id.clone())
        .line("Target", lease.target.clone())
        .line("Role", lease.role.clone())
        .line("SPIFFE ID", lease.spiffe_id.clone())
        .optional("Entry ID", lease.entry_id.as_deref().unwrap_or_default())
        .optional("Agent ID", lease.agent_id.as_deref().unwrap_or_default())
        .line("Username", lease.username.clone())
        .optional("Owner", &lease.owner)
        .line("State", lease.state.clone())
        .line("Created at", format_time(lease.created_at))
        .line("Expires at", format_time(lease.expires_at))
        .line("Max expires at", format_time(lease.max_expires_at))
        .optional(
            "Renewed at",
            &lease.renewed_at.map(format_time).unwrap_or_default(),
        )
        .optional(
            "Revoked at",
            &lease.revoked_at.map(format_time).unwrap_or_default(),
        )
        .optional(
            "Revoke reason",
            lease.revoke_reason.as_deref().unwrap_or_default(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_block_shows_what_is_set() {
        let lease = Lease {
            id: "lease_1".into(),
            target: "orders".into(),
            role: "ro".into(),
            spiffe_id: "spiffe://td/web".into(),
            entry_id: None,
            agent_id: None,
            username: "v_ro_1".into(),
            owner: "team".into(),
            created_at: 0,
            expires_at: 60,
            max_expires_at: 120,
            renewed_at: None,
            state: "active".into(),
            revoked_at: None,
            revoke_reason: None,
        };
        let text = lease_block(&lease).render();
        assert!(text.starts_with("Lease ID       : lease_1\n"), "{text}");
        assert!(
            text.contains("Expires at     : 1970-01-01T00:01:00Z\n"),
            "{text}"
        );
        assert!(!text.contains("Entry ID"), "{text}");
    }

    #[test]
    fn increments_are_seconds_or_durations() {
        assert_eq!(ttl_value("90".into()), TtlValue::Seconds(90));
        assert_eq!(ttl_value("1h".into()), TtlValue::Text("1h".into()));
    }

    #[test]
    fn revocations_are_counted() {
        let answer = LeasesRevoked {
            revoked: vec!["lease_a".into()],
            failed: vec![sigil_api::LeaseFailure {
                lease_id: "lease_b".into(),
                error: "unreachable".into(),
            }],
        };
        assert_eq!(
            render_revoked(&answer),
            "Revoked lease lease_a\nFailed to revoke lease lease_b: unreachable\nRevoked 1 lease\n"
        );
    }
}
