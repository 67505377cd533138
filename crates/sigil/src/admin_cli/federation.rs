//! `sigil federation create|list|show|update|delete|refresh`: the federation relationships with
//! foreign trust domains (each with its owner; the list filtered by owner), and fetching one
//! foreign bundle now. The server checks every field; a refusal is its one-line reason.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand};
use sigil_api::{
    Federation, FederationList, FederationQuery, FederationRefreshed, FederationRequest,
    FederationUpdateRequest, paths,
};

use super::client::{AdminClient, describe_io_error};
use super::output::{Block, emit, emit_json, format_time, render_found, with_query};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

/// Largest bootstrap bundle file read, in bytes (the largest bundle document accepted).
const MAX_BOOTSTRAP_FILE_BYTES: u64 = 1024 * 1024;
/// The bundle endpoint profiles, as the API names them.
const PROFILES: [&str; 2] = ["https_web", "https_spiffe"];

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Federate with a foreign trust domain: its bundle is fetched from its endpoint from now on.
    Create(CreateArgs),
    /// List the federation relationships.
    List(ListArgs),
    /// Show one federation relationship.
    Show(TrustDomainArgs),
    /// Change the bundle endpoint, profile, endpoint SPIFFE ID or owner of a relationship.
    Update(UpdateArgs),
    /// Stop federating with a trust domain: its relationship and bundle are deleted.
    Delete(TrustDomainArgs),
    /// Fetch the foreign bundle from its endpoint now.
    Refresh(TrustDomainArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The foreign trust domain (name or `spiffe://` ID).
    #[arg(long, value_name = "TD")]
    pub trust_domain: String,
    /// Where its bundle is fetched (`https://…`).
    #[arg(long, value_name = "URL")]
    pub bundle_endpoint_url: String,
    /// How the endpoint is authenticated: a Web PKI certificate or an X509-SVID.
    #[arg(long, value_name = "PROFILE", value_parser = PossibleValuesParser::new(PROFILES))]
    pub profile: String,
    /// The SPIFFE ID the endpoint presents (required for `https_spiffe`).
    #[arg(long, value_name = "ID")]
    pub endpoint_spiffe_id: Option<String>,
    /// The team or contact accountable for this relationship (required).
    #[arg(long, value_name = "OWNER")]
    pub owner: String,
    /// A file holding the foreign bundle to trust until the first refresh: a SPIFFE bundle
    /// document or PEM certificates (needed for `https_spiffe`).
    #[arg(long, value_name = "FILE")]
    pub bootstrap_bundle: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the relationships with this owner (exactly; `--owner ''` lists those that have
    /// none).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct TrustDomainArgs {
    /// The foreign trust domain (name or `spiffe://` ID).
    #[arg(long, value_name = "TD")]
    pub trust_domain: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("endpoint_id").args(["endpoint_spiffe_id", "clear_endpoint_spiffe_id"])))]
pub struct UpdateArgs {
    /// The foreign trust domain (name or `spiffe://` ID).
    #[arg(long, value_name = "TD")]
    pub trust_domain: String,
    /// A new bundle endpoint URL (`https://…`).
    #[arg(long, value_name = "URL")]
    pub bundle_endpoint_url: Option<String>,
    /// A new profile.
    #[arg(long, value_name = "PROFILE", value_parser = PossibleValuesParser::new(PROFILES))]
    pub profile: Option<String>,
    /// A new endpoint SPIFFE ID.
    #[arg(long, value_name = "ID")]
    pub endpoint_spiffe_id: Option<String>,
    /// Remove the endpoint SPIFFE ID (when changing to `https_web`).
    #[arg(long)]
    pub clear_endpoint_spiffe_id: bool,
    /// A new owner: the team or contact accountable for this relationship.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Runs one `sigil federation` command.
pub async fn run(command: FederationCommand) -> anyhow::Result<()> {
    match command {
        FederationCommand::Create(args) => {
            let bootstrap_bundle = args
                .bootstrap_bundle
                .as_deref()
                .map(read_bootstrap)
                .transpose()?;
            let request = FederationRequest {
                trust_domain: args.trust_domain,
                bundle_endpoint_url: args.bundle_endpoint_url,
                profile: args.profile,
                endpoint_spiffe_id: args.endpoint_spiffe_id,
                owner: Some(args.owner),
                bootstrap_bundle,
            };
            let client = AdminClient::new(&args.conn.admin_socket);
            let created: Federation = client.post(paths::FEDERATIONS, &request).await?;
            print_federation(&created, args.out.output)
        }
        FederationCommand::List(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let query = FederationQuery { owner: args.owner };
            let list: FederationList = client
                .get(&with_query(paths::FEDERATIONS, &query.to_query_string()))
                .await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&list),
                OutputFormat::Text => {
                    let blocks: Vec<Block> =
                        list.federations.iter().map(federation_block).collect();
                    emit(&render_found(
                        list.federations.len(),
                        "federation relationship",
                        "federation relationships",
                        &blocks,
                    ))
                }
            }
        }
        FederationCommand::Show(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let shown: Federation = client.get(&paths::federation(&args.trust_domain)).await?;
            print_federation(&shown, args.out.output)
        }
        FederationCommand::Update(args) => {
            let request = FederationUpdateRequest {
                bundle_endpoint_url: args.bundle_endpoint_url,
                profile: args.profile,
                endpoint_spiffe_id: match (args.endpoint_spiffe_id, args.clear_endpoint_spiffe_id) {
                    (Some(id), _) => Some(Some(id)),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
                owner: args.owner,
            };
            let client = AdminClient::new(&args.conn.admin_socket);
            let updated: Federation = client
                .patch(&paths::federation(&args.trust_domain), &request)
                .await?;
            print_federation(&updated, args.out.output)
        }
        FederationCommand::Delete(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let deleted: Federation = client
                .delete(&paths::federation(&args.trust_domain))
                .await?;
            print_federation(&deleted, args.out.output)
        }
        FederationCommand::Refresh(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let refreshed: FederationRefreshed = client
                .post_empty(&paths::federation_refresh(&args.trust_domain))
                .await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&refreshed),
                OutputFormat::Text => emit(&refreshed_block(&refreshed).render()),
            }
        }
    }
}

/// The text of the bootstrap bundle file, at most [`MAX_BOOTSTRAP_FILE_BYTES`].
fn read_bootstrap(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).map_err(|err| {
        anyhow::anyhow!(
            "cannot open the bootstrap bundle {}: {}",
            path.display(),
            describe_io_error(&err)
        )
    })?;
    let mut text = String::new();
    file.take(MAX_BOOTSTRAP_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the bootstrap bundle {}", path.display()))?;
    if text.len() as u64 > MAX_BOOTSTRAP_FILE_BYTES {
        bail!(
            "the bootstrap bundle {} is larger than {MAX_BOOTSTRAP_FILE_BYTES} bytes",
            path.display()
        );
    }
    Ok(text)
}

fn print_federation(federation: &Federation, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => emit_json(federation),
        OutputFormat::Text => emit(&federation_block(federation).render()),
    }
}

fn federation_block(f: &Federation) -> Block {
    Block::default()
        .line("Trust domain", f.trust_domain.clone())
        .line("Bundle endpoint URL", f.bundle_endpoint_url.clone())
        .line("Profile", f.profile.clone())
        .line(
            "Owner",
            if f.owner.is_empty() {
                "(none)".to_owned()
            } else {
                f.owner.clone()
            },
        )
        .optional(
            "Endpoint SPIFFE ID",
            f.endpoint_spiffe_id.as_deref().unwrap_or_default(),
        )
        .line(
            "Bundle sequence",
            f.bundle_sequence
                .map_or_else(|| "none held".to_owned(), |s| s.to_string()),
        )
        .optional(
            "Bundle updated at",
            &f.bundle_updated_at.map(format_time).unwrap_or_default(),
        )
        .line("Created at", format_time(f.created_at))
        .line("Updated at", format_time(f.updated_at))
}

fn refreshed_block(r: &FederationRefreshed) -> Block {
    Block::default()
        .line("Trust domain", r.trust_domain.clone())
        .line("Outcome", r.outcome.clone())
        .line("Bundle sequence", r.sequence.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federation() -> Federation {
        Federation {
            trust_domain: "partner.org".into(),
            bundle_endpoint_url: "https://partner.org/bundle".into(),
            profile: "https_spiffe".into(),
            endpoint_spiffe_id: Some("spiffe://partner.org/sigil/server".into()),
            owner: "team-partners".into(),
            created_at: 0,
            updated_at: 60,
            bundle_sequence: Some(3),
            bundle_updated_at: Some(60),
        }
    }

    #[test]
    fn blocks_show_the_endpoint_id_and_bundle_only_when_there_is_one() {
        assert_eq!(
            federation_block(&federation()).render(),
            "Trust domain        : partner.org\n\
             Bundle endpoint URL : https://partner.org/bundle\n\
             Profile             : https_spiffe\n\
             Owner               : team-partners\n\
             Endpoint SPIFFE ID  : spiffe://partner.org/sigil/server\n\
             Bundle sequence     : 3\n\
             Bundle updated at   : 1970-01-01T00:01:00Z\n\
             Created at          : 1970-01-01T00:00:00Z\n\
             Updated at          : 1970-01-01T00:01:00Z\n"
        );
        let web = Federation {
            profile: "https_web".into(),
            endpoint_spiffe_id: None,
            bundle_sequence: None,
            bundle_updated_at: None,
            ..federation()
        };
        let text = federation_block(&web).render();
        assert!(!text.contains("Endpoint SPIFFE ID"), "{text}");
        assert!(!text.contains("Bundle updated at"), "{text}");
        assert!(text.contains("Bundle sequence     : none held\n"), "{text}");
        let unowned = Federation {
            owner: String::new(),
            ..federation()
        };
        let text = federation_block(&unowned).render();
        assert!(text.contains("Owner               : (none)\n"), "{text}");
    }

    #[test]
    fn bootstrap_files_are_read_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert_eq!(
            read_bootstrap(&path).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
        let big = usize::try_from(MAX_BOOTSTRAP_FILE_BYTES).unwrap() + 1;
        std::fs::write(&path, "a".repeat(big)).unwrap();
        let err = read_bootstrap(&path).unwrap_err().to_string();
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
        let err = read_bootstrap(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("none: no such file or directory"), "{err}");
    }
}
