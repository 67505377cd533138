//! Rotation end to end, on short TTLs and the real clock: a workload's open `FetchX509SVID` stream
//! receives the rotated SVID (full state) before the first one expires, and the agent renews its
//! own SVID again and again while new entries keep reaching workloads.

use std::time::{Duration, Instant};

use sigil_proto::workload as wl;
use x509_parser::prelude::*;

use crate::harness::*;

/// The next stream message, failing the test at `deadline`.
async fn next_message(
    stream: &mut tonic::Streaming<wl::X509svidResponse>,
    deadline: tokio::time::Instant,
) -> wl::X509svidResponse {
    tokio::time::timeout_at(deadline, stream.message())
        .await
        .expect("timed out waiting for a Workload API message")
        .expect("stream error")
        .expect("the agent closed the stream")
}

/// What a stream message says about the workload's one X509-SVID.
#[derive(Debug)]
struct Served {
    leaf_der: Vec<u8>,
    bundle: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

/// Checks that `msg` is a full state for a workload with the single identity `spiffe_id`: the
/// SVID chain, the private key matching its leaf, and the trust bundle.
fn full_state(msg: &wl::X509svidResponse, spiffe_id: &str) -> Served {
    assert_eq!(
        msg.svids.len(),
        1,
        "exactly the workload's one identity: {msg:?}"
    );
    let svid = &msg.svids[0];
    assert_eq!(svid.spiffe_id, spiffe_id);
    assert!(!svid.bundle.is_empty(), "every message carries the bundle");
    let (rest, leaf) = X509Certificate::from_der(&svid.x509_svid).expect("leaf certificate");
    let leaf_len = svid.x509_svid.len() - rest.len();
    let san = leaf.subject_alternative_name().unwrap().expect("SAN");
    assert!(
        san.value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::URI(u) if *u == spiffe_id)),
        "the leaf names {spiffe_id}"
    );
    let key = sigil_keys::PrivateKey::from_pkcs8_der(&svid.x509_svid_key).expect("PKCS#8 key");
    assert_eq!(
        key.public_key().spki_der(),
        leaf.public_key().raw,
        "the key belongs to the leaf"
    );
    Served {
        leaf_der: svid.x509_svid[..leaf_len].to_vec(),
        bundle: svid.bundle.clone(),
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
    }
}

#[test]
fn workload_stream_receives_the_rotated_svid_before_the_first_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    let spiffe_id = "spiffe://example.org/e2e/rotating";
    create_uid_entry_with(&server, spiffe_id, &agent_id, &["--x509-svid-ttl", "6s"]);
    fetch_svid_files(&paths.socket, &tmp.path().join("warmup"));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut client = workload_client(&paths.socket).await;
        let mut stream = client
            .fetch_x509svid(with_security_header(wl::X509svidRequest {}))
            .await
            .expect("FetchX509SVID")
            .into_inner();
        let first = full_state(&next_message(&mut stream, deadline).await, spiffe_id);
        assert!(first.not_after - first.not_before <= 6 + 10, "6 s TTL (+10 s back-dating)");
        let second = loop {
            let msg = next_message(&mut stream, deadline).await;
            let served = full_state(&msg, spiffe_id);
            if served.leaf_der != first.leaf_der {
                break served;
            }
        };
        let received_at = unix_now();
        assert!(
            received_at < first.not_after,
            "rotation must happen before expiry: received at {received_at}, first SVID expires at {}",
            first.not_after
        );
        assert!(second.not_after > first.not_after, "the new SVID lives longer");
        assert!(second.not_before >= first.not_before);
        assert_eq!(second.bundle, first.bundle, "same trust bundle in both messages");
    });
}

#[test]
fn agent_renews_its_own_svid_repeatedly_and_new_entries_still_reach_workloads() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(tmp.path(), "agent_svid_ttl = \"6s\"\n");
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let mut agent = start_agent(&paths);
    let attested = Instant::now();

    let current_serial = || {
        let o = server.admin(&[
            "agent",
            "show",
            "--spiffe-id",
            &agent_id,
            "--output",
            "json",
        ]);
        if !o.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        v["serial"].as_str().map(str::to_owned)
    };
    let mut serials: Vec<String> = Vec::new();
    wait_for(Duration::from_secs(25), "three agent SVID renewals", || {
        if let Some(status) = agent.exited() {
            panic!("agent exited ({status}):\n{}", agent.log());
        }
        let serial = current_serial()?;
        if serials.last() != Some(&serial) {
            assert!(
                !serials.contains(&serial),
                "serial {serial} came back: {serials:?}"
            );
            serials.push(serial);
        }
        // The attestation SVID plus three renewals.
        (serials.len() >= 4).then_some(())
    });

    // The attestation SVID (6 s) has expired by now, so whatever the agent does next it does
    // with a renewed SVID, which the server must accept in place of the retired one.
    if let Some(rest) = Duration::from_secs(7).checked_sub(attested.elapsed()) {
        std::thread::sleep(rest);
    }
    let spiffe_id = "spiffe://example.org/e2e/after-renewals";
    create_uid_entry(&server, spiffe_id, &agent_id);
    let fetched = fetch_svid_files(&paths.socket, &tmp.path().join("after"));
    assert!(stdout(&fetched).contains(spiffe_id), "{}", stdout(&fetched));
    assert!(
        agent.exited().is_none(),
        "the agent keeps running:\n{}",
        agent.log()
    );
    assert!(
        !agent.log().contains("no longer current"),
        "the server refused a current SVID:\n{}",
        agent.log()
    );
}
