//! `sigil creds`: database credentials. `sigil creds fetch TARGET ROLE` asks the agent's
//! credentials service on the Workload API socket (`--socket` or `SPIFFE_ENDPOINT_SOCKET`) and
//! prints the credential as shell variables, JSON or one connection URL; with `--exec CMD…` it
//! runs the command with the credential in its environment, renews the lease while the command
//! runs, and revokes it when the command exits (exiting with the command's status).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use sigil_proto::creds::v1 as pb;
use sigil_proto::creds::v1::credentials_client::CredentialsClient;
use sigil_spiffe::time::SystemClock;
use sigil_spiffe::{Clock, Ttl};
use tonic::transport::Channel;
use zeroize::Zeroizing;

/// Shortest wait between two renewals, and before retrying a failed one.
const MIN_RENEW_DELAY: Duration = Duration::from_secs(5);

/// `sigil creds …`.
#[derive(Debug, Subcommand)]
pub enum CredsCommand {
    /// Fetch a database credential through the agent (as a workload), print it or run a command
    /// with it.
    Fetch(FetchArgs),
    /// Manage credential targets through the admin API (operator side).
    #[command(subcommand)]
    Target(crate::admin_cli::credential_targets::TargetCommand),
    /// Replace a target's administrative password with one only Sigil knows (operator side).
    RotateRoot(crate::admin_cli::credential_targets::RotateRootArgs),
}

/// How `sigil creds fetch` prints the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CredsFormat {
    /// `NAME=value` lines: `SIGIL_LEASE_ID`, the client's variables (`PGUSER`… or
    /// `MYSQL_USER`…) and `DATABASE_URL`.
    #[default]
    Env,
    /// The credential as JSON.
    Json,
    /// One connection URL.
    Dsn,
}

/// `sigil creds fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The credential target.
    pub target: String,
    /// The role of the target.
    pub role: String,
    /// Lifetime wanted (`90s`, `15m`, `1h`); default the role's. Renewals ask for it again.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Which of this workload's identities asks, when it has several.
    #[arg(long, value_name = "ID")]
    pub spiffe_id: Option<String>,
    /// Output format (ignored with `--exec`).
    #[arg(long, value_enum, default_value_t = CredsFormat::Env)]
    pub format: CredsFormat,
    /// Workload API socket (`unix:///path` or a path).
    #[arg(long, value_name = "SOCKET", env = "SPIFFE_ENDPOINT_SOCKET")]
    pub socket: Option<String>,
    /// Run this command with the credential in its environment; the lease is renewed while it
    /// runs and revoked when it exits. Must come last: everything after it is the command and
    /// its arguments.
    #[arg(long, value_name = "CMD", num_args = 1.., allow_hyphen_values = true)]
    pub exec: Option<Vec<String>>,
}

/// Runs `cmd`.
pub async fn run(cmd: CredsCommand) -> anyhow::Result<()> {
    match cmd {
        CredsCommand::Fetch(args) => fetch(args).await,
        CredsCommand::Target(command) => {
            crate::admin_cli::credential_targets::run_target(command).await
        }
        CredsCommand::RotateRoot(args) => {
            crate::admin_cli::credential_targets::rotate_root(args).await
        }
    }
}

/// A credential as received, with the password moved out of the message into memory that is
/// wiped on drop.
struct Fetched {
    credential: pb::Credential,
    password: Zeroizing<String>,
}

impl Fetched {
    fn new(mut credential: pb::Credential) -> Self {
        let password = Zeroizing::new(std::mem::take(&mut credential.password));
        Self {
            credential,
            password,
        }
    }

    fn database(&self) -> pb::Database {
        self.credential.database.clone().unwrap_or_default()
    }
}

async fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let ttl = match args.ttl.as_deref() {
        None => 0,
        Some(text) => Ttl::parse(text)
            .map_err(|e| anyhow::anyhow!("invalid --ttl `{text}`: {e}"))?
            .as_secs(),
    };
    let spiffe_id = args.spiffe_id.unwrap_or_default();
    let mut client = connect(args.socket).await?;
    let credential = client
        .fetch_credential(request(pb::FetchCredentialRequest {
            target: args.target.clone(),
            role: args.role.clone(),
            ttl,
            spiffe_id: spiffe_id.clone(),
        }))
        .await
        .map_err(|s| {
            status_error(
                &format!(
                    "cannot fetch a credential of role `{}` on `{}`",
                    args.role, args.target
                ),
                &s,
            )
        })?
        .into_inner();
    let fetched = Fetched::new(credential);
    match args.exec {
        Some(command) => {
            let code = exec(client, &fetched, &spiffe_id, ttl, &command).await?;
            // The lease is revoked; nothing else to clean up. Exit with the child's status.
            std::process::exit(code);
        }
        None => {
            let text = match args.format {
                CredsFormat::Env => env_vars(&fetched)
                    .iter()
                    .map(|(k, v)| format!("{k}={}\n", shell_quote(v).as_str()))
                    .collect::<String>(),
                CredsFormat::Json => format!("{:#}\n", to_json(&fetched)),
                CredsFormat::Dsn => format!("{}\n", dsn(&fetched).as_str()),
            };
            let text = Zeroizing::new(text);
            print!("{}", text.as_str());
            Ok(())
        }
    }
}

/// Runs `command` with the credential's variables, renewing the lease at about two thirds of
/// its remaining life until its maximum, and revoking it once the command has exited. Returns
/// the exit code to leave with (128 + the signal for a command killed by one).
async fn exec(
    mut client: CredentialsClient<Channel>,
    fetched: &Fetched,
    spiffe_id: &str,
    ttl: u64,
    command: &[String],
) -> anyhow::Result<i32> {
    let (program, rest) = command.split_first().context("--exec needs a command")?;
    let lease_id = fetched.credential.lease_id.clone();
    let spawned = tokio::process::Command::new(program)
        .args(rest)
        .envs(env_vars(fetched).iter().map(|(k, v)| (k, v.as_str())))
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            revoke(&mut client, &lease_id, spiffe_id).await;
            bail!("cannot run `{program}`: {e}");
        }
    };
    let clock = SystemClock;
    let mut expires_at = fetched.credential.expires_at;
    let max_expires_at = fetched.credential.max_expires_at;
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let status = loop {
        let delay = renew_delay(clock.unix_secs(), expires_at, max_expires_at);
        tokio::select! {
            status = child.wait() => break status.with_context(|| format!("cannot wait for `{program}`"))?,
            () = sleep_or_forever(delay) => {
                match client
                    .renew_lease(request(pb::RenewLeaseRequest {
                        lease_id: lease_id.clone(),
                        increment: ttl,
                        spiffe_id: spiffe_id.to_owned(),
                    }))
                    .await
                {
                    Ok(lease) => expires_at = lease.into_inner().expires_at,
                    Err(s) => {
                        eprintln!("warning: {}", status_error(&format!("cannot renew lease `{lease_id}`"), &s));
                        // Try again later, while the credential still works.
                        if expires_at <= clock.unix_secs() {
                            expires_at = max_expires_at;
                        }
                    }
                }
            }
            _ = terminate.recv() => forward(&child, nix::sys::signal::Signal::SIGTERM),
            _ = hangup.recv() => forward(&child, nix::sys::signal::Signal::SIGHUP),
            // A terminal's Ctrl-C reaches the child's process group already: only keep running
            // so the lease is revoked after the child has gone.
            _ = interrupt.recv() => {}
        }
    };
    revoke(&mut client, &lease_id, spiffe_id).await;
    Ok(exit_code(status))
}

fn signal(kind: tokio::signal::unix::SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).context("cannot install a signal handler")
}

/// Sends `signal` to the child, if it still runs.
fn forward(child: &tokio::process::Child, signal: nix::sys::signal::Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

async fn sleep_or_forever(delay: Option<Duration>) {
    match delay {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Revokes the lease; a failure is a warning (the lease still expires on its own).
async fn revoke(client: &mut CredentialsClient<Channel>, lease_id: &str, spiffe_id: &str) {
    if let Err(s) = client
        .revoke_lease(request(pb::RevokeLeaseRequest {
            lease_id: lease_id.to_owned(),
            spiffe_id: spiffe_id.to_owned(),
        }))
        .await
    {
        eprintln!(
            "warning: {} (it expires on its own)",
            status_error(&format!("cannot revoke lease `{lease_id}`"), &s)
        );
    }
}

/// The exit code of a finished child: its own, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128_i32.saturating_add(s)))
        .unwrap_or(1)
}

/// When to renew a lease expiring at `expires_at` (capped at `max_expires_at`), as of `now`:
/// after two thirds of its remaining life (at least [`MIN_RENEW_DELAY`]); `None` once it can
/// be extended no further.
fn renew_delay(now: i64, expires_at: i64, max_expires_at: i64) -> Option<Duration> {
    if expires_at >= max_expires_at {
        return None;
    }
    let remaining = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
    Some(Duration::from_secs(remaining.saturating_mul(2) / 3).max(MIN_RENEW_DELAY))
}

/// The variables a client of the database reads, and `SIGIL_LEASE_ID` and `DATABASE_URL`.
fn env_vars(fetched: &Fetched) -> Vec<(&'static str, Zeroizing<String>)> {
    let c = &fetched.credential;
    let db = fetched.database();
    let text = |s: &str| Zeroizing::new(s.to_owned());
    let mut vars = vec![
        ("SIGIL_LEASE_ID", text(&c.lease_id)),
        ("SIGIL_LEASE_EXPIRES_AT", text(&c.expires_at.to_string())),
    ];
    let names: [&'static str; 5] = if db.r#type == "mariadb" {
        [
            "MYSQL_USER",
            "MYSQL_PWD",
            "MYSQL_HOST",
            "MYSQL_TCP_PORT",
            "MYSQL_DATABASE",
        ]
    } else {
        ["PGUSER", "PGPASSWORD", "PGHOST", "PGPORT", "PGDATABASE"]
    };
    let [user, password, host, port, database] = names;
    vars.push((user, text(&c.username)));
    vars.push((password, text(&fetched.password)));
    vars.push((host, text(&db.host)));
    vars.push((port, text(&db.port.to_string())));
    if !db.database.is_empty() {
        vars.push((database, text(&db.database)));
    }
    vars.push(("DATABASE_URL", dsn(fetched)));
    vars
}

/// One connection URL: `postgresql://user:password@host:port/database` or `mysql://…`.
fn dsn(fetched: &Fetched) -> Zeroizing<String> {
    let db = fetched.database();
    let scheme = if db.r#type == "mariadb" {
        "mysql"
    } else {
        "postgresql"
    };
    let host = if db.host.contains(':') {
        format!("[{}]", db.host)
    } else {
        db.host.clone()
    };
    Zeroizing::new(format!(
        "{scheme}://{}:{}@{host}:{}/{}",
        url_escape(&fetched.credential.username).as_str(),
        url_escape(&fetched.password).as_str(),
        db.port,
        url_escape(&db.database).as_str()
    ))
}

fn to_json(fetched: &Fetched) -> serde_json::Value {
    let c = &fetched.credential;
    let db = fetched.database();
    let mut database = json!({"type": db.r#type, "host": db.host, "port": db.port});
    if !db.database.is_empty()
        && let Some(obj) = database.as_object_mut()
    {
        obj.insert("database".into(), db.database.into());
    }
    json!({
        "lease_id": c.lease_id,
        "target": c.target,
        "role": c.role,
        "username": c.username,
        "password": fetched.password.as_str(),
        "expires_at": c.expires_at,
        "max_expires_at": c.max_expires_at,
        "database": database,
    })
}

/// `s` with everything but RFC 3986 unreserved characters percent-encoded.
fn url_escape(s: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(s.len()));
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` as one shell word: as it is when it is plain, else single-quoted.
fn shell_quote(s: &str) -> Zeroizing<String> {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/' | b':' | b'@')
        });
    if plain {
        Zeroizing::new(s.to_owned())
    } else {
        Zeroizing::new(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

async fn connect(socket: Option<String>) -> anyhow::Result<CredentialsClient<Channel>> {
    Ok(CredentialsClient::new(
        crate::workload_cmd::agent_channel(socket).await?,
    ))
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        sigil_proto::WORKLOAD_API_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

fn status_error(what: &str, s: &tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::Unimplemented => anyhow::anyhow!(
            "{what}: {} (does the agent and its server offer credentials?)",
            s.message()
        ),
        tonic::Code::PermissionDenied => {
            anyhow::anyhow!("{what}: permission denied: {}", s.message())
        }
        tonic::Code::NotFound => anyhow::anyhow!("{what}: not found: {}", s.message()),
        code => anyhow::anyhow!("{what}: {code:?}: {}", s.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(kind: &str, database: &str) -> Fetched {
        Fetched::new(pb::Credential {
            lease_id: "lease_1".into(),
            target: "orders".into(),
            role: "reader".into(),
            username: "v_reader_x".into(),
            password: "p@ss/w'rd".into(),
            expires_at: 1_000,
            max_expires_at: 5_000,
            database: Some(pb::Database {
                r#type: kind.into(),
                host: "db.internal".into(),
                port: 5432,
                database: database.into(),
            }),
        })
    }

    fn var<'a>(vars: &'a [(&str, Zeroizing<String>)], name: &str) -> Option<&'a str> {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn postgresql_variables_and_url() {
        let f = fetched("postgresql", "orders");
        let vars = env_vars(&f);
        assert_eq!(var(&vars, "SIGIL_LEASE_ID"), Some("lease_1"));
        assert_eq!(var(&vars, "PGUSER"), Some("v_reader_x"));
        assert_eq!(var(&vars, "PGPASSWORD"), Some("p@ss/w'rd"));
        assert_eq!(var(&vars, "PGHOST"), Some("db.internal"));
        assert_eq!(var(&vars, "PGPORT"), Some("5432"));
        assert_eq!(var(&vars, "PGDATABASE"), Some("orders"));
        assert_eq!(
            var(&vars, "DATABASE_URL"),
            Some("postgresql://v_reader_x:p%40ss%2Fw%27rd@db.internal:5432/orders")
        );
        assert!(var(&vars, "MYSQL_USER").is_none());
    }

    #[test]
    fn mariadb_variables_and_url_without_a_database() {
        let f = fetched("mariadb", "");
        let vars = env_vars(&f);
        assert_eq!(var(&vars, "MYSQL_USER"), Some("v_reader_x"));
        assert_eq!(var(&vars, "MYSQL_PWD"), Some("p@ss/w'rd"));
        assert_eq!(var(&vars, "MYSQL_HOST"), Some("db.internal"));
        assert_eq!(var(&vars, "MYSQL_TCP_PORT"), Some("5432"));
        assert!(var(&vars, "MYSQL_DATABASE").is_none());
        assert_eq!(
            dsn(&f).as_str(),
            "mysql://v_reader_x:p%40ss%2Fw%27rd@db.internal:5432/"
        );
    }

    #[test]
    fn json_carries_the_password_and_the_database() {
        let value = to_json(&fetched("postgresql", "orders"));
        assert_eq!(value["password"], "p@ss/w'rd");
        assert_eq!(value["database"]["type"], "postgresql");
        assert_eq!(value["database"]["database"], "orders");
        assert_eq!(value["max_expires_at"], 5_000);
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        assert_eq!(shell_quote("abc").as_str(), "abc");
        let quoted = shell_quote("p@ss w'rd$x");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quoted.as_str()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "p@ss w'rd$x");
    }

    #[test]
    fn renewal_comes_at_two_thirds_of_the_remaining_life_until_the_maximum() {
        assert_eq!(
            renew_delay(1_000, 1_300, 5_000),
            Some(Duration::from_secs(200))
        );
        assert_eq!(renew_delay(1_000, 1_003, 5_000), Some(MIN_RENEW_DELAY));
        assert_eq!(renew_delay(1_000, 900, 5_000), Some(MIN_RENEW_DELAY));
        assert_eq!(renew_delay(1_000, 5_000, 5_000), None);
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: CredsCommand,
    }

    #[test]
    fn everything_after_exec_is_the_command() {
        use clap::{CommandFactory as _, Parser as _};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "creds", "fetch", "orders", "reader", "--ttl", "15m", "--exec", "psql", "-c",
            "select 1", "--format", "json",
        ])
        .unwrap();
        let CredsCommand::Fetch(args) = cli.command else {
            panic!("not a fetch");
        };
        assert_eq!(
            (args.target.as_str(), args.role.as_str()),
            ("orders", "reader")
        );
        assert_eq!(args.ttl.as_deref(), Some("15m"));
        assert_eq!(
            args.exec.unwrap(),
            ["psql", "-c", "select 1", "--format", "json"]
        );
        assert_eq!(args.format, CredsFormat::Env);
    }
}
