//! Entry expiry with real processes: a workload streaming X509-SVIDs from the agent's Workload
//! API sees an expiring entry, then loses it at its `expires_at` although nothing else changes
//! (no admin call, no restart); an entry without expiry stays.

use std::time::Duration;

use sigil_proto::workload as wl;

use crate::harness::*;

/// How far in the future the expiring entry expires: long enough for it to reach the workload
/// first on a loaded machine, short enough to keep the test quick.
const EXPIRES_IN: Duration = Duration::from_secs(15);
/// Only ever a failure bound.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn expired_entry_leaves_the_workload_stream_without_any_other_change() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let agent_paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&agent_paths);

    let lasting = "spiffe://example.org/e2e/lasting";
    let expiring = "spiffe://example.org/e2e/expiring";
    create_uid_entry(&server, lasting, &agent_id);
    let expires_at = unix_now() + i64::try_from(EXPIRES_IN.as_secs()).unwrap();
    let expiring_entry = create_uid_entry_with(
        &server,
        expiring,
        &agent_id,
        &["--expires-at", &expires_at.to_string()],
    );

    // The Workload API refuses a caller with no identity at all: wait until it has one.
    fetch_svid_files(&agent_paths.socket, &tmp.path().join("svid"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = workload_client(&agent_paths.socket).await;
        let mut stream = client
            .fetch_x509svid(with_security_header(wl::X509svidRequest {}))
            .await
            .expect("open the X509-SVID stream")
            .into_inner();
        let mut next = async || {
            let msg = tokio::time::timeout(PATIENCE, stream.message())
                .await
                .expect("no Workload API message in time")
                .expect("the Workload API stream failed")
                .expect("the Workload API stream ended");
            let mut ids: Vec<String> = msg.svids.iter().map(|s| s.spiffe_id.clone()).collect();
            ids.sort();
            ids
        };

        // Until both entries have reached the agent, the workload may see fewer.
        let both = vec![expiring.to_owned(), lasting.to_owned()];
        while next().await != both {}
        assert!(
            unix_now() < expires_at,
            "the entry reached the workload only after its expiry; raise EXPIRES_IN"
        );

        // No further change is made: the next set without the entry comes from its expiry.
        // Messages in between (the capped SVID of the expiring entry being rotated) keep both.
        loop {
            let ids = next().await;
            if ids == both {
                continue;
            }
            assert_eq!(ids, [lasting.to_owned()]);
            break;
        }
        assert!(
            unix_now() >= expires_at,
            "the entry was dropped before its expiry"
        );
    });

    // The entry itself is still registered: only its expiry removed it from the workload.
    let shown = server.admin(&["entry", "show", "--id", &expiring_entry]);
    assert!(shown.status.success(), "entry show: {}", stderr(&shown));
}
