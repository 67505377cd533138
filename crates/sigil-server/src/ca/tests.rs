//! Tests of the CA facade on a fake clock and an in-memory store: bootstrap, reload, the life
//! cycle driven through `rotate_if_due`, bundle sequencing, and issuance chaining to the bundle.

use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use sigil_keys::digest::hex;
use sigil_keys::{MemoryKeyManager, PrivateKey};
use sigil_spiffe::AuthorityState;
use sigil_spiffe::time::from_unix_secs;
use sigil_store::{AuthorityRecord, SqliteStore};
use sigil_testkit::FakeClock;
use sigil_tls::{LiveRoots, SpiffeClientVerifier};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

const START: i64 = 1_700_000_000;

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

/// Short lifetimes so rotation is reached with small clock moves: 1/6 of 600 s is 100 s.
fn lifetimes() -> CaLifetimes {
    CaLifetimes {
        root_ttl: 365 * 24 * 3600,
        intermediate_ttl: 600,
        jwt_key_ttl: 600,
        bundle_refresh_hint: 60,
    }
}

struct Fixture {
    keys: Arc<MemoryKeyManager>,
    store: Arc<SqliteStore>,
    clock: FakeClock,
}

impl Fixture {
    fn new() -> Self {
        Self {
            keys: Arc::new(MemoryKeyManager::new()),
            store: Arc::new(SqliteStore::open_in_memory().unwrap()),
            clock: FakeClock::new(from_unix_secs(START)),
        }
    }

    async fn ca(&self) -> Arc<CaManager> {
        self.replica("", self.keys.clone()).await
    }

    /// A CA on this fixture's store and clock as server replica `replica`, holding its keys in
    /// `keys`.
    async fn replica(&self, replica: &str, keys: Arc<MemoryKeyManager>) -> Arc<CaManager> {
        self.replica_under(replica, keys, None).await
    }

    /// Like [`Fixture::replica`], with `upstream` signing the replica's roots.
    async fn replica_under(
        &self,
        replica: &str,
        keys: Arc<MemoryKeyManager>,
        upstream: Option<Arc<UpstreamAuthority>>,
    ) -> Arc<CaManager> {
        CaManager::load_or_init(
            td(),
            replica,
            keys,
            self.store.clone(),
            Arc::new(self.clock.clone()),
            lifetimes(),
            upstream,
        )
        .await
        .unwrap()
    }

    async fn active(&self, kind: AuthorityKind) -> Vec<AuthorityRecord> {
        self.store
            .list_authorities()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == kind && r.state == AuthorityState::Active)
            .collect()
    }

    async fn in_state(&self, kind: AuthorityKind, state: AuthorityState) -> Vec<AuthorityRecord> {
        self.store
            .list_authorities()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == kind && r.state == state)
            .collect()
    }

    fn now(&self) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(self.clock.unix_secs()).unwrap(),
        ))
    }
}

fn kids(bundle: &TrustBundle) -> Vec<&str> {
    bundle
        .jwt_authorities
        .iter()
        .map(|k| k.kid.as_str())
        .collect()
}

/// The `kid` in the header of a compact JWS.
fn minted_kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn workload_id() -> SpiffeId {
    SpiffeId::parse("spiffe://example.org/web").unwrap()
}

/// Verifies `chain` (leaf first) as a client X509-SVID against `roots` at `now`.
fn verify(chain: &[Vec<u8>], roots: &[Vec<u8>], now: UnixTime) -> Result<(), rustls::Error> {
    let verifier = SpiffeClientVerifier::new(Arc::new(LiveRoots::new(roots)), td(), false);
    let (leaf, rest) = chain.split_first().unwrap();
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    verifier
        .verify_client_cert(&CertificateDer::from(leaf.as_slice()), &intermediates, now)
        .map(|_| ())
}

fn authority_key_id(der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    match cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        }) {
        Some(aki) => aki,
        None => panic!("certificate has no authority key identifier"),
    }
}

fn subject_key_id_hex(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => Some(hex(ski.0)),
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn load_or_init_creates_every_authority_and_publishes_bundle_sequence_one() {
    let f = Fixture::new();
    let ca = f.ca().await;

    let roots = f.active(AuthorityKind::X509Root).await;
    let intermediates = f.active(AuthorityKind::X509Intermediate).await;
    let jwts = f.active(AuthorityKind::Jwt).await;
    assert_eq!((roots.len(), intermediates.len(), jwts.len()), (1, 1, 1));
    let (root, intermediate, jwt) = (&roots[0], &intermediates[0], &jwts[0]);
    assert_eq!(intermediate.issuer_id.as_deref(), Some(root.id.as_str()));
    for rec in [root, intermediate, jwt] {
        assert!(
            f.keys.load(&rec.key_id).unwrap().is_some(),
            "key of {}",
            rec.id
        );
    }

    let bundle = ca.bundle();
    assert_eq!(bundle.sequence, 1);
    assert_eq!(bundle.trust_domain, td());
    assert_eq!(
        bundle.x509_authorities,
        vec![root.cert_der.clone().unwrap()]
    );
    let kids: Vec<&str> = bundle
        .jwt_authorities
        .iter()
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(kids, [jwt.id.as_str()]);
    let stored = f.store.get_bundle("example.org").await.unwrap().unwrap();
    assert_eq!(stored.sequence, 1);
}

#[tokio::test]
async fn second_load_or_init_reuses_the_stored_authorities() {
    let f = Fixture::new();
    let first = f.ca().await;
    let before = f.store.list_authorities().await.unwrap();

    f.clock.advance(Duration::from_secs(30));
    let second = f.ca().await;

    assert_eq!(f.store.list_authorities().await.unwrap(), before);
    assert_eq!(second.bundle().sequence, 1);
    assert_eq!(
        second.bundle().x509_authorities,
        first.bundle().x509_authorities
    );
    let root = &f.active(AuthorityKind::X509Root).await[0];
    assert_eq!(
        subject_key_id_hex(&second.bundle().x509_authorities[0]),
        root.id
    );
    // The reloaded intermediate signs, and its SVIDs chain to the same root.
    let key = PrivateKey::generate().unwrap();
    let chain = second
        .sign_x509_svid_for_key(&key.public_key(), &workload_id(), 60, &[])
        .unwrap();
    let intermediate = &f.active(AuthorityKind::X509Intermediate).await[0];
    assert_eq!(Some(&chain[1]), intermediate.cert_der.as_ref());
    verify(&chain, &first.bundle().x509_authorities, f.now()).unwrap();
}

#[tokio::test]
async fn rotate_if_due_prepares_at_half_life_then_activates_with_a_sixth_left_keeping_the_old_jwt_key()
 {
    let f = Fixture::new();
    let ca = f.ca().await;
    let old_intermediate = f.active(AuthorityKind::X509Intermediate).await[0].clone();
    let old_kid = f.active(AuthorityKind::Jwt).await[0].id.clone();
    let key = PrivateKey::generate().unwrap();
    let old_chain = ca
        .sign_x509_svid_for_key(&key.public_key(), &workload_id(), 600, &[])
        .unwrap();

    // 299 s in: less than half of 600 s has passed.
    f.clock.advance(Duration::from_secs(299));
    assert!(!ca.rotate_if_due().await.unwrap());
    assert_eq!(ca.bundle().sequence, 1);

    // 300 s in: successors are prepared; the new JWT key is published but does not sign yet.
    f.clock.advance(Duration::from_secs(1));
    assert!(ca.rotate_if_due().await.unwrap());
    let prepared_jwt = f
        .in_state(AuthorityKind::Jwt, AuthorityState::Prepared)
        .await;
    assert_eq!(prepared_jwt.len(), 1);
    let new_kid = prepared_jwt[0].id.clone();
    let prepared_intermediate = f
        .in_state(AuthorityKind::X509Intermediate, AuthorityState::Prepared)
        .await;
    assert_eq!(prepared_intermediate.len(), 1);
    assert_eq!(ca.bundle().sequence, 2);
    assert_eq!(kids(&ca.bundle()), [old_kid.as_str(), new_kid.as_str()]);
    let minted = ca
        .mint_jwt_svid(&workload_id(), &["aud".to_owned()], 60)
        .unwrap();
    assert_eq!(
        minted_kid(&minted.token),
        old_kid,
        "the prepared key does not sign yet"
    );
    assert_eq!(f.active(AuthorityKind::Jwt).await[0].id, old_kid);

    // 499 s in: 101 s of 600 s left, more than a sixth.
    f.clock.advance(Duration::from_secs(199));
    assert!(!ca.rotate_if_due().await.unwrap());

    // 500 s in: exactly a sixth left: the prepared ones activate, the active ones retire.
    f.clock.advance(Duration::from_secs(1));
    assert!(ca.rotate_if_due().await.unwrap());
    let new_intermediate = f.active(AuthorityKind::X509Intermediate).await;
    assert_eq!(new_intermediate.len(), 1);
    assert_eq!(new_intermediate[0].id, prepared_intermediate[0].id);
    assert_ne!(new_intermediate[0].id, old_intermediate.id);
    let retired = f.store.list_authorities().await.unwrap();
    let retired = retired
        .iter()
        .find(|r| r.id == old_intermediate.id)
        .unwrap();
    assert_eq!(retired.state, AuthorityState::Old);
    assert_eq!(f.active(AuthorityKind::Jwt).await[0].id, new_kid);

    // The published authorities did not change, so neither did the sequence; the old JWT key
    // stays published until it expires.
    let bundle = ca.bundle();
    assert_eq!(bundle.sequence, 2);
    assert_eq!(kids(&bundle), [old_kid.as_str(), new_kid.as_str()]);
    assert_eq!(
        f.store
            .get_bundle("example.org")
            .await
            .unwrap()
            .unwrap()
            .sequence,
        2
    );

    // New SVIDs come from the new intermediate; both old and new chain to the bundle.
    let new_chain = ca
        .sign_x509_svid_for_key(&key.public_key(), &workload_id(), 60, &[])
        .unwrap();
    assert_eq!(Some(&new_chain[1]), new_intermediate[0].cert_der.as_ref());
    verify(&new_chain, &bundle.x509_authorities, f.now()).unwrap();
    verify(&old_chain, &bundle.x509_authorities, f.now()).unwrap();
    let minted = ca
        .mint_jwt_svid(&workload_id(), &["aud".to_owned()], 60)
        .unwrap();
    assert_eq!(minted_kid(&minted.token), new_kid);

    // Right after a rotation nothing is due again.
    assert!(!ca.rotate_if_due().await.unwrap());
    assert_eq!(ca.bundle().sequence, 2);
}

#[tokio::test]
async fn expired_authorities_are_dropped_with_their_keys_and_leave_the_bundle() {
    let f = Fixture::new();
    let ca = f.ca().await;
    let first_jwt = f.active(AuthorityKind::Jwt).await[0].clone();
    let first_intermediate = f.active(AuthorityKind::X509Intermediate).await[0].clone();
    for _ in 0..60 {
        f.clock.advance(Duration::from_secs(10));
        ca.rotate_if_due().await.unwrap();
    }
    // 600 s in: the first generation expired.
    let records = f.store.list_authorities().await.unwrap();
    for gone in [&first_jwt, &first_intermediate] {
        assert!(
            records.iter().all(|r| r.id != gone.id),
            "{} dropped",
            gone.id
        );
        assert!(
            f.keys.load(&gone.key_id).unwrap().is_none(),
            "key of {} deleted",
            gone.id
        );
    }
    assert!(!kids(&ca.bundle()).contains(&first_jwt.id.as_str()));
    assert_eq!(f.active(AuthorityKind::Jwt).await.len(), 1);
    assert_eq!(f.active(AuthorityKind::X509Intermediate).await.len(), 1);
    // The stored bundle is what is served.
    let stored = f.store.get_bundle("example.org").await.unwrap().unwrap();
    assert_eq!(stored.sequence, ca.bundle().sequence);
    // Retained history stays bounded: per kind at most active, prepared and old.
    for kind in [AuthorityKind::X509Intermediate, AuthorityKind::Jwt] {
        assert!(records.iter().filter(|r| r.kind == kind).count() <= 3);
    }
}

#[tokio::test]
async fn missing_jwt_key_is_replaced_on_load_and_the_old_one_stays_trusted() {
    let f = Fixture::new();
    f.ca().await;
    let lost = f.active(AuthorityKind::Jwt).await[0].clone();
    f.keys.delete(&lost.key_id).unwrap();

    f.clock.advance(Duration::from_secs(5));
    let ca = f.ca().await;
    let active = f.active(AuthorityKind::Jwt).await;
    assert_eq!(active.len(), 1);
    assert_ne!(active[0].id, lost.id);
    let minted = ca
        .mint_jwt_svid(&workload_id(), &["aud".to_owned()], 60)
        .unwrap();
    assert_eq!(minted_kid(&minted.token), active[0].id);
    assert_eq!(
        f.in_state(AuthorityKind::Jwt, AuthorityState::Old).await[0].id,
        lost.id
    );
    assert!(
        kids(&ca.bundle()).contains(&lost.id.as_str()),
        "still trusted until expiry"
    );
    assert_eq!(ca.bundle().sequence, 2);
}

#[tokio::test]
async fn missing_root_key_is_refused_rather_than_replacing_the_trust_anchor() {
    let f = Fixture::new();
    f.ca().await;
    let root = f.active(AuthorityKind::X509Root).await[0].clone();
    f.keys.delete(&root.key_id).unwrap();
    let err = CaManager::load_or_init(
        td(),
        "",
        f.keys.clone(),
        f.store.clone(),
        Arc::new(f.clock.clone()),
        lifetimes(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CaManagerError::MissingKey(id) if *id == root.key_id),
        "{err}"
    );
    assert_eq!(f.active(AuthorityKind::X509Root).await, [root]);
}

#[tokio::test]
async fn two_managers_on_one_store_rotating_together_leave_one_active_authority_per_kind() {
    let f = Fixture::new();
    let a = f.ca().await;
    let b = f.ca().await;
    for step in [300, 200, 100, 300] {
        f.clock.advance(Duration::from_secs(step));
        let (ra, rb) = tokio::join!(a.rotate_if_due(), b.rotate_if_due());
        ra.unwrap();
        rb.unwrap();
        for kind in [
            AuthorityKind::X509Root,
            AuthorityKind::X509Intermediate,
            AuthorityKind::Jwt,
        ] {
            assert_eq!(f.active(kind).await.len(), 1, "{kind} after {step} s");
        }
    }
    // Whichever rotated, both sign with the active authorities and publish the same bundle.
    a.rotate_if_due().await.unwrap();
    b.rotate_if_due().await.unwrap();
    let active_kid = f.active(AuthorityKind::Jwt).await[0].id.clone();
    for ca in [&a, &b] {
        let minted = ca
            .mint_jwt_svid(&workload_id(), &["aud".to_owned()], 60)
            .unwrap();
        assert_eq!(minted_kid(&minted.token), active_kid);
    }
    assert_eq!(
        a.publish_bundle().await.unwrap(),
        b.publish_bundle().await.unwrap()
    );
}

#[tokio::test]
async fn publish_bundle_keeps_the_sequence_when_nothing_changed() {
    let f = Fixture::new();
    let ca = f.ca().await;
    let before = ca.bundle();
    let again = ca.publish_bundle().await.unwrap();
    assert_eq!(again, before);
    assert_eq!(again.sequence, 1);
    let changes = f.store.latest_change().await.unwrap();
    ca.publish_bundle().await.unwrap();
    assert_eq!(
        f.store.latest_change().await.unwrap(),
        changes,
        "nothing stored"
    );
}

#[tokio::test]
async fn issued_svid_chains_to_the_bundle_root_and_not_to_another_ca() {
    let f = Fixture::new();
    let ca = f.ca().await;
    let key = PrivateKey::generate().unwrap();
    let csr = key.csr_der(&workload_id()).unwrap();
    let chain = ca.sign_x509_svid(&csr, &workload_id(), 300, &[]).unwrap();
    assert_eq!(chain.len(), 2);

    verify(&chain, &ca.bundle().x509_authorities, f.now()).unwrap();
    assert_eq!(sigil_tls::peer_spiffe_id(&chain[0]).unwrap(), workload_id());
    let intermediate = &f.active(AuthorityKind::X509Intermediate).await[0];
    assert_eq!(hex(&authority_key_id(&chain[0])), intermediate.id);
    let root = &f.active(AuthorityKind::X509Root).await[0];
    assert_eq!(hex(&authority_key_id(&chain[1])), root.id);

    let stranger = Fixture::new().ca().await;
    assert!(verify(&chain, &stranger.bundle().x509_authorities, f.now()).is_err());
    // Expiry is enforced by the same verification.
    f.clock.advance(Duration::from_secs(301));
    assert!(verify(&chain, &ca.bundle().x509_authorities, f.now()).is_err());
}

/// Ticks racing operator commands: however they interleave, when a command returns the CA signs
/// with the newest active key and the bundle no longer carries a revoked one (a tick that read
/// the records before the command must not switch signing back or publish after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ticks_racing_commands_never_leave_an_older_signer_or_bundle_behind() {
    for _ in 0..20 {
        let f = Fixture::new();
        let ca = f.ca().await;
        let leaked = f.active(AuthorityKind::Jwt).await.remove(0).id;
        let next = ca
            .command(&Command::Prepare {
                kind: AuthorityKind::Jwt,
            })
            .await
            .unwrap()
            .id;
        f.clock.advance(Duration::from_secs(1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let (ca, stop) = (ca.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    ca.rotate_if_due().await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        ca.command(&Command::Activate { id: next.clone() })
            .await
            .unwrap();
        let token = ca
            .mint_jwt_svid(&workload_id(), &["a".to_owned()], 60)
            .unwrap()
            .token;
        assert_eq!(minted_kid(&token), next, "signs with the activated key");
        ca.command(&Command::Taint { id: leaked.clone() })
            .await
            .unwrap();
        ca.command(&Command::Revoke { id: leaked.clone() })
            .await
            .unwrap();
        assert_eq!(kids(&ca.bundle()), [next.as_str()], "the revoked key left");
        let stored = f.store.get_bundle("example.org").await.unwrap().unwrap();
        let stored = sigil_spiffe::BundleDocument::parse(&stored.document).unwrap();
        let stored_kids: Vec<&str> = stored
            .keys
            .iter()
            .filter_map(|k| k.kid.as_deref())
            .collect();
        assert_eq!(stored_kids, [next.as_str()], "the stored bundle too");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ticker.await.unwrap();
    }
}

/// Hex serials listed by the CRL in `crls` whose issuer is `issuer_der`, its signature checked.
fn crl_serials(crls: &[Vec<u8>], issuer_der: &[u8]) -> Vec<String> {
    let (_, issuer) = X509Certificate::from_der(issuer_der).unwrap();
    let key = sigil_keys::PublicKey::from_spki_der(issuer.public_key().raw).unwrap();
    let crl = crls
        .iter()
        .map(|der| {
            x509_parser::revocation_list::CertificateRevocationList::from_der(der)
                .unwrap()
                .1
        })
        .find(|crl| crl.issuer() == issuer.subject())
        .expect("no CRL from this issuer");
    key.verify_x509(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
        .unwrap();
    crl.iter_revoked_certificates()
        .map(|r| hex(r.raw_serial()))
        .collect()
}

/// A revoked intermediate leaves nothing to remove from the bundle (it holds only roots): the
/// root's CRL is what names it. The new intermediate's CRL is there and empty, and the old one
/// signs no CRL once revoked.
#[tokio::test]
async fn the_root_crl_lists_a_revoked_intermediate() {
    let f = Fixture::new();
    let ca = f.ca().await;
    let leaked = f.active(AuthorityKind::X509Intermediate).await.remove(0);
    let root = f.active(AuthorityKind::X509Root).await.remove(0);
    let root_der = root.cert_der.clone().unwrap();
    assert!(crl_serials(&ca.revocations().crls, &root_der).is_empty());
    assert_eq!(ca.revocations().crls.len(), 2);

    let next = ca
        .command(&Command::Prepare {
            kind: AuthorityKind::X509Intermediate,
        })
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(1));
    ca.command(&Command::Activate {
        id: next.id.clone(),
    })
    .await
    .unwrap();
    ca.command(&Command::Taint {
        id: leaked.id.clone(),
    })
    .await
    .unwrap();
    // Tainted, not revoked: still trusted, not listed.
    assert!(crl_serials(&ca.revocations().crls, &root_der).is_empty());
    ca.command(&Command::Revoke {
        id: leaked.id.clone(),
    })
    .await
    .unwrap();

    let published = ca.revocations();
    let leaked_serial =
        sigil_keys::cert_ids::serial_hex(leaked.cert_der.as_ref().unwrap()).unwrap();
    assert_eq!(crl_serials(&published.crls, &root_der), vec![leaked_serial]);
    assert!(crl_serials(&published.crls, next.cert_der.as_ref().unwrap()).is_empty());
    assert_eq!(
        published.crls.len(),
        2,
        "root and the new intermediate only"
    );
}

/// Two server replicas on one store, each with its own key manager: each creates and rotates its
/// own authorities (never retiring the other's), signs with its own, and both publish the union
/// of what they trust, so what either issues verifies under the bundle of the other. An operator
/// command on the other replica's authority is refused with nothing changed.
#[tokio::test]
async fn replicas_on_one_store_keep_their_own_keys_and_trust_each_others() {
    let f = Fixture::new();
    let a = f.replica("a", Arc::new(MemoryKeyManager::new())).await;
    let b = f.replica("b", Arc::new(MemoryKeyManager::new())).await;
    // A published before B existed; it picks B's authorities up on its next tick.
    a.rotate_if_due().await.unwrap();
    for kind in AuthorityKind::ALL {
        let active = f.active(kind).await;
        let owners: Vec<&str> = active.iter().map(|r| r.replica.as_str()).collect();
        assert_eq!(owners.len(), 2, "{kind}: {owners:?}");
        assert!(owners.contains(&"a") && owners.contains(&"b"), "{kind}");
    }
    for step in [300, 200, 100, 300] {
        f.clock.advance(Duration::from_secs(step));
        a.rotate_if_due().await.unwrap();
        b.rotate_if_due().await.unwrap();
        for kind in AuthorityKind::ALL {
            for replica in ["a", "b"] {
                let mine = f
                    .active(kind)
                    .await
                    .into_iter()
                    .filter(|r| r.replica == replica)
                    .count();
                assert_eq!(mine, 1, "{kind} of {replica} after {step} s");
            }
        }
    }
    a.rotate_if_due().await.unwrap();
    b.rotate_if_due().await.unwrap();
    assert_eq!(a.bundle().x509_authorities, b.bundle().x509_authorities);
    assert_eq!(kids(&a.bundle()), kids(&b.bundle()));
    assert_eq!(a.bundle().x509_authorities.len(), 2, "both roots");

    let key = PrivateKey::generate().unwrap();
    let csr = key.csr_der(&workload_id()).unwrap();
    let from_a = a.sign_x509_svid(&csr, &workload_id(), 60, &[]).unwrap();
    let from_b = b.sign_x509_svid(&csr, &workload_id(), 60, &[]).unwrap();
    assert_ne!(from_a[1], from_b[1], "each signs with its own intermediate");
    verify(&from_a, &b.bundle().x509_authorities, f.now()).unwrap();
    verify(&from_b, &a.bundle().x509_authorities, f.now()).unwrap();
    let jwt_b = b
        .mint_jwt_svid(&workload_id(), &["x".to_owned()], 60)
        .unwrap();
    assert!(kids(&a.bundle()).contains(&jwt_b.kid.as_str()));

    let b_jwt = f
        .active(AuthorityKind::Jwt)
        .await
        .into_iter()
        .find(|r| r.replica == "b")
        .unwrap();
    let before = f.store.list_authorities().await.unwrap();
    let refused = a
        .command(&Command::Taint {
            id: b_jwt.id.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CaManagerError::OtherReplica { ref replica, .. } if replica == "b"),
        "{refused}"
    );
    assert_eq!(f.store.list_authorities().await.unwrap(), before);
}

/// An upstream authority (a CA outside Sigil, ten years long) as of the fixture's start.
fn upstream() -> Arc<UpstreamAuthority> {
    let key = Arc::new(PrivateKey::generate().unwrap());
    let root = sigil_ca::self_signed_root(
        &TrustDomain::parse("corp.example").unwrap(),
        key.clone(),
        10 * 365 * 24 * 3600,
        from_unix_secs(START - 60),
    )
    .unwrap();
    Arc::new(
        UpstreamAuthority::new(
            vec![root.cert_der().to_vec()],
            key,
            None,
            from_unix_secs(START),
        )
        .unwrap(),
    )
}

/// Two replicas under one upstream authority: each signs its own root with the upstream key, the
/// bundle holds the upstream's root alone, and what either replica issues chains through its own
/// intermediate and root to that anchor, before and after a reload from the store (the chain is
/// rebuilt, not stored) and after a root rotation, which leaves the bundle as it was.
#[tokio::test]
async fn replicas_under_one_upstream_are_trusted_through_its_root_alone() {
    let f = Fixture::new();
    let upstream = upstream();
    let anchor = upstream.anchors().to_vec();
    let keys_a = Arc::new(MemoryKeyManager::new());
    let a = f
        .replica_under("a", keys_a.clone(), Some(upstream.clone()))
        .await;
    let b = f
        .replica_under(
            "b",
            Arc::new(MemoryKeyManager::new()),
            Some(upstream.clone()),
        )
        .await;
    a.rotate_if_due().await.unwrap();
    assert_eq!(a.bundle().x509_authorities, anchor);
    assert_eq!(b.bundle().x509_authorities, anchor);
    let roots = f.active(AuthorityKind::X509Root).await;
    assert_eq!(roots.len(), 2);
    for root in &roots {
        assert!(
            upstream.issued(root.cert_der.as_deref().unwrap()),
            "{}",
            root.replica
        );
    }

    let key = PrivateKey::generate().unwrap();
    let csr = key.csr_der(&workload_id()).unwrap();
    for ca in [&a, &b] {
        let chain = ca.sign_x509_svid(&csr, &workload_id(), 60, &[]).unwrap();
        assert_eq!(chain.len(), 3, "leaf, intermediate, replica root");
        verify(&chain, &anchor, f.now()).unwrap();
        // Without the replica root in the chain, the upstream's root alone cannot vouch for it.
        assert!(verify(&chain[..2], &anchor, f.now()).is_err());
    }

    // A reload builds the chain again from the records and the upstream.
    let reloaded = f
        .replica_under("a", keys_a.clone(), Some(upstream.clone()))
        .await;
    let chain = reloaded
        .sign_x509_svid(&csr, &workload_id(), 60, &[])
        .unwrap();
    assert_eq!(chain.len(), 3);
    verify(&chain, &anchor, f.now()).unwrap();

    // A new root for A (signed by the upstream again) changes nothing relying parties hold.
    let sequence = a.bundle().sequence;
    let root = a
        .command(&Command::Prepare {
            kind: AuthorityKind::X509Root,
        })
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(1));
    a.command(&Command::Activate {
        id: root.id.clone(),
    })
    .await
    .unwrap();
    a.rotate_if_due().await.unwrap();
    assert_eq!(a.bundle().x509_authorities, anchor);
    assert_eq!(a.bundle().sequence, sequence, "the bundle did not change");
    let chain = a.sign_x509_svid(&csr, &workload_id(), 60, &[]).unwrap();
    verify(&chain, &anchor, f.now()).unwrap();
}

/// A replica without the upstream next to one under it: the one without publishes the other's
/// upstream-signed root as an anchor (it cannot know the upstream's root), so what the replica
/// under the upstream issues still verifies under its bundle.
#[tokio::test]
async fn a_replica_without_the_upstream_still_trusts_one_under_it() {
    let f = Fixture::new();
    let upstream = upstream();
    let under = f
        .replica_under(
            "a",
            Arc::new(MemoryKeyManager::new()),
            Some(upstream.clone()),
        )
        .await;
    let plain = f.replica("b", Arc::new(MemoryKeyManager::new())).await;
    under.rotate_if_due().await.unwrap();
    let key = PrivateKey::generate().unwrap();
    let csr = key.csr_der(&workload_id()).unwrap();
    let chain = under.sign_x509_svid(&csr, &workload_id(), 60, &[]).unwrap();
    verify(&chain, &plain.bundle().x509_authorities, f.now()).unwrap();
    let from_plain = plain.sign_x509_svid(&csr, &workload_id(), 60, &[]).unwrap();
    assert_eq!(from_plain.len(), 2);
    verify(&from_plain, &under.bundle().x509_authorities, f.now()).unwrap();
}

/// Hex serials listed by the CRL in `crls` whose signature verifies under the key of
/// `issuer_der` (replicas' authorities share their subject names, so the name alone does not
/// tell them apart); `None` when no CRL does.
fn serials_signed_by(crls: &[Vec<u8>], issuer_der: &[u8]) -> Option<Vec<String>> {
    let (_, issuer) = X509Certificate::from_der(issuer_der).unwrap();
    let key = sigil_keys::PublicKey::from_spki_der(issuer.public_key().raw).unwrap();
    crls.iter()
        .map(|der| {
            x509_parser::revocation_list::CertificateRevocationList::from_der(der)
                .unwrap()
                .1
        })
        .find(|crl| {
            crl.issuer() == issuer.subject()
                && key
                    .verify_x509(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
                    .is_ok()
        })
        .map(|crl| {
            crl.iter_revoked_certificates()
                .map(|r| hex(r.raw_serial()))
                .collect()
        })
}

/// The active intermediate of `replica`.
async fn intermediate_of(f: &Fixture, replica: &str) -> AuthorityRecord {
    f.active(AuthorityKind::X509Intermediate)
        .await
        .into_iter()
        .find(|r| r.replica == replica)
        .unwrap()
}

/// Two replicas on one store: each stores the CRLs it signs, and each serves, next to its own,
/// the other's: an X509-SVID replica B issued and revoked is listed, as replica A serves it, by
/// B's intermediate's CRL, signed by B's intermediate. Reading the same CRLs again wakes nobody.
/// A CRL stored for B's intermediate with the same subject and a higher number but signed by
/// another key is not served, and B's CRL goes with it.
#[tokio::test]
async fn replicas_serve_each_others_crls_once_verified() {
    let f = Fixture::new();
    let a = f.replica("a", Arc::new(MemoryKeyManager::new())).await;
    let b = f.replica("b", Arc::new(MemoryKeyManager::new())).await;
    a.rotate_if_due().await.unwrap();
    let b_intermediate = intermediate_of(&f, "b").await;
    let b_cert = b_intermediate.cert_der.clone().unwrap();

    // B issues an X509-SVID, which is then revoked.
    let key = PrivateKey::generate().unwrap();
    let csr = key.csr_der(&workload_id()).unwrap();
    let chain = b.sign_x509_svid(&csr, &workload_id(), 600, &[]).unwrap();
    let serial = sigil_keys::cert_ids::serial_hex(&chain[0]).unwrap();
    f.store
        .record_issued(vec![sigil_store::IssuedCredential {
            kind: CredentialKind::X509Svid,
            id: serial.clone(),
            spiffe_id: workload_id(),
            authority_id: b_intermediate.id.clone(),
            issued_to: SpiffeId::parse("spiffe://example.org/sigil/agent/x").unwrap(),
            issued_at: START,
            expires_at: START + 600,
        }])
        .await
        .unwrap();
    f.store
        .revoke_credential(CredentialKind::X509Svid, &serial, "leaked", START)
        .await
        .unwrap();
    let (index, _) = crate::revocation::RevocationIndex::load(f.store.as_ref())
        .await
        .unwrap();
    b.set_revocations(index.snapshot()).await.unwrap();
    a.set_revocations(index.snapshot()).await.unwrap();
    assert_eq!(
        a.revocations().crls.len(),
        2,
        "A's own root and intermediate, until it reads the store"
    );
    assert_eq!(serials_signed_by(&a.revocations().crls, &b_cert), None);

    let mut trust = a.subscribe_trust();
    trust.mark_unchanged();
    assert!(a.refresh_replica_crls().await.unwrap());
    assert!(
        trust.has_changed().unwrap(),
        "serving B's CRLs wakes the pushers"
    );
    let served = a.revocations();
    assert_eq!(
        served.crls.len(),
        4,
        "both replicas' roots and intermediates"
    );
    assert_eq!(serials_signed_by(&served.crls, &b_cert), Some(vec![serial]));
    assert!(served.list.is_revoked(
        CredentialKind::X509Svid,
        &sigil_keys::cert_ids::serial_hex(&chain[0]).unwrap(),
        START
    ));
    trust.mark_unchanged();
    assert!(!a.refresh_replica_crls().await.unwrap());
    assert!(!trust.has_changed().unwrap(), "nothing new, nobody woken");
    // B holds its own CRLs: it serves them as it signed them, not from the store.
    assert!(b.holds_authority(&b_intermediate.id));
    assert!(!a.holds_authority(&b_intermediate.id));

    // A forger with an intermediate of the same subject but its own key.
    let forger_root = sigil_ca::self_signed_root(
        &td(),
        Arc::new(PrivateKey::generate().unwrap()),
        3600,
        f.clock.now(),
    )
    .unwrap();
    let forger = sigil_ca::intermediate(
        &td(),
        Arc::new(PrivateKey::generate().unwrap()),
        &forger_root,
        600,
        f.clock.now(),
    )
    .unwrap();
    let stored = f
        .store
        .list_crls()
        .await
        .unwrap()
        .into_iter()
        .find(|crl| crl.authority_id == b_intermediate.id)
        .unwrap();
    let forged = StoredCrl {
        number: stored.number + 1,
        der: forger
            .sign_crl(&[], stored.number + 1, f.clock.now())
            .unwrap(),
        ..stored
    };
    assert!(matches!(
        crls::verify_stored(&forged, &b_intermediate, START),
        Err(crls::CrlRefused::Signature)
    ));
    assert!(f.store.put_crl(forged.clone()).await.unwrap());
    assert!(a.refresh_replica_crls().await.unwrap());
    let served = a.revocations();
    assert!(
        !served.crls.contains(&forged.der),
        "the forged CRL is not served"
    );
    assert_eq!(serials_signed_by(&served.crls, &b_cert), None);
    assert_eq!(served.crls.len(), 3, "B's intermediate's CRL went with it");
}

/// A stored CRL is refused when it does not parse, has bytes after it, names another number
/// than the stored one, was stored under another replica, or has passed its `nextUpdate`.
#[tokio::test]
async fn stored_crls_that_do_not_check_out_are_refused() {
    let f = Fixture::new();
    let b = f.replica("b", Arc::new(MemoryKeyManager::new())).await;
    b.set_revocations(Arc::new(DenyList::default()))
        .await
        .unwrap();
    let record = intermediate_of(&f, "b").await;
    let good = f
        .store
        .list_crls()
        .await
        .unwrap()
        .into_iter()
        .find(|crl| crl.authority_id == record.id)
        .unwrap();
    crls::verify_stored(&good, &record, START).unwrap();
    assert_eq!(
        crls::replica_crls(
            std::slice::from_ref(&good),
            std::slice::from_ref(&record),
            "a",
            START
        )
        .len(),
        1
    );
    assert!(
        crls::replica_crls(
            std::slice::from_ref(&good),
            std::slice::from_ref(&record),
            "b",
            START
        )
        .is_empty(),
        "a replica's own CRLs are not read back"
    );

    let mut trailing = good.clone();
    trailing.der.push(0);
    let mut renumbered = good.clone();
    renumbered.number += 1;
    let mut elsewhere = good.clone();
    elsewhere.replica = "c".to_owned();
    let mut garbage = good.clone();
    garbage.der = b"not a CRL".to_vec();
    let mut tampered = good.clone();
    if let Some(last) = tampered.der.last_mut() {
        *last ^= 1;
    }
    for (bad, what) in [
        (&trailing, "trailing bytes"),
        (&renumbered, "another number"),
        (&elsewhere, "another replica"),
        (&garbage, "not DER"),
        (&tampered, "a changed signature"),
    ] {
        assert!(
            crls::verify_stored(bad, &record, START).is_err(),
            "{what} is refused"
        );
        assert!(
            crls::replica_crls(
                std::slice::from_ref(bad),
                std::slice::from_ref(&record),
                "a",
                START
            )
            .is_empty(),
            "{what} is not served"
        );
    }
    let expired = crls::verify_stored(&good, &record, record.not_after);
    assert!(
        matches!(expired, Err(crls::CrlRefused::Expired { .. })),
        "{expired:?}"
    );
}

#[test]
fn crl_numbers_grow_even_when_the_clock_does_not() {
    let at = from_unix_secs(START);
    let first = crls::next_number(0, at);
    assert_eq!(first, u64::try_from(START).unwrap() * 1000);
    assert_eq!(crls::next_number(first, at), first + 1);
    assert_eq!(
        crls::next_number(first + 5, from_unix_secs(START - 10)),
        first + 6,
        "a clock stepped back"
    );
    assert_eq!(
        crls::next_number(first, from_unix_secs(START + 1)),
        first + 1000
    );
}
