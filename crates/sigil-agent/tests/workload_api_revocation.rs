//! Revocation over the Workload API socket with a plain tonic client: `ValidateJWTSVID` refuses a
//! correctly signed token whose `jti` is on the deny-list (and only tokens of the agent's own
//! trust domain), and the CRLs of the snapshot are served in the X.509 responses, with a new
//! stream message when they change.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod workload_api_fixture;

use std::time::Duration;

use sigil_agent::revocation::RevokedIds;
use sigil_agent::workload::ServeOptions;
use sigil_agent::workload::service::REVOKED_JWT_SVID;
use sigil_proto::agent::v1::RevokedCredential;
use sigil_proto::workload::{ValidateJwtsvidRequest, X509BundlesRequest, X509svidRequest};
use sigil_spiffe::{Clock, SystemClock};
use tonic::Code;
use workload_api_fixture::{Harness, my_uid_selector, with_header};

const AUD: &str = "spiffe://example.org/audience";

fn validate_request(svid: &str) -> tonic::Request<ValidateJwtsvidRequest> {
    with_header(ValidateJwtsvidRequest {
        audience: AUD.to_owned(),
        svid: svid.to_owned(),
    })
}

/// A JWT-SVID deny-list of `jtis`, valid for the next five minutes.
fn revoked_jtis(jtis: &[&str]) -> RevokedIds {
    let now = SystemClock.unix_secs();
    let list = jtis
        .iter()
        .map(|jti| RevokedCredential {
            id: (*jti).to_owned(),
            expires_at: now + 300,
        })
        .collect();
    RevokedIds::jwt_ids(list, now)
}

/// The next message of `stream`, within five seconds.
async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

fn jti(token: &str) -> String {
    sigil_keys::jws::unverified_jti(token).unwrap()
}

#[tokio::test]
async fn validate_jwt_svid_refuses_a_revoked_jti_and_accepts_the_others() {
    let h = Harness::start(ServeOptions::default()).await;
    let identities = vec![h.identity("e1", "/w", vec![my_uid_selector()], "")];
    h.publish(identities.clone());
    let mut c = h.client().await;
    let exp = SystemClock.unix_secs() + 120;
    // Real tokens, signed by the home trust domain's JWT authority, differing only in `jti`.
    let revoked = h
        .home
        .sign_jwt("spiffe://example.org/w", &[AUD.into()], exp);
    let kept = h
        .home
        .sign_jwt("spiffe://example.org/w", &[AUD.into()], exp);
    // A foreign token (federated bundle) is judged by its own issuer, not this deny-list.
    let foreign = h
        .foreign
        .sign_jwt("spiffe://other.org/svc", &[AUD.into()], exp);
    assert_ne!(jti(&revoked), jti(&kept));

    // Both validate while nothing is revoked: the refusal below is the deny-list's doing.
    for token in [&revoked, &kept, &foreign] {
        c.validate_jwtsvid(validate_request(token)).await.unwrap();
    }

    h.publish_with_revocations(
        identities,
        Vec::new(),
        revoked_jtis(&[&jti(&revoked), &jti(&foreign)]),
    );
    let err = c
        .validate_jwtsvid(validate_request(&revoked))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), REVOKED_JWT_SVID);

    let ok = c
        .validate_jwtsvid(validate_request(&kept))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.spiffe_id, "spiffe://example.org/w");
    let ok = c
        .validate_jwtsvid(validate_request(&foreign))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.spiffe_id, "spiffe://other.org/svc");
    h.stop().await.unwrap();
}

#[tokio::test]
async fn crls_are_served_and_a_new_crl_is_a_new_stream_message() {
    let h = Harness::start(ServeOptions::default()).await;
    let mine = h.identity("e1", "/w", vec![my_uid_selector()], "");
    let other = h.identity("e2", "/x", vec![my_uid_selector()], "");
    h.publish(vec![mine.clone()]);
    let mut c = h.client().await;
    let mut svids = c
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut bundles = c
        .fetch_x509_bundles(with_header(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(svids.message().await.unwrap().unwrap().crl.is_empty());
    assert!(bundles.message().await.unwrap().unwrap().crl.is_empty());

    let first = h.home.crl(1, &[&other.svid]);
    h.publish_with_revocations(
        vec![mine.clone()],
        vec![first.clone()],
        RevokedIds::default(),
    );
    let msg = next(&mut svids).await;
    assert_eq!(msg.crl, vec![first.clone()]);
    assert_eq!(msg.svids.len(), 1, "the full state, SVIDs included");
    let msg = next(&mut bundles).await;
    assert_eq!(msg.crl, vec![first.clone()]);
    assert!(!msg.bundles.is_empty());

    // A new CRL (the same identities) is a change on both streams.
    let second = h.home.crl(2, &[&other.svid]);
    h.publish_with_revocations(vec![mine], vec![second.clone()], RevokedIds::default());
    let msg = next(&mut svids).await;
    assert_eq!(msg.crl, vec![second.clone()]);
    let msg = next(&mut bundles).await;
    assert_eq!(msg.crl, vec![second]);
    h.stop().await.unwrap();
}
