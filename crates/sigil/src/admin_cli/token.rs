//! `sigil token create [--ttl 1h]`: a one-time join token for attesting a new agent.

use clap::{Args, Subcommand};
use sigil_api::{CreateJoinTokenRequest, JoinTokenCreated, TtlValue, paths};

use super::client::AdminClient;
use super::output::{Block, emit, emit_json, format_time};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token (its secret is shown only this once).
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Lifetime, e.g. 10m or 1h (default 1h, at most 7d).
    #[arg(long, value_name = "TTL")]
    pub ttl: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Runs one `sigil token` command.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let request = CreateJoinTokenRequest {
                ttl: args.ttl.map(TtlValue::Text),
            };
            let created: JoinTokenCreated = client.post(paths::JOIN_TOKENS, &request).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&created),
                OutputFormat::Text => emit(&token_block(&created).render()),
            }
        }
    }
}

fn token_block(created: &JoinTokenCreated) -> Block {
    Block::default()
        .line("Token", created.token.clone())
        .line("Token ID", created.id.clone())
        .line("Agent ID", created.agent_id.clone())
        .line("Expires at", format_time(created.expires_at))
}
