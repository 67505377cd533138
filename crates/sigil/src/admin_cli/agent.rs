//! `sigil agent list` and `sigil agent show --spiffe-id ID`: attested agents as the server
//! knows them.

use clap::Args;
use sigil_api::{Agent, AgentList, paths};

use super::client::AdminClient;
use super::output::{Block, emit, emit_json, format_time, render_found, yes_no};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The agent's SPIFFE ID.
    #[arg(long, value_name = "ID")]
    pub spiffe_id: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// `sigil agent list`.
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let list: AgentList = client.get(paths::AGENTS).await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&list),
        OutputFormat::Text => {
            let blocks: Vec<Block> = list.agents.iter().map(agent_block).collect();
            emit(&render_found(list.agents.len(), "agent", "agents", &blocks))
        }
    }
}

/// `sigil agent show --spiffe-id ID`.
pub async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let agent: Agent = client.get(&paths::agent(&args.spiffe_id)).await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&agent),
        OutputFormat::Text => emit(&agent_block(&agent).render()),
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
