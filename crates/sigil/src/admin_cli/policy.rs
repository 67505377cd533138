//! `sigil policy check|test|decide|show|reload`: Cedar policy directories checked and tested
//! locally, decisions made locally (`--dir`) or by the live server as a dry-run, and the server's
//! set in force shown and reloaded through the admin API.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use sigil_api::{MAX_REQUEST_BODY_BYTES, PolicyDecision, PolicyReloaded, PolicyStatus, paths};
use sigil_policy::{DecisionRequest, MAX_CASES_BYTES, PolicyEngine};
use sigil_spiffe::{Clock, SystemClock};

use super::client::{AdminClient, describe_io_error};
use super::output::{Block, emit, emit_json};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy directory and validate it strictly against the schema.
    Check(CheckArgs),
    /// Run a file of cases (requests with the decision expected) against a policy directory.
    Test(TestArgs),
    /// Decide one request: locally against `--dir`, or by the running server (a dry-run).
    Decide(DecideArgs),
    /// Show the server's policy set in force.
    Show(ShowArgs),
    /// Make the server read its policy directory again now (as SIGHUP does).
    Reload(ShowArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy directory (`*.cedar` policies, `*.cedarschema` fragments).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The cases file: a JSON list of `{"name", "request", "now", "expect": "allow"|"deny"}`.
    #[arg(value_name = "CASES")]
    pub cases: PathBuf,
    /// The policy directory (default: the directory of the cases file).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The request as JSON (`{"principal", "action", "resource", "context"}`), or `-` for
    /// standard input.
    #[arg(long, value_name = "FILE|-")]
    pub request: String,
    /// Decide locally against this policy directory instead of asking the server.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The decision time for `--dir`, in Unix seconds (default: now).
    #[arg(
        long,
        value_name = "UNIX",
        requires = "dir",
        allow_negative_numbers = true
    )]
    pub now: Option<i64>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// Runs one `sigil policy` command.
pub async fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Check(args) => check(&args.dir),
        PolicyCommand::Test(args) => test(&args.cases, args.dir.as_deref()),
        PolicyCommand::Decide(args) => decide(args).await,
        PolicyCommand::Show(args) => {
            let status: PolicyStatus = AdminClient::new(&args.conn.admin_socket)
                .get(paths::POLICY)
                .await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&status),
                OutputFormat::Text => emit(&status_block(&status).render()),
            }
        }
        PolicyCommand::Reload(args) => {
            let reloaded: PolicyReloaded = AdminClient::new(&args.conn.admin_socket)
                .post_empty(paths::POLICY_RELOAD)
                .await?;
            match args.out.output {
                OutputFormat::Json => emit_json(&reloaded),
                OutputFormat::Text => emit(&format!("reloaded: hash {}\n", reloaded.hash)),
            }
        }
    }
}

/// `policy check DIR`: `ok: N policies, hash H`, or the first error as `file:line:column: …`.
fn check(dir: &Path) -> anyhow::Result<()> {
    let loaded = sigil_policy::load_dir(dir)?;
    emit(&format!(
        "ok: {} {}, hash {}\n",
        loaded.len(),
        plural(loaded.len(), "policy", "policies"),
        loaded.hash()
    ))
}

/// `policy test CASES [--dir DIR]`: `ok: N cases`, or one line per failing case (on stdout) and
/// a failure.
fn test(cases: &Path, dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => match cases.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let engine = PolicyEngine::new(sigil_policy::load_dir(&dir)?);
    let text = read_file(cases, MAX_CASES_BYTES, "cases file")?;
    let report = sigil_policy::run_cases(&engine, &text)
        .with_context(|| format!("cannot run the cases of {}", cases.display()))?;
    if report.passed() {
        return emit(&format!(
            "ok: {} {}\n",
            report.total,
            plural(report.total, "case", "cases")
        ));
    }
    let lines: String = report
        .failures
        .iter()
        .map(|failure| format!("{failure}\n"))
        .collect();
    emit(&lines)?;
    bail!(
        "{} of {} cases failed against {}",
        report.failures.len(),
        report.total,
        dir.display()
    )
}

/// `policy decide`: the request read and checked here, then decided locally or by the server.
/// A denial is an answer, not a failure.
async fn decide(args: DecideArgs) -> anyhow::Result<()> {
    let (name, bytes) = if args.request == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(limit(MAX_REQUEST_BODY_BYTES) + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the request from standard input")?;
        if bytes.len() > MAX_REQUEST_BODY_BYTES {
            bail!("the request on standard input is larger than {MAX_REQUEST_BODY_BYTES} bytes");
        }
        ("standard input".to_owned(), bytes)
    } else {
        let path = Path::new(&args.request);
        (
            path.display().to_string(),
            read_file(path, MAX_REQUEST_BODY_BYTES, "request")?,
        )
    };
    let request: DecisionRequest = serde_json::from_slice(&bytes)
        .map_err(|err| anyhow!("the request in {name} is not valid: {err}"))?;
    let decision = match &args.dir {
        Some(dir) => {
            let loaded = sigil_policy::load_dir(dir)?;
            let now = args.now.unwrap_or_else(|| SystemClock.unix_secs());
            let d = loaded.decide(&request, now);
            PolicyDecision::new(d.allowed, d.policies, d.errors, d.policy_hash)
        }
        None => {
            AdminClient::new(&args.conn.admin_socket)
                .post(paths::POLICY_DECIDE, &request)
                .await?
        }
    };
    match args.out.output {
        OutputFormat::Json => emit_json(&decision),
        OutputFormat::Text => emit(&render_decision(&decision)),
    }
}

/// `allow` or `deny` on the first line, then the policies that decided, the errors and the hash.
fn render_decision(decision: &PolicyDecision) -> String {
    let block = Block::default()
        .lines("Policy", decision.policies.iter().cloned())
        .lines("Error", decision.errors.iter().cloned())
        .line("Policy hash", decision.policy_hash.clone());
    format!("{}\n{}", decision.decision.as_str(), block.render())
}

fn status_block(status: &PolicyStatus) -> Block {
    Block::default()
        .line("Hash", status.hash.clone())
        .line("Policies", status.policies.to_string())
        .line(
            "Directory",
            status
                .dir
                .clone()
                .unwrap_or_else(|| "(none: the built-in default)".to_owned()),
        )
        .lines("Policy id", status.ids.iter().cloned())
        .lines("Action", status.actions.iter().cloned())
}

/// The bytes of `path`, at most `max`; errors name the file as `what`.
fn read_file(path: &Path, max: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|err| {
        anyhow!(
            "cannot open the {what} {}: {}",
            path.display(),
            describe_io_error(&err)
        )
    })?;
    let mut bytes = Vec::new();
    file.take(limit(max) + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if bytes.len() > max {
        bail!("the {what} {} is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

fn limit(max: usize) -> u64 {
    u64::try_from(max).unwrap_or(u64::MAX - 1)
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use sigil_api::PolicyVerdict;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: PolicyCommand,
    }

    #[test]
    fn decide_reads_its_flags_and_now_needs_a_directory() {
        let cli = Cli::try_parse_from([
            "policy",
            "decide",
            "--request",
            "-",
            "--dir",
            "policies",
            "--now",
            "1704072600",
            "--output",
            "json",
        ])
        .unwrap();
        let PolicyCommand::Decide(args) = cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.request, "-");
        assert_eq!(args.dir, Some(PathBuf::from("policies")));
        assert_eq!(args.now, Some(1_704_072_600));
        assert_eq!(args.out.output, OutputFormat::Json);
        let err = Cli::try_parse_from(["policy", "decide", "--request", "r.json", "--now", "5"])
            .unwrap_err();
        assert!(err.to_string().contains("--dir"), "{err}");
    }

    #[test]
    fn check_and_test_take_paths() {
        let cli = Cli::try_parse_from(["policy", "check", "p"]).unwrap();
        assert!(matches!(cli.command, PolicyCommand::Check(a) if a.dir == Path::new("p")));
        let cli = Cli::try_parse_from(["policy", "test", "p/cases.json"]).unwrap();
        assert!(matches!(cli.command, PolicyCommand::Test(a) if a.dir.is_none()));
    }

    #[test]
    fn a_decision_prints_its_word_policies_and_errors() {
        let decision = PolicyDecision::new(
            false,
            vec!["no-writes".into()],
            vec!["policy `x` failed".into()],
            "abc".into(),
        );
        assert_eq!(decision.decision, PolicyVerdict::Deny);
        assert_eq!(
            render_decision(&decision),
            "deny\nPolicy      : no-writes\nError       : policy `x` failed\nPolicy hash : abc\n"
        );
        let allow = PolicyDecision::new(true, vec!["a".into(), "b".into()], vec![], "h".into());
        assert_eq!(
            render_decision(&allow),
            "allow\nPolicy      : a\nPolicy      : b\nPolicy hash : h\n"
        );
    }

    #[test]
    fn the_shipped_examples_check_and_pass_their_cases() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(examples).unwrap() {
            let dir = entry.unwrap().path();
            check(&dir).unwrap();
            test(&dir.join("cases.json"), None).unwrap();
            seen += 1;
        }
        assert!(seen >= 5, "only {seen} examples");
    }
}
