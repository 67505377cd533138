//! The agent API over real mutual TLS against an in-process server: join-token attestation,
//! agent authentication (no certificate, unknown, banned, renewed, expired SVIDs), per-entry
//! authorization of X509-SVID and JWT-SVID issuance, and the pushed sync stream.
//!
//! Every negative test first shows the same call succeeding, so it cannot pass vacuously.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod support;

use std::time::Duration;

use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_proto::agent::v1::agent_service_client::AgentServiceClient;
use sigil_spiffe::{Clock, SpiffeId};
use sigil_store::{CredentialKind, Entry};
use support::{AgentSvid, PATIENCE, TestServer, attest_request, csr, serial_hex};
use tonic::transport::Channel;
use tonic::{Code, Status};

type Client = AgentServiceClient<Channel>;

/// Waits until the entry index holds (or, with `present == false`, no longer holds) `entry_id`.
async fn wait_indexed(server: &TestServer, entry_id: &str, present: bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.handle.index.get(entry_id).is_some() != present {
        assert!(
            tokio::time::Instant::now() < deadline,
            "entry index did not pick up `{entry_id}`"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An entry under `agent`, already visible to the agent API.
async fn indexed_entry(server: &TestServer, spiffe_id: &str, agent: &SpiffeId) -> Entry {
    let entry = server.create_entry(spiffe_id, agent).await;
    wait_indexed(server, &entry.id, true).await;
    entry
}

/// Calls every authenticated method once; returns each outcome by method name.
async fn call_every_authenticated_method(
    client: &mut Client,
    entry_id: &str,
) -> Vec<(&'static str, Result<(), Status>)> {
    let key = PrivateKey::generate().unwrap();
    let renew = client
        .renew_agent(pb::RenewAgentRequest { csr: csr(&key) })
        .await
        .map(drop);
    let sync = match client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
    {
        Ok(response) => response.into_inner().message().await.map(drop),
        Err(status) => Err(status),
    };
    let batch = client
        .batch_new_x509_svid(pb::BatchNewX509SvidRequest {
            params: vec![pb::NewX509SvidParams {
                entry_id: entry_id.to_owned(),
                csr: csr(&key),
            }],
        })
        .await
        .map(drop);
    let jwt = client
        .new_jwt_svid(pb::NewJwtSvidRequest {
            entry_id: entry_id.to_owned(),
            audience: vec!["spiffe://example.org/db".to_owned()],
        })
        .await
        .map(drop);
    vec![
        ("RenewAgent", renew),
        ("SyncAuthorizedEntries", sync),
        ("BatchNewX509Svid", batch),
        ("NewJwtSvid", jwt),
    ]
}

fn assert_all_ok(outcomes: &[(&str, Result<(), Status>)]) {
    for (method, outcome) in outcomes {
        assert!(outcome.is_ok(), "{method}: {outcome:?}");
    }
}

fn assert_all_refused(outcomes: &[(&str, Result<(), Status>)], code: Code) {
    for (method, outcome) in outcomes {
        match outcome {
            Err(status) => assert_eq!(status.code(), code, "{method}: {status:?}"),
            Ok(()) => panic!("{method} succeeded, expected {code:?}"),
        }
    }
}

/// A cheap authenticated call (an empty batch signs nothing).
async fn empty_batch(client: &mut Client) -> Result<(), Status> {
    client
        .batch_new_x509_svid(pb::BatchNewX509SvidRequest { params: vec![] })
        .await
        .map(drop)
}

fn expect_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, text: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(text), "{status:?}");
        }
        Ok(v) => panic!("expected {code:?}, got {v:?}"),
    }
}

#[tokio::test]
async fn join_token_attests_once_then_is_refused_as_already_used() {
    let server = TestServer::start().await;
    let token = server.join_token(600).await;
    let mut client = server.anonymous().await;

    let key = PrivateKey::generate().unwrap();
    let response = client
        .attest_agent(attest_request(&token, &key))
        .await
        .unwrap()
        .into_inner();
    let svid = response.svid.unwrap();
    let id = SpiffeId::parse(&svid.spiffe_id).unwrap();
    assert!(
        id.as_str()
            .starts_with("spiffe://example.org/sigil/agent/join_token/")
    );
    assert_eq!(sigil_tls::peer_spiffe_id(&svid.cert_chain[0]).unwrap(), id);
    assert_eq!(
        response.bundle.unwrap().x509_authorities,
        server.handle.bundle().x509_authorities
    );
    let agent = server
        .handle
        .store
        .get_agent(id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.serial, serial_hex(&svid.cert_chain));

    let again = client
        .attest_agent(attest_request(&token, &PrivateKey::generate().unwrap()))
        .await;
    expect_status(again, Code::PermissionDenied, "already used");
    server.stop().await;
}

#[tokio::test]
async fn expired_join_token_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.anonymous().await;
    let key = PrivateKey::generate().unwrap();
    let fresh = server.join_token(60).await;
    client
        .attest_agent(attest_request(&fresh, &key))
        .await
        .unwrap();

    let stale = server.join_token(60).await;
    server.clock.advance(Duration::from_secs(61));
    let result = client.attest_agent(attest_request(&stale, &key)).await;
    expect_status(result, Code::PermissionDenied, "expired");
    server.stop().await;
}

#[tokio::test]
async fn unknown_join_token_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.anonymous().await;
    let key = PrivateKey::generate().unwrap();
    let known = server.join_token(600).await;
    client
        .attest_agent(attest_request(&known, &key))
        .await
        .unwrap();

    let result = client
        .attest_agent(attest_request("not-a-token-the-server-issued", &key))
        .await;
    expect_status(result, Code::PermissionDenied, "not valid");
    assert_eq!(server.handle.store.list_agents().await.unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn attestation_type_other_than_join_token_is_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.anonymous().await;
    let key = PrivateKey::generate().unwrap();
    let token = server.join_token(600).await;

    let mut request = attest_request(&token, &key);
    request.attestation_type = "aws_iid".to_owned();
    let result = client.attest_agent(request).await;
    expect_status(result, Code::InvalidArgument, "`aws_iid`");

    // The refused request did not consume the token.
    client
        .attest_agent(attest_request(&token, &key))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn malformed_csr_is_refused_without_consuming_the_join_token() {
    let server = TestServer::start().await;
    let mut client = server.anonymous().await;
    let key = PrivateKey::generate().unwrap();
    let token = server.join_token(600).await;

    let mut request = attest_request(&token, &key);
    request.csr = b"definitely not a CSR".to_vec();
    let result = client.attest_agent(request).await;
    expect_status(result, Code::InvalidArgument, "csr");

    client
        .attest_agent(attest_request(&token, &key))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn calls_without_a_client_certificate_are_unauthenticated() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;

    let mut authenticated = server.client(&agent).await;
    assert_all_ok(&call_every_authenticated_method(&mut authenticated, &entry.id).await);

    let mut anonymous = server.anonymous().await;
    let outcomes = call_every_authenticated_method(&mut anonymous, &entry.id).await;
    assert_all_refused(&outcomes, Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn svid_of_an_agent_that_never_attested_is_permission_denied() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let mut attested = server.client(&agent).await;
    assert_all_ok(&call_every_authenticated_method(&mut attested, &entry.id).await);

    let ghost_id = sigil_server::naming::join_token_agent_id(&support::td(), "ghost").unwrap();
    let ghost = server.forge_signed_svid(&ghost_id, 600);
    let ghost_entry = indexed_entry(&server, "spiffe://example.org/ghost-web", &ghost_id).await;
    let mut client = server.client(&ghost).await;
    let outcomes = call_every_authenticated_method(&mut client, &ghost_entry.id).await;
    assert_all_refused(&outcomes, Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn banned_agent_is_refused_and_its_open_sync_stream_ends() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let mut client = server.client(&agent).await;
    assert_all_ok(&call_every_authenticated_method(&mut client, &entry.id).await);

    let mut stream = client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.entries.len(), 1);

    server
        .handle
        .store
        .set_agent_banned(agent.id.as_str(), true)
        .await
        .unwrap();

    let ended = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the sync stream was not ended after the ban");
    expect_status(ended, Code::PermissionDenied, "banned");

    let outcomes = call_every_authenticated_method(&mut client, &entry.id).await;
    assert_all_refused(&outcomes, Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn evicted_agent_is_refused_and_its_open_sync_stream_ends() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let mut client = server.client(&agent).await;
    assert_all_ok(&call_every_authenticated_method(&mut client, &entry.id).await);

    let mut stream = client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.entries.len(), 1);

    server
        .handle
        .store
        .delete_agent(agent.id.as_str())
        .await
        .unwrap();

    let ended = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the sync stream was not ended after the eviction");
    expect_status(ended, Code::PermissionDenied, "evicted");

    let outcomes = call_every_authenticated_method(&mut client, &entry.id).await;
    assert_all_refused(&outcomes, Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn renewed_svid_works_and_retires_the_old_one_once_used() {
    let server = TestServer::start().await;
    let old = server.attest().await;
    let mut old_client = server.client(&old).await;

    let key = PrivateKey::generate().unwrap();
    let renewed = old_client
        .renew_agent(pb::RenewAgentRequest { csr: csr(&key) })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    assert_eq!(renewed.spiffe_id, old.id.as_str());
    assert_ne!(serial_hex(&renewed.cert_chain), serial_hex(&old.chain));
    let new = AgentSvid {
        id: old.id.clone(),
        chain: renewed.cert_chain,
        key,
    };

    // Until the new SVID is used, the old one still works (the agent may not have switched yet).
    empty_batch(&mut old_client).await.unwrap();

    let mut new_client = server.client(&new).await;
    empty_batch(&mut new_client).await.unwrap();

    expect_status(
        empty_batch(&mut old_client).await,
        Code::PermissionDenied,
        "no longer current",
    );
    let mut old_again = server.client(&old).await;
    expect_status(
        empty_batch(&mut old_again).await,
        Code::PermissionDenied,
        "no longer current",
    );
    empty_batch(&mut new_client).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn sync_stream_opened_with_a_replaced_svid_ends_at_the_next_change() {
    let server = TestServer::start().await;
    let old = server.attest().await;
    let mut old_client = server.client(&old).await;
    let mut stream = old_client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Renew, then use the new SVID once: the old one is retired.
    let key = PrivateKey::generate().unwrap();
    let renewed = old_client
        .renew_agent(pb::RenewAgentRequest { csr: csr(&key) })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let new = AgentSvid {
        id: old.id.clone(),
        chain: renewed.cert_chain,
        key,
    };
    let mut new_client = server.client(&new).await;
    empty_batch(&mut new_client).await.unwrap();

    // The next change that reaches the old stream ends it instead of delivering entries.
    server
        .create_entry("spiffe://example.org/after-renewal", &old.id)
        .await;
    let ended = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream opened with the retired SVID was not ended");
    expect_status(ended, Code::Unauthenticated, "replaced");
    server.stop().await;
}

#[tokio::test]
async fn expired_svid_is_refused() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let use_serial_of = |svid: &AgentSvid| {
        let serial = serial_hex(&svid.chain);
        let id = svid.id.clone();
        let server = &server;
        async move { server.set_current_serial(&id, &serial).await }
    };

    // A server-signed SVID whose serial is the agent's current one is accepted...
    let current = server.forge_signed_svid(&agent.id, 600);
    use_serial_of(&current).await;
    empty_batch(&mut server.client(&current).await)
        .await
        .unwrap();

    // ...but not once it has expired: issue one two hours in the past, valid for a minute.
    let now = server.clock.now();
    server.clock.set(now - Duration::from_secs(2 * 3600));
    let expired = server.forge_signed_svid(&agent.id, 60);
    server.clock.set(now);
    use_serial_of(&expired).await;
    match server.connect(Some(&expired)).await {
        // Refused during the handshake.
        Err(_) => {}
        // TLS 1.3 clients finish before the server checks their certificate: the refusal then
        // arrives as the server's alert on the first call.
        Ok(mut client) => match empty_batch(&mut client).await {
            Ok(()) => panic!("an expired SVID was accepted"),
            Err(status) => assert!(
                format!("{status:?}").contains("CertificateExpired"),
                "refused, but not by the TLS layer: {status:?}"
            ),
        },
    }
    server.stop().await;
}

#[tokio::test]
async fn batch_signs_authorized_entries_and_refuses_others_per_entry() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let other = server.attest().await;
    let mine = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let theirs = indexed_entry(&server, "spiffe://example.org/db", &other.id).await;
    let mut client = server.client(&agent).await;

    let key = PrivateKey::generate().unwrap();
    let params = |entry_id: &str| pb::NewX509SvidParams {
        entry_id: entry_id.to_owned(),
        csr: csr(&key),
    };
    let results = client
        .batch_new_x509_svid(pb::BatchNewX509SvidRequest {
            params: vec![
                params(&mine.id),
                params(&theirs.id),
                params("no-such-entry"),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;

    assert_eq!(results.len(), 3);
    let signed = &results[0];
    assert_eq!(signed.entry_id, mine.id);
    assert!(signed.error.is_empty(), "{}", signed.error);
    let svid = signed.svid.as_ref().unwrap();
    assert_eq!(svid.spiffe_id, "spiffe://example.org/web");
    assert_eq!(
        sigil_tls::peer_spiffe_id(&svid.cert_chain[0]).unwrap(),
        mine.spec.spiffe_id
    );
    for (result, id) in results[1..]
        .iter()
        .zip([theirs.id.as_str(), "no-such-entry"])
    {
        assert_eq!(result.entry_id, id);
        assert!(result.svid.is_none(), "signed an unauthorized entry");
        assert!(result.error.contains("not authorized"), "{}", result.error);
    }

    // The other agent is served its own entry, so the refusal above is about the caller.
    let mut other_client = server.client(&other).await;
    let theirs_result = other_client
        .batch_new_x509_svid(pb::BatchNewX509SvidRequest {
            params: vec![params(&theirs.id)],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        theirs_result[0].svid.is_some(),
        "{}",
        theirs_result[0].error
    );
    server.stop().await;
}

#[tokio::test]
async fn jwt_svid_requires_an_audience_and_an_authorized_entry() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let other = server.attest().await;
    let mine = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let theirs = indexed_entry(&server, "spiffe://example.org/db", &other.id).await;
    let mut client = server.client(&agent).await;
    let request = |entry_id: &str, audience: &[&str]| pb::NewJwtSvidRequest {
        entry_id: entry_id.to_owned(),
        audience: audience.iter().map(|a| (*a).to_owned()).collect(),
    };

    let minted = client
        .new_jwt_svid(request(&mine.id, &["spiffe://example.org/db"]))
        .await
        .unwrap()
        .into_inner();
    assert!(minted.expires_at > minted.issued_at);
    let validated = sigil_keys::jwt_svid::validate(
        &minted.token,
        &server.handle.bundle(),
        "spiffe://example.org/db",
        server.clock.unix_secs(),
    )
    .unwrap();
    assert_eq!(validated.spiffe_id, mine.spec.spiffe_id);

    expect_status(
        client.new_jwt_svid(request(&mine.id, &[])).await,
        Code::InvalidArgument,
        "audience",
    );
    expect_status(
        client.new_jwt_svid(request(&mine.id, &[""])).await,
        Code::InvalidArgument,
        "audience",
    );
    expect_status(
        client
            .new_jwt_svid(request(&theirs.id, &["spiffe://example.org/db"]))
            .await,
        Code::PermissionDenied,
        "not authorized",
    );
    server.stop().await;
}

#[tokio::test]
async fn sync_stream_sends_the_full_set_at_once_and_pushes_every_change() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let first_entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let nested = indexed_entry(
        &server,
        "spiffe://example.org/web/worker",
        &first_entry.spec.spiffe_id,
    )
    .await;
    let mut client = server.client(&agent).await;
    let mut stream = client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry_ids = |msg: &pb::SyncAuthorizedEntriesResponse| {
        let mut ids: Vec<String> = msg.entries.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids
    };
    // Pushes come from the change feed, not from a polling interval: the server has none under
    // 10 s, so a 2 s bound tells the two apart while leaving room for a slow machine.
    let push_bound = Duration::from_secs(2);
    let mut next = async || {
        tokio::time::timeout(push_bound, stream.message())
            .await
            .expect("no sync message within 2 s")
            .unwrap()
            .expect("sync stream ended")
    };

    let first = next().await;
    let mut expected = vec![first_entry.id.clone(), nested.id.clone()];
    expected.sort();
    assert_eq!(entry_ids(&first), expected);
    let bundle = first.bundle.as_ref().unwrap();
    assert_eq!(
        bundle.x509_authorities,
        server.handle.bundle().x509_authorities
    );
    assert_eq!(bundle.sequence, server.handle.bundle().sequence);

    let added = server
        .create_entry("spiffe://example.org/api", &agent.id)
        .await;
    let after_create = next().await;
    expected.push(added.id.clone());
    expected.sort();
    assert_eq!(entry_ids(&after_create), expected);

    server
        .handle
        .store
        .delete_entry(&first_entry.id)
        .await
        .unwrap();
    let after_delete = next().await;
    // The nested entry went with its parent: only `api` is left.
    assert_eq!(entry_ids(&after_delete), vec![added.id.clone()]);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_sync_streams_instead_of_waiting_for_agents() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let mut client = server.client(&agent).await;
    let mut stream = client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // `stop` fails the test if the open stream keeps the server from shutting down.
    server.stop().await;
    let ended = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the sync stream outlived the server");
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
}

/// Waits for the next sync message that satisfies `done`, skipping others.
async fn next_message_where(
    stream: &mut tonic::Streaming<pb::SyncAuthorizedEntriesResponse>,
    done: impl Fn(&pb::SyncAuthorizedEntriesResponse) -> bool,
) -> pb::SyncAuthorizedEntriesResponse {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let msg = stream.message().await.unwrap().unwrap();
            if done(&msg) {
                return msg;
            }
        }
    })
    .await
    .expect("no such sync message was pushed")
}

/// The parsed CRL among `crls` issued by the authority with subject key id `authority_id`,
/// its signature checked against that authority's certificate `issuer_der`; returns the hex
/// serials it lists.
fn crl_serials(crls: &[Vec<u8>], issuer_der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::FromDer;
    let (_, issuer) = x509_parser::certificate::X509Certificate::from_der(issuer_der).unwrap();
    let key = sigil_keys::PublicKey::from_spki_der(issuer.public_key().raw).unwrap();
    let mut found = crls.iter().filter_map(|der| {
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(der).unwrap();
        (crl.issuer() == issuer.subject()).then(|| {
            key.verify_x509(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
                .expect("a CRL names an issuer whose key did not sign it");
            crl.iter_revoked_certificates()
                .map(|r| sigil_keys::digest::hex(r.raw_serial()))
                .collect::<Vec<_>>()
        })
    });
    let serials = found.next().expect("no CRL from this issuer");
    assert!(found.next().is_none(), "two CRLs from one issuer");
    serials
}

#[tokio::test]
async fn every_issued_credential_is_recorded_in_the_inventory() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let store = &server.handle.store;
    let own = store
        .get_issued(CredentialKind::X509Svid, &serial_hex(&agent.chain))
        .await
        .unwrap()
        .expect("the agent SVID issued at attestation is not recorded");
    assert_eq!(own.spiffe_id, agent.id);
    assert_eq!(own.issued_to, agent.id);

    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let mut client = server.client(&agent).await;
    let key = PrivateKey::generate().unwrap();
    let svid = client
        .batch_new_x509_svid(pb::BatchNewX509SvidRequest {
            params: vec![pb::NewX509SvidParams {
                entry_id: entry.id.clone(),
                csr: csr(&key),
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0)
        .svid
        .unwrap();
    let recorded = store
        .get_issued(CredentialKind::X509Svid, &serial_hex(&svid.cert_chain))
        .await
        .unwrap()
        .expect("a workload X509-SVID is not recorded");
    assert_eq!(recorded.spiffe_id.as_str(), "spiffe://example.org/web");
    assert_eq!(recorded.issued_to, agent.id);
    assert_eq!(recorded.expires_at, svid.expires_at);
    let intermediate = sigil_keys::cert_ids::chain_authority_ids(&svid.cert_chain[1..2]);
    assert!(intermediate.contains(&recorded.authority_id));

    let jwt = client
        .new_jwt_svid(pb::NewJwtSvidRequest {
            entry_id: entry.id.clone(),
            audience: vec!["db".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    let jti = sigil_keys::jws::unverified_jti(&jwt.token).unwrap();
    let recorded = store
        .get_issued(CredentialKind::JwtSvid, &jti)
        .await
        .unwrap()
        .expect("a JWT-SVID is not recorded");
    assert_eq!(recorded.expires_at, jwt.expires_at);
    assert_eq!(
        Some(recorded.authority_id),
        sigil_keys::jws::unverified_kid(&jwt.token)
    );
    server.stop().await;
}

#[tokio::test]
async fn revocations_are_pushed_with_crls_that_list_revoked_serials() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let mut client = server.client(&agent).await;
    let mut stream = client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = next_message_where(&mut stream, |_| true).await;
    assert!(first.revoked_x509_svids.is_empty());
    assert!(first.revoked_jwt_svids.is_empty());
    // One CRL per X.509 authority (root and intermediate), empty so far.
    assert_eq!(first.crls.len(), 2);

    let key = PrivateKey::generate().unwrap();
    let sign = |client: &mut Client| {
        let params = vec![pb::NewX509SvidParams {
            entry_id: entry.id.clone(),
            csr: csr(&key),
        }];
        let mut client = client.clone();
        async move {
            client
                .batch_new_x509_svid(pb::BatchNewX509SvidRequest { params })
                .await
                .unwrap()
                .into_inner()
                .results
                .remove(0)
                .svid
                .unwrap()
        }
    };
    let revoked = sign(&mut client).await;
    let kept = sign(&mut client).await;
    let serial = serial_hex(&revoked.cert_chain);
    let now = server.clock.unix_secs();
    server
        .handle
        .store
        .revoke_credential(CredentialKind::X509Svid, &serial, "key leaked", now)
        .await
        .unwrap();

    let msg = next_message_where(&mut stream, |m| !m.revoked_x509_svids.is_empty()).await;
    assert_eq!(
        msg.revoked_x509_svids,
        vec![pb::RevokedCredential {
            id: serial.clone(),
            expires_at: revoked.expires_at,
        }]
    );
    assert_eq!(
        crl_serials(&msg.crls, &revoked.cert_chain[1]),
        vec![serial.clone()],
        "the intermediate's CRL must list exactly the revoked serial, not {}",
        serial_hex(&kept.cert_chain)
    );
    let root = &server.handle.ca.bundle().x509_authorities[0];
    assert!(crl_serials(&msg.crls, root).is_empty());

    // A JWT-SVID: pushed by jti, in no CRL.
    let jwt = client
        .new_jwt_svid(pb::NewJwtSvidRequest {
            entry_id: entry.id.clone(),
            audience: vec!["db".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    let jti = sigil_keys::jws::unverified_jti(&jwt.token).unwrap();
    server
        .handle
        .store
        .revoke_credential(CredentialKind::JwtSvid, &jti, "", now)
        .await
        .unwrap();
    let msg = next_message_where(&mut stream, |m| !m.revoked_jwt_svids.is_empty()).await;
    assert_eq!(msg.revoked_jwt_svids[0].id, jti);
    assert_eq!(msg.revoked_x509_svids.len(), 1);
    assert_eq!(crl_serials(&msg.crls, &revoked.cert_chain[1]), vec![serial]);
    server.stop().await;
}

/// A push of trust alone (here a revocation) leaves the entries out for an agent that asked for
/// that, and carries them in full for one that did not; an entry change carries them either way.
#[tokio::test]
async fn trust_only_pushes_omit_unchanged_entries_for_agents_that_ask() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let mut client = server.client(&agent).await;
    let open = |omit: bool| {
        let mut client = client.clone();
        async move {
            client
                .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {
                    omit_unchanged_entries: omit,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut terse = open(true).await;
    let mut full = open(false).await;
    for stream in [&mut terse, &mut full] {
        let first = next_message_where(stream, |_| true).await;
        assert_eq!(first.entries.len(), 1);
        assert!(!first.entries_unchanged);
    }

    let jwt = client
        .new_jwt_svid(pb::NewJwtSvidRequest {
            entry_id: entry.id.clone(),
            audience: vec!["db".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    let jti = sigil_keys::jws::unverified_jti(&jwt.token).unwrap();
    server
        .handle
        .store
        .revoke_credential(CredentialKind::JwtSvid, &jti, "", server.clock.unix_secs())
        .await
        .unwrap();
    let pushed = next_message_where(&mut terse, |m| !m.revoked_jwt_svids.is_empty()).await;
    assert!(pushed.entries_unchanged);
    assert!(pushed.entries.is_empty());
    let pushed = next_message_where(&mut full, |m| !m.revoked_jwt_svids.is_empty()).await;
    assert!(!pushed.entries_unchanged);
    assert_eq!(pushed.entries.len(), 1);

    let second = indexed_entry(&server, "spiffe://example.org/api", &agent.id).await;
    let pushed = next_message_where(&mut terse, |m| m.entries.len() == 2).await;
    assert!(!pushed.entries_unchanged);
    assert!(pushed.entries.iter().any(|e| e.id == second.id));
    server.stop().await;
}

/// A large authorized set goes in parts of entries only to an agent that accepts parts, the
/// trust part in the last; their union is the set. An agent that did not ask gets one message.
#[tokio::test]
async fn a_large_set_is_sent_in_parts_only_to_an_agent_that_accepts_them() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let mut expected = Vec::new();
    for i in 0..300 {
        let entry = server
            .create_entry(&format!("spiffe://example.org/workload-{i:03}"), &agent.id)
            .await;
        expected.push(entry.id);
    }
    for id in &expected {
        wait_indexed(&server, id, true).await;
    }
    expected.sort();
    let mut client = server.client(&agent).await;
    let mut open = async |accept_entry_parts: bool| {
        client
            .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {
                omit_unchanged_entries: true,
                accept_entry_parts,
            })
            .await
            .unwrap()
            .into_inner()
    };
    let next = async |stream: &mut tonic::Streaming<pb::SyncAuthorizedEntriesResponse>| {
        tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("no sync message in time")
            .unwrap()
            .expect("sync stream ended")
    };

    let mut parts = open(true).await;
    let mut got = Vec::new();
    let mut leading = 0;
    let last = loop {
        let msg = next(&mut parts).await;
        if !msg.entries_continue {
            break msg;
        }
        leading += 1;
        let encoded = prost::Message::encoded_len(&msg);
        // About 4 KiB of entries each (a part may exceed it by less than one entry).
        assert!(encoded <= 5 * 1024, "a part of {encoded} bytes");
        got.extend(msg.entries.iter().map(|e| e.id.clone()));
        let entries_only = pb::SyncAuthorizedEntriesResponse {
            entries: msg.entries.clone(),
            entries_continue: true,
            ..Default::default()
        };
        assert_eq!(msg, entries_only, "a part carries entries only");
        assert!(!msg.entries.is_empty());
    };
    assert!(leading >= 2, "300 entries in {} messages", leading + 1);
    assert!(
        last.bundle.is_some(),
        "the last part carries the trust part"
    );
    assert!(!last.entries_unchanged);
    assert!(!last.policy_hash.is_empty());
    got.extend(last.entries.iter().map(|e| e.id.clone()));
    got.sort();
    assert_eq!(
        got, expected,
        "the union of the parts is the set, each entry once"
    );

    let mut whole = open(false).await;
    let msg = next(&mut whole).await;
    assert!(!msg.entries_continue);
    assert!(msg.bundle.is_some());
    let mut ids: Vec<String> = msg.entries.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, expected, "one message with the whole set");
    server.stop().await;
}

#[tokio::test]
async fn an_agent_whose_own_svid_is_revoked_is_refused_and_its_stream_ends() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let entry = indexed_entry(&server, "spiffe://example.org/web", &agent.id).await;
    let mut client = server.client(&agent).await;
    assert_all_ok(&call_every_authenticated_method(&mut client, &entry.id).await);
    let mut stream = client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    next_message_where(&mut stream, |_| true).await;

    server
        .handle
        .store
        .revoke_credential(
            CredentialKind::X509Svid,
            &serial_hex(&agent.chain),
            "node compromised",
            server.clock.unix_secs(),
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the sync stream was not ended after the revocation");
    expect_status(ended, Code::PermissionDenied, "revoked");
    let outcomes = call_every_authenticated_method(&mut client, &entry.id).await;
    assert_all_refused(&outcomes, Code::PermissionDenied);
    server.stop().await;
}
