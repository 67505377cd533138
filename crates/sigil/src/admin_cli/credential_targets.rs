//! `sigil creds target create|list|show|update|delete` and `sigil creds rotate-root TARGET`: the
//! credential targets of brokered database credentials, through the admin API. [`TargetCommand`]
//! and [`RotateRootArgs`] are the clap types the `creds` command mounts; [`run_target`] and
//! [`rotate_root`] run them. The server checks every definition; these commands read the file
//! and shape the request.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use sigil_api::{
    CredentialTarget, CredentialTargetList, MAX_REQUEST_BODY_BYTES, RootRotated, TargetSpec,
    TargetUpdateRequest, TtlValue, paths,
};

use super::client::AdminClient;
use super::output::{Block, emit, emit_json, format_time, render_found};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

/// `sigil creds target …`.
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Create a credential target from a JSON definition (its administrative password must be
    /// readable by the server from `password_file` or `password_env`).
    Create(FileArgs),
    /// List the credential targets (the configuration file's, then those created here).
    List(ListArgs),
    /// Show one credential target.
    Show(NameArgs),
    /// Replace a stored target's definition with the one in a JSON file.
    Update(UpdateArgs),
    /// Delete a stored target (refused while it has active leases).
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The target definition as JSON: `name`, `type` (postgresql|mariadb), `url` (without a
    /// password), `password_file` or `password_env`, `owner`, `roles` (each with `name` and
    /// `creation_statements`), and optionally `default_ttl`, `max_ttl`.
    #[arg(long, value_name = "SPEC.json")]
    pub file: PathBuf,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The target's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The target's name (the file's `name` must be the same).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The new definition as JSON (as for `create`).
    #[arg(long, value_name = "SPEC.json")]
    pub file: PathBuf,
    /// The revision the change is based on (default: the one the server holds now).
    #[arg(long, value_name = "N")]
    pub revision: Option<i64>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// `sigil creds rotate-root TARGET`.
#[derive(Debug, Args)]
pub struct RotateRootArgs {
    /// The target whose administrative password is replaced by a new random one, written to its
    /// `password_file`.
    #[arg(value_name = "TARGET")]
    pub target: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Runs one `sigil creds target` command.
pub async fn run_target(command: TargetCommand) -> anyhow::Result<()> {
    match command {
        TargetCommand::Create(args) => {
            let spec = read_spec(&args.file)?;
            let client = AdminClient::new(&args.conn.admin_socket);
            let created: CredentialTarget = client.post(paths::CREDENTIAL_TARGETS, &spec).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&created),
                OutputFormat::Text => emit(&format!(
                    "Created credential target {} (revision {})\n",
                    created.spec.name, created.revision
                )),
            }
        }
        TargetCommand::List(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let list: CredentialTargetList = client.get(paths::CREDENTIAL_TARGETS).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&list),
                OutputFormat::Text => {
                    let blocks: Vec<Block> = list.targets.iter().map(target_block).collect();
                    emit(&render_found(blocks.len(), "target", "targets", &blocks))
                }
            }
        }
        TargetCommand::Show(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let target: CredentialTarget =
                client.get(&paths::credential_target(&args.name)).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&target),
                OutputFormat::Text => emit(&target_block(&target).render()),
            }
        }
        TargetCommand::Update(args) => {
            let spec = read_spec(&args.file)?;
            let client = AdminClient::new(&args.conn.admin_socket);
            let path = paths::credential_target(&args.name);
            let revision = match args.revision {
                Some(revision) => revision,
                None => client.get::<CredentialTarget>(&path).await?.revision,
            };
            let updated: CredentialTarget = client
                .put(&path, &TargetUpdateRequest { spec, revision })
                .await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&updated),
                OutputFormat::Text => emit(&format!(
                    "Updated credential target {} (revision {})\n",
                    updated.spec.name, updated.revision
                )),
            }
        }
        TargetCommand::Delete(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let deleted: CredentialTarget =
                client.delete(&paths::credential_target(&args.name)).await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&deleted),
                OutputFormat::Text => emit(&format!(
                    "Deleted credential target {}\n",
                    deleted.spec.name
                )),
            }
        }
    }
}

/// Runs `sigil creds rotate-root TARGET`.
pub async fn rotate_root(args: RotateRootArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let rotated: RootRotated = client
        .post_empty(&paths::credential_target_rotate_root(&args.target))
        .await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&rotated),
        OutputFormat::Text => emit(&format!(
            "Rotated the administrative password of credential target {} at {}\n",
            rotated.target,
            format_time(rotated.rotated_at)
        )),
    }
}

/// The target definition in `path`: a JSON object, at most a request body's size.
fn read_spec(path: &Path) -> anyhow::Result<TargetSpec> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read the target definition {}", path.display()))?
        .len();
    if size > u64::try_from(MAX_REQUEST_BODY_BYTES).unwrap_or(u64::MAX) {
        return Err(anyhow!(
            "the target definition {} is larger than {MAX_REQUEST_BODY_BYTES} bytes",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the target definition {}", path.display()))?;
    parse_spec(&text).map_err(|e| anyhow!("{} is not a target definition: {e}", path.display()))
}

fn parse_spec(text: &str) -> Result<TargetSpec, String> {
    // serde would read a positional array into the struct; the API takes objects only.
    if !text.trim_start().starts_with('{') {
        return Err("expected a JSON object".to_owned());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn ttl_text(ttl: Option<&TtlValue>) -> String {
    ttl.map(ToString::to_string)
        .unwrap_or_else(|| "default".to_owned())
}

/// One target as a block of aligned lines (no statements: `--output json` has them).
fn target_block(target: &CredentialTarget) -> Block {
    let spec = &target.spec;
    let password = match (&spec.password_file, &spec.password_env) {
        (Some(file), _) => format!("file {file}"),
        (None, Some(env)) => format!("environment variable {env}"),
        (None, None) => String::new(),
    };
    Block::default()
        .line("Name", spec.name.clone())
        .line("Type", spec.kind.clone())
        .line("URL", spec.url.clone())
        .optional("Password", &password)
        .line("Owner", spec.owner.clone())
        .line("Default TTL", ttl_text(spec.default_ttl.as_ref()))
        .line("Max TTL", ttl_text(spec.max_ttl.as_ref()))
        .lines("Role", spec.roles.iter().map(|r| r.name.clone()))
        .line("Source", target.source.clone())
        .line("Revision", target.revision.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_must_be_a_json_object() {
        let good = r#"{"name":"pg","type":"postgresql","url":"postgres://a@h/d","password_env":"P","owner":"o","roles":[{"name":"ro","creation_statements":["CREATE"]}]}"#;
        let spec = parse_spec(good).unwrap();
        assert_eq!(spec.name, "pg");
        assert!(parse_spec("[1]").is_err());
        assert!(parse_spec(r#"{"name":"pg","extra":1}"#).is_err());
    }

    #[test]
    fn a_target_block_names_its_password_source_and_roles() {
        let spec = parse_spec(
            r#"{"name":"pg","type":"postgresql","url":"postgres://a@h/d","password_env":"P","owner":"o","max_ttl":"2h","roles":[{"name":"ro","creation_statements":["CREATE"]}]}"#,
        )
        .unwrap();
        let text = target_block(&CredentialTarget {
            spec,
            source: "api".into(),
            revision: 3,
        })
        .render();
        assert!(
            text.contains("Password    : environment variable P\n"),
            "{text}"
        );
        assert!(text.contains("Default TTL : default\n"), "{text}");
        assert!(text.contains("Max TTL     : 2h\n"), "{text}");
        assert!(text.contains("Role        : ro\n"), "{text}");
    }
}
