//! `sigil agent list|show|ban|evict`: attested agents as the server knows them, and the two ways
//! to stop one (`ban` keeps its record, marked banned; `evict` deletes it, so it must attest
//! again). Either way the server refuses the agent from then on, and the agent deletes its
//! stored identity and exits.

use clap::Args;
use sigil_api::{Agent, AgentList, AgentQuery, PageQuery, paths};

use super::client::AdminClient;
use super::output::{Block, ListWriter, emit, emit_json, format_time, with_query, yes_no};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Agents asked of the server per request (the server's default when absent).
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Arguments of the commands on one agent (`show`, `ban`, `evict`).
#[derive(Debug, Args)]
pub struct SpiffeIdArgs {
    /// The agent's SPIFFE ID.
    #[arg(long, value_name = "ID")]
    pub spiffe_id: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// `sigil agent list`: follows the server's pages to the end, writing each as it comes.
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let mut query = AgentQuery {
        page: PageQuery {
            page_size: args.page_size.map(|n| n.to_string()),
            page_token: None,
        },
    };
    let mut writer = ListWriter::new(args.out.output, "agents", "agent", "agents");
    loop {
        let path = with_query(paths::AGENTS, &query.to_query_string());
        let page: AgentList = client.get(&path).await?;
        let next = page.next_page_token.filter(|t| !t.is_empty());
        writer.page(&page.agents, next.is_none(), agent_block)?;
        match next {
            Some(token) => query.page.page_token = Some(token),
            None => return Ok(()),
        }
    }
}

/// `sigil agent show --spiffe-id ID`.
pub async fn show(args: SpiffeIdArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let agent: Agent = client.get(&paths::agent(&args.spiffe_id)).await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&agent),
        OutputFormat::Text => emit(&agent_block(&agent).render()),
    }
}

/// `sigil agent ban --spiffe-id ID`: the server refuses the agent from now on and keeps its
/// record, marked banned. Banning a banned agent succeeds and changes nothing.
pub async fn ban(args: SpiffeIdArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let agent: Agent = client
        .post_empty(&paths::agent_ban(&args.spiffe_id))
        .await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&agent),
        OutputFormat::Text => emit(&format!("Banned agent {}\n", agent.spiffe_id)),
    }
}

/// `sigil agent evict --spiffe-id ID`: the server deletes the agent's record and refuses it from
/// now on; it must attest again (a join-token agent needs a new token).
pub async fn evict(args: SpiffeIdArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let agent: Agent = client.delete(&paths::agent(&args.spiffe_id)).await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&agent),
        OutputFormat::Text => emit(&format!("Evicted agent {}\n", agent.spiffe_id)),
    }
}

fn agent_block(a: &Agent) -> Block {
    Block::default()
        .line("SPIFFE ID", a.spiffe_id.clone())
        .line("Attestation type", a.attestation_type.clone())
        .line("Expiration time", format_time(a.expires_at))
        .line("Serial number", a.serial.clone())
        .line("Can re-attest", yes_no(a.can_reattest))
        .line("Banned", yes_no(a.banned))
        .lines("Selector", a.selectors.iter().cloned())
        .line("Created at", format_time(a.created_at))
        .line("Last seen", format_time(a.last_seen))
}
