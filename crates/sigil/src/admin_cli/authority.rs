//! `sigil authority list|prepare|activate|taint|revoke`: the signing authorities and their forced
//! rotation. The server decides whether each step is allowed; a refusal is its one-line reason.

use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use sigil_api::{Authority, AuthorityList, PrepareAuthorityRequest, paths};
use sigil_spiffe::AuthorityKind;

use super::client::AdminClient;
use super::output::{Block, emit, emit_json, format_time, render_found};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// List the signing authorities (X.509 roots and intermediates, JWT keys) in every state.
    List(ListArgs),
    /// Prepare a successor of a kind now: published in the bundle, not yet signing.
    Prepare(PrepareArgs),
    /// Make a prepared authority the one that signs; the active one becomes old.
    Activate(IdArgs),
    /// Mark an old authority as compromised: agents replace at once what it signed.
    Taint(IdArgs),
    /// Remove a tainted authority from the trust bundle.
    Revoke(IdArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Kind of authority to prepare.
    #[arg(long, value_name = "KIND", value_parser = PossibleValuesParser::new(AuthorityKind::ALL.map(AuthorityKind::as_str)))]
    pub kind: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The authority id (as `sigil authority list` shows it). Ids are
    /// base64url and may begin with `-`, so a leading hyphen is a value here.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub id: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Runs one `sigil authority` command.
pub async fn run(command: AuthorityCommand) -> anyhow::Result<()> {
    match command {
        AuthorityCommand::List(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let list: AuthorityList = client.get(paths::AUTHORITIES).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&list),
                OutputFormat::Text => {
                    let blocks: Vec<Block> = list.authorities.iter().map(authority_block).collect();
                    emit(&render_found(
                        list.authorities.len(),
                        "authority",
                        "authorities",
                        &blocks,
                    ))
                }
            }
        }
        AuthorityCommand::Prepare(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let request = PrepareAuthorityRequest { kind: args.kind };
            let prepared: Authority = client.post(paths::AUTHORITIES_PREPARE, &request).await?;
            print_authority(&prepared, args.out.output)
        }
        AuthorityCommand::Activate(args) => step(&args, &paths::authority_activate(&args.id)).await,
        AuthorityCommand::Taint(args) => step(&args, &paths::authority_taint(&args.id)).await,
        AuthorityCommand::Revoke(args) => step(&args, &paths::authority_revoke(&args.id)).await,
    }
}

/// Posts one rotation step on `path` and prints the authority after it.
async fn step(args: &IdArgs, path: &str) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let authority: Authority = client.post_empty(path).await?;
    print_authority(&authority, args.out.output)
}

fn print_authority(authority: &Authority, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => emit_json(authority),
        OutputFormat::Text => emit(&authority_block(authority).render()),
    }
}

fn authority_block(a: &Authority) -> Block {
    Block::default()
        .line("Authority ID", a.id.clone())
        .line("Kind", a.kind.clone())
        .line("State", a.state.clone())
        .optional("Issuer ID", a.issuer_id.as_deref().unwrap_or_default())
        .line("Not before", format_time(a.not_before))
        .line("Not after", format_time(a.not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_show_the_issuer_only_for_intermediates() {
        let mut a = Authority {
            id: "ab12".into(),
            kind: "x509_intermediate".into(),
            state: "active".into(),
            issuer_id: Some("cd34".into()),
            not_before: 0,
            not_after: 86_400,
            certificate_pem: Some("-----BEGIN CERTIFICATE-----\n".into()),
        };
        assert_eq!(
            authority_block(&a).render(),
            "Authority ID : ab12\nKind         : x509_intermediate\nState        : active\n\
             Issuer ID    : cd34\nNot before   : 1970-01-01T00:00:00Z\n\
             Not after    : 1970-01-02T00:00:00Z\n"
        );
        a.issuer_id = None;
        assert!(!authority_block(&a).render().contains("Issuer ID"));
    }
}
