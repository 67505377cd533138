//! The credentials bench's bare phase: the ceiling, one tokio-postgres connection per caller
//! running the same issuing and revoking SQL as OpenBao and Sigil, with nothing in between.
//!
//! Issue is one round trip (a simple query: `BEGIN; CREATE ROLE …; GRANT …; COMMIT`), revoke
//! another (`DROP ROLE IF EXISTS …`); a fresh 32-character password and `VALID UNTIL` of now
//! plus [`TTL_SECS`] per credential. Any PostgreSQL error fails the bench.

use std::time::{Duration, Instant};

use sigil_spiffe::{Clock as _, SystemClock};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use super::{
    CREATION_STATEMENTS, REVOCATION_STATEMENT, ROLE_PREFIX, TTL_SECS, connect, pg_message,
    random_password, render, utc_timestamp,
};

/// Cycles that `callers` connections complete (started before the deadline) in `secs` seconds;
/// `round` keeps this round's role names apart from the others'.
pub async fn cycles(callers: usize, secs: u64, round: usize) -> u64 {
    let mut clients = Vec::with_capacity(callers);
    for _ in 0..callers {
        clients.push(connect().await);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = JoinSet::new();
    for (caller, client) in clients.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut done = 0_u64;
            while Instant::now() < deadline {
                let name = format!("{ROLE_PREFIX}bare_{round}_{caller}_{done}");
                let password = random_password();
                let expiration = utc_timestamp(SystemClock.unix_secs() + TTL_SECS);
                let [create, grant] =
                    CREATION_STATEMENTS.map(|s| render(s, &name, &password, &expiration));
                let issue = Zeroizing::new(format!("BEGIN; {}; {}; COMMIT", *create, *grant));
                client
                    .batch_execute(&issue)
                    .await
                    .unwrap_or_else(|e| panic!("bare issue of `{name}`: {}", pg_message(&e)));
                client
                    .batch_execute(&render(REVOCATION_STATEMENT, &name, "", ""))
                    .await
                    .unwrap_or_else(|e| panic!("bare revoke of `{name}`: {}", pg_message(&e)));
                done += 1;
            }
            done
        });
    }
    tasks.join_all().await.into_iter().sum()
}

/// Fails unless PostgreSQL reads [`utc_timestamp`]'s text as the instant it was made from.
pub async fn check_timestamp(client: &tokio_postgres::Client) {
    let now = SystemClock.unix_secs() + TTL_SECS;
    let text = utc_timestamp(now);
    let read: i64 = client
        .query_one(
            "SELECT extract(epoch FROM $1::text::timestamptz)::bigint",
            &[&text],
        )
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL cannot read `{text}`: {}", pg_message(&e)))
        .get(0);
    assert_eq!(read, now, "PostgreSQL reads `{text}` as {read}, not {now}");
}
