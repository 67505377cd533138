//! The Workload API over its Unix socket with a plain tonic client: the security header, the
//! status codes the SPIFFE standards name, JWT-SVID validation failures, and streams that follow
//! snapshot changes with full messages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod workload_api_fixture;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use prost_types::value::Kind;
use sigil_agent::workload::ServeOptions;
use sigil_proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest, X509BundlesRequest, X509svidRequest,
};
use sigil_spiffe::{Clock, SystemClock};
use tonic::Code;
use workload_api_fixture::{Harness, foreign_selector, my_uid_selector, with_header};

const AUD: &str = "spiffe://example.org/audience";

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.map(|_| ()).unwrap_err().code()
}

fn validate_request(svid: &str, audience: &str) -> tonic::Request<ValidateJwtsvidRequest> {
    with_header(ValidateJwtsvidRequest {
        audience: audience.to_owned(),
        svid: svid.to_owned(),
    })
}

#[tokio::test]
async fn requests_without_the_security_header_are_invalid_argument() {
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let mut c = h.client().await;

    // The positive path first, so the refusals below cannot pass vacuously.
    assert!(
        c.fetch_x509svid(with_header(X509svidRequest {}))
            .await
            .is_ok()
    );

    let err = c.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "security header missing from request");
    let err = c
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![AUD.into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut wrong = tonic::Request::new(X509BundlesRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "yes".parse().unwrap());
    assert_eq!(
        c.fetch_x509_bundles(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn callers_without_a_matching_identity_get_permission_denied() {
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![h.identity("e1", "/mine", vec![my_uid_selector()], "")]);
    let mut c = h.client().await;
    assert!(
        c.fetch_x509svid(with_header(X509svidRequest {}))
            .await
            .is_ok()
    );

    h.publish(vec![h.identity(
        "e1",
        "/theirs",
        vec![foreign_selector()],
        "",
    )]);
    assert_eq!(
        code(c.fetch_x509svid(with_header(X509svidRequest {})).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            c.fetch_x509_bundles(with_header(X509BundlesRequest {}))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.fetch_jwt_bundles(with_header(JwtBundlesRequest {})).await),
        Code::PermissionDenied
    );
    let jwt = JwtsvidRequest {
        audience: vec![AUD.into()],
        spiffe_id: String::new(),
    };
    assert_eq!(
        code(c.fetch_jwtsvid(with_header(jwt)).await),
        Code::PermissionDenied
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn x509_svid_response_carries_chain_key_bundles_and_unique_hints() {
    let h = Harness::start(ServeOptions::default()).await;
    let a = h.identity("e1", "/a", vec![my_uid_selector()], "internal");
    let b = h.identity("e2", "/b", vec![my_uid_selector()], "internal");
    let c_id = h.identity("e3", "/c", vec![my_uid_selector()], "external");
    let expected_chain = a.svid.cert_chain.concat();
    let expected_key = a.svid.key.pkcs8_der().to_vec();
    h.publish(vec![a, b, c_id]);
    let mut c = h.client().await;
    let mut stream = c
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let ids: Vec<_> = msg.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(
        ids,
        ["spiffe://example.org/a", "spiffe://example.org/c"],
        "duplicate hint dropped"
    );
    assert_eq!(msg.svids[0].x509_svid, expected_chain);
    assert_eq!(msg.svids[0].x509_svid_key, expected_key);
    assert_eq!(msg.svids[0].bundle, h.home.ca_der);
    assert_eq!(msg.svids[0].hint, "internal");
    assert_eq!(msg.federated_bundles.len(), 1);
    assert_eq!(
        msg.federated_bundles["spiffe://other.org"],
        h.foreign.ca_der
    );

    let mut bundles = c
        .fetch_x509_bundles(with_header(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let msg = bundles.message().await.unwrap().unwrap();
    assert_eq!(msg.bundles["spiffe://example.org"], h.home.ca_der);
    assert_eq!(msg.bundles["spiffe://other.org"], h.foreign.ca_der);

    let mut jwt = c
        .fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let msg = jwt.message().await.unwrap().unwrap();
    let home: serde_json::Value =
        serde_json::from_slice(&msg.bundles["spiffe://example.org"]).unwrap();
    assert_eq!(home["keys"][0]["kid"], h.home.kid.as_str());
    assert_eq!(home["keys"].as_array().unwrap().len(), 1);
    assert!(msg.bundles.contains_key("spiffe://other.org"));
    h.stop().await.unwrap();
}

#[tokio::test]
async fn streams_send_a_full_message_per_relevant_change_and_end_when_identity_is_gone() {
    let h = Harness::start(ServeOptions::default()).await;
    let mine = h.identity("e1", "/w", vec![my_uid_selector()], "");
    h.publish(vec![mine.clone()]);
    let mut c = h.client().await;
    let mut stream = c
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.svids.len(), 1);

    // A change that does not concern this caller sends nothing.
    h.publish(vec![
        mine.clone(),
        h.identity("e9", "/other", vec![foreign_selector()], ""),
    ]);
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(quiet.is_err(), "no message for an irrelevant change");

    // A rotation sends the whole state again, with the new SVID.
    let rotated = h.identity("e1", "/w", vec![my_uid_selector()], "");
    let new_chain = rotated.svid.cert_chain.concat();
    let second_id = h.identity("e2", "/second", vec![my_uid_selector()], "");
    h.publish(vec![rotated.clone()]);
    let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg.svids.len(), 1);
    assert_eq!(msg.svids[0].x509_svid, new_chain);
    assert_ne!(msg.svids[0].x509_svid, first.svids[0].x509_svid);
    assert_eq!(
        msg.federated_bundles.len(),
        1,
        "full state, bundles included"
    );

    h.publish(vec![rotated, second_id]);
    let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg.svids.len(), 2);

    // Losing every identity ends the stream with PermissionDenied.
    h.publish(vec![]);
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap();
    assert_eq!(end.unwrap_err().code(), Code::PermissionDenied);
    h.stop().await.unwrap();
}

#[tokio::test]
async fn streams_stop_watching_snapshots_when_the_client_goes_away() {
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let idle = h.watchers();
    let mut c = h.client().await;
    let mut stream = c
        .fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    assert_eq!(h.watchers(), idle + 1);
    drop(stream);
    drop(c);
    for _ in 0..500 {
        if h.watchers() == idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.watchers(),
        idle,
        "the server dropped the stream of a departed client"
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn fetch_jwt_svid_mints_per_identity_and_honours_spiffe_id() {
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![
        h.identity("e1", "/a", vec![my_uid_selector()], "one"),
        h.identity("e2", "/b", vec![my_uid_selector()], "two"),
    ]);
    let mut c = h.client().await;
    let all = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![AUD.into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.svids.len(), 2);
    assert_eq!(all.svids[1].hint, "two");

    let one = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![AUD.into()],
            spiffe_id: "spiffe://example.org/b".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.svids.len(), 1);
    assert_eq!(one.svids[0].spiffe_id, "spiffe://example.org/b");

    let not_mine = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![AUD.into()],
            spiffe_id: "spiffe://example.org/zzz".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(not_mine.code(), Code::PermissionDenied);

    let no_audience = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(no_audience.code(), Code::InvalidArgument);

    h.minter
        .unavailable
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let down = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![AUD.into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable);
    h.stop().await.unwrap();
}

#[tokio::test]
async fn validate_jwt_svid_returns_claims_and_refuses_bad_tokens_with_reasons() {
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let mut c = h.client().await;
    let token = c
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![AUD.into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .svids
        .remove(0)
        .svid;

    let ok = c
        .validate_jwtsvid(validate_request(&token, AUD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.spiffe_id, "spiffe://example.org/w");
    let claims = ok.claims.unwrap().fields;
    assert_eq!(
        claims["sub"].kind,
        Some(Kind::StringValue("spiffe://example.org/w".into()))
    );
    assert!(matches!(claims["exp"].kind, Some(Kind::NumberValue(_))));
    assert!(matches!(&claims["aud"].kind, Some(Kind::ListValue(l)) if l.values.len() == 1));
    let Some(Kind::StructValue(nested)) = &claims["nested"].kind else {
        panic!("nested claim lost")
    };
    assert!(matches!(&nested.fields["list"].kind, Some(Kind::ListValue(l)) if l.values.len() == 5));

    let refused = |r: Result<tonic::Response<_>, tonic::Status>| {
        let e = r.map(|_| ()).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        e.message().to_owned()
    };

    // Tampered: claims changed, signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims_json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims_json["sub"] = "spiffe://example.org/admin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims_json.to_string()),
        parts[2]
    );
    assert!(
        refused(c.validate_jwtsvid(validate_request(&tampered, AUD)).await).contains("signature")
    );

    let wrong_aud = refused(
        c.validate_jwtsvid(validate_request(&token, "spiffe://example.org/other"))
            .await,
    );
    assert!(wrong_aud.contains("audience"), "{wrong_aud}");

    let expired = h.home.sign_jwt(
        "spiffe://example.org/w",
        &[AUD.into()],
        SystemClock.unix_secs() - 3600,
    );
    assert!(refused(c.validate_jwtsvid(validate_request(&expired, AUD)).await).contains("expired"));

    let mut stranger = workload_api_fixture::Domain::new("example.org");
    stranger.kid = "not-in-the-bundle".into();
    let unknown_key = stranger.sign_jwt(
        "spiffe://example.org/w",
        &[AUD.into()],
        SystemClock.unix_secs() + 60,
    );
    assert!(
        refused(
            c.validate_jwtsvid(validate_request(&unknown_key, AUD))
                .await
        )
        .contains("key id")
    );

    let unknown_td = workload_api_fixture::Domain::new("nowhere.test");
    let foreign = unknown_td.sign_jwt(
        "spiffe://nowhere.test/w",
        &[AUD.into()],
        SystemClock.unix_secs() + 60,
    );
    assert!(
        refused(c.validate_jwtsvid(validate_request(&foreign, AUD)).await).contains("no bundle")
    );

    assert!(!refused(c.validate_jwtsvid(validate_request("not-a-jwt", AUD)).await).is_empty());
    refused(c.validate_jwtsvid(validate_request(&token, "")).await);
    refused(c.validate_jwtsvid(validate_request("", AUD)).await);
    h.stop().await.unwrap();
}

#[tokio::test]
async fn validate_jwt_svid_uses_federated_bundles_and_needs_no_identity_for_its_own_domain() {
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let mut c = h.client().await;
    let foreign = h.foreign.sign_jwt(
        "spiffe://other.org/svc",
        &[AUD.into()],
        SystemClock.unix_secs() + 60,
    );
    let ok = c
        .validate_jwtsvid(validate_request(&foreign, AUD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.spiffe_id, "spiffe://other.org/svc");

    // Without identities the caller still validates tokens of the agent's own trust domain, but
    // no longer those of domains only its identities federated with.
    h.publish(vec![h.identity("e1", "/w", vec![foreign_selector()], "")]);
    let own = h.home.sign_jwt(
        "spiffe://example.org/x",
        &[AUD.into()],
        SystemClock.unix_secs() + 60,
    );
    assert!(
        c.validate_jwtsvid(validate_request(&own, AUD))
            .await
            .is_ok()
    );
    let e = c
        .validate_jwtsvid(validate_request(&foreign, AUD))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    h.stop().await.unwrap();
}

#[tokio::test]
async fn socket_is_world_accessible_and_removed_on_shutdown_even_with_open_streams() {
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let mode = std::fs::metadata(&h.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777);
    let mut c = h.client().await;
    let mut stream = c
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    let socket = h.socket.clone();
    h.stop().await.unwrap();
    assert!(!socket.exists());
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "the open stream ends on shutdown"
    );
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, b"keep me").unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(
        sigil_agent::snapshot::IdentitySnapshot::empty(
            workload_api_fixture::Domain::new("example.org")
                .bundle
                .clone(),
        ),
    ));
    struct NoMint;
    #[async_trait::async_trait]
    impl sigil_agent::snapshot::JwtSvidMinter for NoMint {
        async fn mint(
            &self,
            _: &str,
            _: &[String],
        ) -> Result<String, sigil_agent::snapshot::JwtMintError> {
            Err(sigil_agent::snapshot::JwtMintError::Unavailable(
                "none".into(),
            ))
        }
    }
    let ctx = sigil_agent::snapshot::WorkloadApiContext {
        snapshots: rx,
        jwt: std::sync::Arc::new(NoMint),
        clock: std::sync::Arc::new(SystemClock),
    };
    let api = sigil_agent::workload::WorkloadApi::new(ctx.clone());
    let err = sigil_agent::workload::serve(&path, api, async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");

    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let api = sigil_agent::workload::WorkloadApi::new(ctx);
    sigil_agent::workload::serve(&stale, api, async {})
        .await
        .unwrap();
    assert!(!stale.exists(), "removed again on shutdown");
}
