//! Brokered database credentials issued and revoked per second against PostgreSQL: Sigil's
//! in-process Credentials service beside a bare `CREATE ROLE`/`DROP ROLE` loop and beside
//! OpenBao's database secrets engine, on the same PostgreSQL in the same run (issue 19).
//!
//! One operation is a full cycle: issue one credential (`CREATE ROLE … LOGIN PASSWORD …
//! VALID UNTIL <now + 1 h>` and `GRANT SELECT ON ALL TABLES IN SCHEMA public`, in one
//! transaction), then revoke it (`DROP ROLE IF EXISTS`). The three phases run exactly that SQL
//! ([`CREATION_STATEMENTS`], [`REVOCATION_STATEMENT`]), each with `SIGIL_BENCH_CALLERS`
//! concurrent callers (default 4) for `SIGIL_BENCH_SECS` (default 5):
//! 1. bare: one tokio-postgres connection per caller (`credentials/bare.rs`), the ceiling;
//! 2. openbao: `bao server -dev` with the `database` engine, `GET /v1/database/creds/bench` then
//!    `PUT /v1/sys/leases/revoke` per cycle (`credentials/openbao.rs`); only when
//!    `SIGIL_BENCH_OPENBAO` names the `bao` binary (`scripts/openbao.sh` installs it and prints
//!    its path);
//! 3. sigil: [`sigil_cycles`].
//!
//! The phases are interleaved in `SIGIL_BENCH_ROUNDS` rounds (default 2; each round starts with
//! the next phase) so that drift of the machine hits all of them alike. A phase's rate is the
//! cycles its callers started before the deadline over the nominal duration, summed over the
//! rounds. Every role the bench creates is named with [`ROLE_PREFIX`]; leftovers of an earlier,
//! interrupted run are dropped first, and the run fails if any remain at the end.
//!
//! `cargo bench -p sigil-server --bench credentials`
//! `SIGIL_BENCH_OPENBAO="$(scripts/openbao.sh)" cargo bench -p sigil-server --bench credentials`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

#[path = "credentials/bare.rs"]
mod bare;
#[path = "credentials/openbao.rs"]
mod openbao;
#[path = "shared/openbao_dev.rs"]
mod openbao_dev;

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

/// Where every phase creates and drops its roles (trust authentication).
pub const POSTGRES_URL: &str = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable";
/// Start of the name of every role the bench creates, in all three phases; the leftover check
/// counts the roles whose name starts with it.
pub const ROLE_PREFIX: &str = "sigil_bench_cred_";
/// Lifetime of a credential: `VALID UNTIL` is the time of issue plus this.
pub const TTL_SECS: i64 = 3600;
/// The issuing statements, run in one transaction, in OpenBao's template syntax (`{{name}}`,
/// `{{password}}`, `{{expiration}}`); [`render`] fills them in for the bare loop.
pub const CREATION_STATEMENTS: [&str; 2] = [
    r#"CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'"#,
    r#"GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}""#,
];
/// The revoking statement, in the same template syntax.
pub const REVOCATION_STATEMENT: &str = r#"DROP ROLE IF EXISTS "{{name}}""#;

/// Cycles (issue one credential, then revoke it) that `callers` concurrent callers of Sigil's
/// Credentials service complete in `secs` seconds, against [`POSTGRES_URL`], with
/// [`CREATION_STATEMENTS`] and [`REVOCATION_STATEMENT`] and role names starting with
/// `{ROLE_PREFIX}sigil_`. Count the cycles started before the deadline, as the other phases do
/// (`bare::cycles`); the harness divides by `secs`. 0 means "not measured": the phase is shown
/// as missing and its ratios are skipped.
async fn sigil_cycles(callers: usize, secs: u64) -> u64 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use sigil_server::audit::{AuditConfig, AuditLog, AuditSetup};
    use sigil_server::credentials::{Credentials, CredentialsConfig, Requester, Via};
    use sigil_spiffe::{SpiffeId, SystemClock};

    // The same server pieces a running server has: a datastore holding the leases, the policy
    // set deciding `RequestCredential`, and the audit log recording every issue and revoke.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bench.cedar"),
        "@id(\"bench\")\npermit (principal, action == Sigil::Action::\"RequestCredential\", resource);\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("admin.password"), "unused").unwrap();
    let store: Arc<dyn sigil_store::Datastore> =
        Arc::new(sigil_store::SqliteStore::open_in_memory().unwrap());
    let clock: Arc<dyn sigil_spiffe::Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(sigil_server::metrics::Metrics::new());
    let policies =
        Arc::new(sigil_server::policy::Policies::load(Some(dir.path()), metrics.clone()).unwrap());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (audit, tasks) = AuditLog::start(
        AuditSetup {
            config: AuditConfig::default(),
            store: store.clone(),
            keys: Arc::new(sigil_keys::MemoryKeyManager::new()),
            clock: clock.clone(),
            replica: String::new(),
            metrics,
        },
        stop_rx,
    )
    .await
    .unwrap();
    for task in tasks {
        tokio::spawn(task);
    }
    policies.set_audit(audit.clone());
    let spec: sigil_api::TargetSpec = serde_json::from_value(serde_json::json!({
        "name": "bench",
        "type": "postgresql",
        "url": "postgres://postgres@127.0.0.1:5432/test",
        "password_file": dir.path().join("admin.password"),
        "owner": "bench",
        "roles": [{
            "name": "sigilbench",
            "creation_statements": CREATION_STATEMENTS,
            "revocation_statements": [REVOCATION_STATEMENT],
        }],
    }))
    .unwrap();
    let credentials = Arc::new(
        Credentials::new(
            CredentialsConfig {
                targets: vec![spec],
                ..CredentialsConfig::default()
            },
            store,
            clock,
            policies,
            audit,
            String::new(),
        )
        .unwrap(),
    );
    let requester = Requester {
        spiffe_id: SpiffeId::parse("spiffe://example.org/bench/workload").unwrap(),
        entry_id: None,
        owner: "bench".to_owned(),
        selectors: Vec::new(),
        labels: Vec::new(),
        agent: None,
        source_address: None,
        via: Via::MutualTls,
    };
    // One warm-up cycle: the pool connects, and a broken setup fails here, loudly.
    let issued = credentials
        .issue(&requester, "bench", "sigilbench", Some(TTL_SECS as u64))
        .await
        .unwrap();
    credentials
        .revoke(&issued.lease.id, "bench", None, "bench")
        .await
        .unwrap();

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let credentials = credentials.clone();
        let requester = requester.clone();
        let done = done.clone();
        set.spawn(async move {
            while Instant::now() < deadline {
                let issued = credentials
                    .issue(&requester, "bench", "sigilbench", Some(TTL_SECS as u64))
                    .await
                    .unwrap();
                credentials
                    .revoke(&issued.lease.id, "bench", None, "bench")
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap();
    }
    let _ = stop.send(true);
    let cycles = done.load(Ordering::Relaxed);
    // Every user Sigil made is gone again.
    let (client, connection) = tokio_postgres::connect(POSTGRES_URL, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v\\_sigilbench\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "sigil left {left} roles behind");
    cycles
}

/// `template` with OpenBao's `{{name}}`, `{{password}}` and `{{expiration}}` replaced.
pub fn render(template: &str, name: &str, password: &str, expiration: &str) -> Zeroizing<String> {
    Zeroizing::new(
        template
            .replace("{{name}}", name)
            .replace("{{password}}", password)
            .replace("{{expiration}}", expiration),
    )
}

/// A fresh password: 32 base64url characters (24 random bytes).
pub fn random_password() -> Zeroizing<String> {
    Zeroizing::new(URL_SAFE_NO_PAD.encode(sigil_keys::random::random_bytes(24).unwrap()))
}

/// `unix_secs` as a UTC timestamp PostgreSQL reads, `YYYY-MM-DD HH:MM:SS+00` (the proleptic
/// Gregorian calendar, days-from-civil inverted as in Howard Hinnant's `civil_from_days`).
pub fn utc_timestamp(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}+00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A connection to [`POSTGRES_URL`]; its driver task ends with it.
pub async fn connect() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(POSTGRES_URL, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at `{POSTGRES_URL}`: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// PostgreSQL's own message for `e` (tokio-postgres' `Display` says only "db error").
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// Names of the roles whose name starts with [`ROLE_PREFIX`].
async fn bench_roles(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1",
            &[&ROLE_PREFIX],
        )
        .await
        .unwrap_or_else(|e| panic!("listing the bench's roles: {}", pg_message(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not `{v}`")),
        Err(_) => default,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Bare,
    OpenBao,
    Sigil,
}

impl Phase {
    const ALL: [Self; 3] = [Self::Bare, Self::OpenBao, Self::Sigil];

    fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare CREATE/DROP ROLE loop",
            Self::OpenBao => "OpenBao database engine",
            Self::Sigil => "Sigil Credentials service",
        }
    }
}

/// One phase's cycles per second in each round; `None` where it was not measured.
#[derive(Default)]
struct Tally {
    rounds: Vec<Option<f64>>,
}

impl Tally {
    /// Cycles per second over every round, when every round measured it.
    fn rate(&self) -> Option<f64> {
        let rates: Option<Vec<f64>> = self.rounds.iter().copied().collect();
        let rates = rates?;
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    }
}

#[tokio::main]
async fn main() {
    let callers = usize::try_from(env("SIGIL_BENCH_CALLERS", 4))
        .unwrap()
        .max(1);
    let secs = env("SIGIL_BENCH_SECS", 5).max(1);
    let rounds = usize::try_from(env("SIGIL_BENCH_ROUNDS", 2))
        .unwrap()
        .max(1);

    let admin = connect().await;
    let version: String = admin
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    let stale = bench_roles(&admin).await;
    for name in &stale {
        admin
            .batch_execute(&render(REVOCATION_STATEMENT, name, "", ""))
            .await
            .unwrap_or_else(|e| panic!("dropping stale role `{name}`: {}", pg_message(&e)));
    }
    if !stale.is_empty() {
        println!(
            "dropped {} role(s) named `{ROLE_PREFIX}*` left by an earlier, interrupted run",
            stale.len()
        );
    }
    bare::check_timestamp(&admin).await;

    let bao = match std::env::var_os("SIGIL_BENCH_OPENBAO") {
        Some(binary) => Some(openbao::DevServer::start(binary.as_ref(), callers).await),
        None => {
            println!(
                "OpenBao phase skipped; set SIGIL_BENCH_OPENBAO to the `bao` binary (`SIGIL_BENCH_OPENBAO=\"$(scripts/openbao.sh)\"` installs it and prints its path)"
            );
            None
        }
    };

    println!(
        "credential cycles (issue: CREATE ROLE + GRANT in one transaction; revoke: DROP ROLE) on PostgreSQL {version} at 127.0.0.1:5432/test, {callers} callers, {secs} s per phase, {rounds} interleaved rounds{}",
        bao.as_ref()
            .map(|b| format!("; OpenBao {} (`bao server -dev`)", b.version))
            .unwrap_or_default()
    );
    let mut tallies: [Tally; 3] = Default::default();
    for round in 0..rounds {
        for i in 0..Phase::ALL.len() {
            let phase = Phase::ALL[(round + i) % Phase::ALL.len()];
            let started = Instant::now();
            let cycles = match phase {
                Phase::Bare => Some(bare::cycles(callers, secs, round).await),
                Phase::OpenBao => match &bao {
                    Some(server) => Some(server.cycles(callers, secs).await),
                    None => None,
                },
                Phase::Sigil => Some(sigil_cycles(callers, secs).await).filter(|&n| n > 0),
            };
            let rate = cycles.map(|n| n as f64 / secs as f64);
            if let Some(rate) = rate {
                eprintln!(
                    "round {}: {:<28} {rate:>8.0} cycles/s ({:.1} s wall)",
                    round + 1,
                    phase.label(),
                    started.elapsed().as_secs_f64()
                );
            }
            tallies[phase as usize].rounds.push(rate);
        }
    }
    drop(bao);

    let header: String = (1..=rounds)
        .map(|r| format!("{:>10}", format!("round {r}")))
        .collect();
    println!("{:<28}{header}{:>16}", "phase (cycles/s)", "all rounds");
    for phase in Phase::ALL {
        let tally = &tallies[phase as usize];
        let cells: String = tally
            .rounds
            .iter()
            .map(|r| r.map_or_else(|| format!("{:>10}", "-"), |r| format!("{r:>10.0}")))
            .collect();
        let all = tally.rate().map_or_else(
            || {
                format!(
                    "{:>16}",
                    if phase == Phase::Sigil {
                        "not plugged in"
                    } else {
                        "skipped"
                    }
                )
            },
            |r| format!("{r:>16.0}"),
        );
        println!("{:<28}{cells}{all}", phase.label());
    }
    let bare = tallies[Phase::Bare as usize].rate();
    let bao = tallies[Phase::OpenBao as usize].rate();
    let sigil = tallies[Phase::Sigil as usize].rate();
    for (name, denominator, target) in [
        ("sigil/bare", bare, "target ≥ 0.70"),
        ("sigil/openbao", bao, "target > 1"),
    ] {
        let Some(denominator) = denominator else {
            continue;
        };
        match sigil {
            Some(sigil) => println!("{name}: {:.2} ({target})", sigil / denominator),
            None => println!("{name}: - (the Sigil phase is not plugged in; {target})"),
        }
    }
    if let (Some(bao), Some(bare)) = (bao, bare) {
        println!("openbao/bare: {:.2}", bao / bare);
    }

    let left = bench_roles(&admin).await;
    println!(
        "roles named `{ROLE_PREFIX}*` left in PostgreSQL: {}",
        left.len()
    );
    assert!(
        left.is_empty(),
        "the bench left {} role(s) behind (must be 0): {:?}",
        left.len(),
        left.iter().take(10).collect::<Vec<_>>()
    );
}
