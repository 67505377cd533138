//! The `sigil` binary: the clap command tree, logging setup, the tokio runtime, and the one place
//! that turns a failure into exactly one `error: …` line on stderr and a non-zero exit code
//! (1 for failures, 2 for usage errors).

mod admin_cli;
mod agent_cmd;
mod credentials_config;
mod creds_cmd;
mod dev;
mod exchange_cmd;
mod governance_config;
mod oauth_config;
mod pem_files;
mod server_cmd;
mod workload_cmd;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::admin_cli::leases;
use crate::admin_cli::{
    agent, audit, authority, bundle, entry, federation, inventory, policy, svid, token,
};

/// `--output` of list/show/create/fetch commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned `Key : value` blocks for people.
    #[default]
    #[value(alias = "table")]
    Text,
    /// The API's JSON, pretty-printed.
    Json,
}

/// Environment variable holding the log filter (tracing-subscriber `EnvFilter` syntax).
const LOG_ENV: &str = "SIGIL_LOG";

/// Sigil: a SPIFFE-compatible workload identity provider.
#[derive(Debug, Parser)]
#[command(name = "sigil", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Run the node agent, or inspect, ban and evict attested agents through the admin API.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Run server and agent in one process with a local state directory (zero configuration).
    Dev(DevArgs),
    /// Manage registration entries.
    #[command(subcommand)]
    Entry(entry::EntryCommand),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Show the server's trust bundle.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// List the signing authorities, or force their rotation (prepare, activate, taint, revoke).
    #[command(subcommand)]
    Authority(authority::AuthorityCommand),
    /// Manage federation relationships with foreign trust domains, or refresh their bundles now.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Fetch X509-SVIDs from the Workload API (as a workload), or revoke SVIDs through the admin
    /// API.
    #[command(subcommand)]
    Svid(SvidCommand),
    /// Fetch or validate JWT-SVIDs through the Workload API (as a workload).
    #[command(subcommand)]
    Jwt(JwtCommand),
    /// Exchange a token at a Sigil token endpoint (RFC 8693 token exchange).
    Exchange(exchange_cmd::ExchangeArgs),
    /// Check and test Cedar policy directories, decide requests, and show or reload the
    /// server's policy set.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The inventory of identities, their owners and usage, and the NHI findings about them.
    #[command(subcommand)]
    Inventory(inventory::InventoryCommand),
    /// Read, export and verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// List, show, renew and revoke the leases of brokered database credentials.
    #[command(subcommand)]
    Lease(leases::LeaseCommand),
    /// Database credentials: fetch one through the agent (as a workload) and run a command with
    /// it.
    #[command(subcommand)]
    Creds(creds_cmd::CredsCommand),
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Run the server until Ctrl-C or SIGTERM.
    Run(ConfigArg),
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Run the agent until Ctrl-C or SIGTERM.
    Run(ConfigArg),
    /// List attested agents.
    List(agent::ListArgs),
    /// Show one attested agent.
    Show(agent::SpiffeIdArgs),
    /// Ban an agent: the server refuses it from now on and keeps its record, marked banned.
    Ban(agent::SpiffeIdArgs),
    /// Evict an agent: the server deletes its record; it must attest again.
    Evict(agent::SpiffeIdArgs),
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file (TOML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct DevArgs {
    /// State directory: datastore, keys, sockets.
    #[arg(long, value_name = "DIR", default_value = ".sigil")]
    state_dir: PathBuf,
    /// Trust domain of the dev server.
    #[arg(long, value_name = "TD", default_value = "example.org")]
    trust_domain: String,
}

#[derive(Debug, Subcommand)]
enum SvidCommand {
    /// Fetch this process's X509-SVIDs (and optionally write them as PEM files).
    Fetch {
        /// Write svid.pem, svid.key and bundle.pem into this directory.
        #[arg(long = "write", value_name = "DIR")]
        write_dir: Option<PathBuf>,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// Revoke one SVID this server issued, by X509-SVID serial or JWT-SVID `jti`: agents replace
    /// or drop it at once, and it stays denied until it expires.
    Revoke(svid::RevokeArgs),
    /// List the revoked SVIDs that have not expired yet.
    Revocations(svid::RevocationsArgs),
}

#[derive(Debug, Subcommand)]
enum JwtCommand {
    /// Fetch a JWT-SVID for one or more audiences.
    Fetch {
        /// Audience of the token (repeat for several).
        #[arg(long = "audience", value_name = "AUD")]
        audiences: Vec<String>,
        /// Which of this workload's identities to use (default: the first).
        #[arg(long, value_name = "ID")]
        spiffe_id: Option<String>,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// Validate a JWT-SVID for an audience.
    Validate {
        /// The audience the token must carry.
        #[arg(long, value_name = "AUD")]
        audience: String,
        /// The JWT-SVID (compact JWS).
        #[arg(long, value_name = "JWT")]
        token: String,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
}

/// Options shared by the workload-side commands.
#[derive(Debug, Args)]
struct WorkloadArgs {
    /// Workload API socket (`unix:///path` or a path).
    #[arg(long, value_name = "SOCKET", env = "SPIFFE_ENDPOINT_SOCKET")]
    socket: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

impl Command {
    /// Long-running commands log at `info` by default; one-shot commands only at `warn`.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Server(_) | Self::Dev(_) | Self::Agent(AgentCommand::Run(_)) => "info",
            _ => "warn",
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    init_logging(cli.command.default_log_filter());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return failure(&anyhow::Error::new(err).context("cannot start the async runtime"));
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure(&err),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Server(ServerCommand::Run(args)) => server_cmd::run(&args.config).await,
        Command::Agent(AgentCommand::Run(args)) => agent_cmd::run(&args.config).await,
        Command::Agent(AgentCommand::List(args)) => agent::list(args).await,
        Command::Agent(AgentCommand::Show(args)) => agent::show(args).await,
        Command::Agent(AgentCommand::Ban(args)) => agent::ban(args).await,
        Command::Agent(AgentCommand::Evict(args)) => agent::evict(args).await,
        Command::Dev(args) => {
            dev::run(dev::DevOptions {
                state_dir: args.state_dir,
                trust_domain: args.trust_domain,
            })
            .await
        }
        Command::Entry(cmd) => entry::run(cmd).await,
        Command::Token(cmd) => token::run(cmd).await,
        Command::Bundle(cmd) => bundle::run(cmd).await,
        Command::Authority(cmd) => authority::run(cmd).await,
        Command::Federation(cmd) => federation::run(cmd).await,
        Command::Svid(SvidCommand::Fetch {
            write_dir,
            workload,
        }) => workload_cmd::svid_fetch(workload.socket, write_dir, workload.output).await,
        Command::Svid(SvidCommand::Revoke(args)) => svid::revoke(args).await,
        Command::Svid(SvidCommand::Revocations(args)) => svid::revocations(args).await,
        Command::Jwt(JwtCommand::Fetch {
            audiences,
            spiffe_id,
            workload,
        }) => workload_cmd::jwt_fetch(workload.socket, audiences, spiffe_id, workload.output).await,
        Command::Jwt(JwtCommand::Validate {
            audience,
            token,
            workload,
        }) => workload_cmd::jwt_validate(workload.socket, audience, token, workload.output).await,
        Command::Exchange(args) => exchange_cmd::run(args).await,
        Command::Policy(cmd) => policy::run(cmd).await,
        Command::Inventory(cmd) => inventory::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Lease(cmd) => leases::run(cmd).await,
        Command::Creds(cmd) => creds_cmd::run(cmd).await,
    }
}

/// Logs go to stderr, filtered by `SIGIL_LOG` (falling back to `default` when unset or invalid).
fn init_logging(default: &str) {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // Colour only on a terminal: escape codes in a log file or journal garble it for readers
    // and for tools that parse it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints one `error: …` line for `err` (its context chain joined on one line) and returns 1.
fn failure(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(&format!("{err:#}")));
    ExitCode::FAILURE
}

/// `--help` and `--version` print normally and succeed; every other clap error prints one line
/// (its first paragraph, or the usage when a subcommand is missing) and returns 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let rendered = err.render().to_string();
            let usage = rendered
                .lines()
                .find_map(|l| l.strip_prefix("Usage: "))
                .unwrap_or("sigil <COMMAND>");
            eprintln!("error: a subcommand is required: {usage} (see --help)");
            ExitCode::from(2)
        }
        _ => {
            eprintln!("{}", first_paragraph(&err.render().to_string()));
            ExitCode::from(2)
        }
    }
}

/// The first paragraph of a clap error on one line: `error: …` plus its indented details (the
/// missing argument, the possible values), without the usage and tips that follow.
fn first_paragraph(rendered: &str) -> String {
    let joined = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    if joined.starts_with("error:") {
        joined
    } else {
        format!("error: {joined}")
    }
}

/// `text` with line breaks replaced, so a failure is always exactly one line.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_keep_their_details_on_one_line() {
        let err = Cli::try_parse_from(["sigil", "entry", "show"]).unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: the following required arguments were not provided: --id <ID>"
        );
        let err = Cli::try_parse_from(["sigil", "bundle", "show", "--format", "der"]).unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: invalid value 'der' for '--format <FORMAT>' [possible values: pem, spiffe]"
        );
        let err =
            Cli::try_parse_from(["sigil", "authority", "prepare", "--kind", "rsa"]).unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: invalid value 'rsa' for '--kind <KIND>' [possible values: x509_root, x509_intermediate, jwt]"
        );
        let err = Cli::try_parse_from(["sigil", "entry", "list", "--bogus"]).unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: unexpected argument '--bogus' found"
        );
    }

    #[test]
    fn multi_line_errors_become_one_line() {
        assert_eq!(one_line("a\nb\r\n  c\n"), "a b c");
    }

    #[test]
    fn admin_socket_defaults_to_the_dev_location_and_may_follow_the_subcommand() {
        let cli = Cli::try_parse_from(["sigil", "entry", "list"]).unwrap();
        let Command::Entry(entry::EntryCommand::List(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.conn.admin_socket, PathBuf::from(".sigil/admin.sock"));
        let cli = Cli::try_parse_from([
            "sigil",
            "token",
            "create",
            "--ttl",
            "10m",
            "--admin-socket",
            "/x.sock",
        ])
        .unwrap();
        let Command::Token(token::TokenCommand::Create(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.conn.admin_socket, PathBuf::from("/x.sock"));
    }

    #[test]
    fn svid_revoke_takes_exactly_one_of_serial_and_jti() {
        let cli = Cli::try_parse_from([
            "sigil",
            "svid",
            "revoke",
            "--serial",
            "4A:1B",
            "--reason",
            "key leaked",
            "--output",
            "json",
        ])
        .unwrap();
        let Command::Svid(SvidCommand::Revoke(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.serial.as_deref(), Some("4A:1B"));
        assert_eq!(args.jti, None);
        assert_eq!(args.reason.as_deref(), Some("key leaked"));
        assert_eq!(args.out.output, OutputFormat::Json);
        assert_eq!(args.conn.admin_socket, PathBuf::from(".sigil/admin.sock"));

        let cli = Cli::try_parse_from(["sigil", "svid", "revoke", "--jti", "abc"]).unwrap();
        let Command::Svid(SvidCommand::Revoke(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!((args.serial, args.jti), (None, Some("abc".to_owned())));

        // Base64url ids and jtis can begin with '-': still a value, not a flag.
        let cli = Cli::try_parse_from(["sigil", "svid", "revoke", "--jti", "-x_1"]).unwrap();
        let Command::Svid(SvidCommand::Revoke(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.jti.as_deref(), Some("-x_1"));
        let cli = Cli::try_parse_from(["sigil", "authority", "taint", "--id", "-egWg"]).unwrap();
        let Command::Authority(authority::AuthorityCommand::Taint(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.id, "-egWg");

        let err = Cli::try_parse_from(["sigil", "svid", "revoke", "--serial", "1", "--jti", "j"])
            .unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: the argument '--serial <HEX>' cannot be used with '--jti <JTI>'"
        );
        let err = Cli::try_parse_from(["sigil", "svid", "revoke", "--reason", "r"]).unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: the following required arguments were not provided: <--serial <HEX>|--jti <JTI>>"
        );
    }

    #[test]
    fn svid_revocations_lists_with_the_usual_options() {
        let cli = Cli::try_parse_from([
            "sigil",
            "svid",
            "revocations",
            "--output",
            "json",
            "--admin-socket",
            "/x.sock",
        ])
        .unwrap();
        assert_eq!(cli.command.default_log_filter(), "warn");
        let Command::Svid(SvidCommand::Revocations(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.out.output, OutputFormat::Json);
        assert_eq!(args.conn.admin_socket, PathBuf::from("/x.sock"));
    }

    #[test]
    fn federation_commands_parse_their_flags() {
        let cli = Cli::try_parse_from([
            "sigil",
            "federation",
            "create",
            "--trust-domain",
            "partner.org",
            "--bundle-endpoint-url",
            "https://partner.org/bundle",
            "--profile",
            "https_spiffe",
            "--endpoint-spiffe-id",
            "spiffe://partner.org/sigil/server",
            "--bootstrap-bundle",
            "partner.pem",
            "--owner",
            "team-partners",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.command.default_log_filter(), "warn");
        let Command::Federation(federation::FederationCommand::Create(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.trust_domain, "partner.org");
        assert_eq!(args.bundle_endpoint_url, "https://partner.org/bundle");
        assert_eq!(args.profile, "https_spiffe");
        assert_eq!(
            args.endpoint_spiffe_id.as_deref(),
            Some("spiffe://partner.org/sigil/server")
        );
        assert_eq!(args.bootstrap_bundle, Some(PathBuf::from("partner.pem")));
        assert_eq!(args.owner, "team-partners");
        assert_eq!(args.out.output, OutputFormat::Json);
        let err = Cli::try_parse_from([
            "sigil",
            "federation",
            "create",
            "--trust-domain",
            "p.org",
            "--bundle-endpoint-url",
            "https://p.org",
            "--profile",
            "https_web",
        ])
        .unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: the following required arguments were not provided: --owner <OWNER>"
        );

        let cli = Cli::try_parse_from([
            "sigil",
            "federation",
            "update",
            "--trust-domain",
            "partner.org",
            "--profile",
            "https_web",
            "--clear-endpoint-spiffe-id",
            "--owner",
            "team-b",
        ])
        .unwrap();
        let Command::Federation(federation::FederationCommand::Update(args)) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.owner.as_deref(), Some("team-b"));
        assert_eq!(args.profile.as_deref(), Some("https_web"));
        assert!(args.clear_endpoint_spiffe_id);
        assert_eq!(args.endpoint_spiffe_id, None);

        let err = Cli::try_parse_from([
            "sigil",
            "federation",
            "update",
            "--trust-domain",
            "p.org",
            "--endpoint-spiffe-id",
            "spiffe://p.org/s",
            "--clear-endpoint-spiffe-id",
        ])
        .unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: the argument '--endpoint-spiffe-id <ID>' cannot be used with '--clear-endpoint-spiffe-id'"
        );
        let err = Cli::try_parse_from([
            "sigil",
            "federation",
            "create",
            "--trust-domain",
            "p.org",
            "--bundle-endpoint-url",
            "https://p.org",
            "--profile",
            "https",
        ])
        .unwrap_err();
        assert_eq!(
            first_paragraph(&err.render().to_string()),
            "error: invalid value 'https' for '--profile <PROFILE>' [possible values: https_web, https_spiffe]"
        );
        for sub in ["show", "delete", "refresh"] {
            let cli = Cli::try_parse_from(["sigil", "federation", sub, "--trust-domain", "p.org"])
                .unwrap();
            assert!(matches!(cli.command, Command::Federation(_)), "{sub}");
        }
        let cli = Cli::try_parse_from(["sigil", "federation", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Federation(federation::FederationCommand::List(ref args)) if args.owner.is_none()
        ));
        let cli =
            Cli::try_parse_from(["sigil", "federation", "list", "--owner", "team-a"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Federation(federation::FederationCommand::List(ref args))
                if args.owner.as_deref() == Some("team-a")
        ));
    }

    #[test]
    fn run_commands_log_at_info_and_the_rest_at_warn() {
        let run = Cli::try_parse_from(["sigil", "server", "run", "-c", "s.toml"]).unwrap();
        assert_eq!(run.command.default_log_filter(), "info");
        let list = Cli::try_parse_from(["sigil", "agent", "list"]).unwrap();
        assert_eq!(list.command.default_log_filter(), "warn");
    }
}
