//! The server's certificate authorities: a long-lived self-signed root whose certificate is the
//! trust bundle's X.509 authority, a shorter-lived intermediate that signs X509-SVIDs, and a JWT
//! signing key. Every authority is a record in the datastore (several of each kind may exist at
//! once: that is what rotation needs); private keys live only in the key manager.
//!
//! `CaManager::rotate_if_due` replaces the intermediate and the JWT key when less than a sixth of
//! their life is left; the full prepare/activate/taint/revoke state machine builds on the same
//! records in a later step.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sigil_ca::{JwtAuthority, MintedJwt, X509Authority};
use sigil_keys::{KeyManager, PublicKey};
use sigil_spiffe::{Clock, JwtAuthorityKey, SpiffeId, TrustBundle, TrustDomain};
use sigil_store::{AuthorityKind, AuthorityRecord, AuthorityState, Datastore, StoredBundle};
use tokio::sync::Mutex;

/// Lifetimes of the authorities, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct CaLifetimes {
    pub root_ttl: u64,
    pub intermediate_ttl: u64,
    pub jwt_key_ttl: u64,
    /// `spiffe_refresh_hint` of the published bundle.
    pub bundle_refresh_hint: u64,
}

impl Default for CaLifetimes {
    fn default() -> Self {
        Self {
            root_ttl: 365 * 24 * 3600,
            intermediate_ttl: 24 * 3600,
            jwt_key_ttl: 24 * 3600,
            bundle_refresh_hint: 300,
        }
    }
}

/// What went wrong in the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaManagerError {
    #[error(transparent)]
    Store(#[from] sigil_store::StoreError),
    #[error(transparent)]
    Ca(#[from] sigil_ca::CaError),
    #[error(transparent)]
    Keys(#[from] sigil_keys::KeyError),
    #[error("private key `{0}` of an active authority is missing from the key store")]
    MissingKey(String),
    #[error("stored authority `{0}` has no certificate")]
    MissingCertificate(String),
}

struct ActiveAuthorities {
    root: Arc<X509Authority>,
    intermediate: Arc<X509Authority>,
    jwt: Arc<JwtAuthority>,
    bundle: Arc<TrustBundle>,
}

/// Issues SVIDs from the active authorities and publishes the trust bundle.
pub struct CaManager {
    trust_domain: TrustDomain,
    keys: Arc<dyn KeyManager>,
    store: Arc<dyn Datastore>,
    clock: Arc<dyn Clock>,
    lifetimes: CaLifetimes,
    active: ArcSwap<ActiveAuthorities>,
    /// Serialises rotations.
    rotation: Mutex<()>,
}

impl std::fmt::Debug for CaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaManager")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// Whether an authority valid from `not_before` to `not_after` has at most a sixth of its life
/// left at `now`, the point where it is replaced.
fn rotation_due(not_before: i64, not_after: i64, now: i64) -> bool {
    let life = not_after.saturating_sub(not_before).max(1);
    not_after.saturating_sub(now) <= life / 6
}

/// A fresh key-manager name for a new authority's private key.
fn new_key_id(prefix: &str) -> Result<String, CaManagerError> {
    let random = sigil_keys::random_bytes(12)?;
    Ok(format!("{prefix}-{}", hex(&random)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CaManager {
    /// Loads the active authorities from the store and key manager, creating any that are
    /// missing or too close to expiry, and publishes the bundle.
    pub async fn load_or_init(
        trust_domain: TrustDomain,
        keys: Arc<dyn KeyManager>,
        store: Arc<dyn Datastore>,
        clock: Arc<dyn Clock>,
        lifetimes: CaLifetimes,
    ) -> Result<Arc<Self>, CaManagerError> {
        let records = store.list_authorities().await?;
        let now = clock.unix_secs();
        let root = match Self::load_root(&records, keys.as_ref(), now)? {
            Some(root) => root,
            None => {
                let key_id = new_key_id("root")?;
                let key = keys.generate(&key_id)?;
                let root = sigil_ca::self_signed_root(
                    &trust_domain,
                    key,
                    lifetimes.root_ttl,
                    clock.now(),
                )?;
                let id = root.subject_key_id();
                store
                    .put_authority(AuthorityRecord {
                        id: id.clone(),
                        kind: AuthorityKind::X509Root,
                        state: AuthorityState::Active,
                        cert_der: Some(root.cert_der().to_vec()),
                        public_key_der: root.key().public_key().spki_der().to_vec(),
                        key_id,
                        issuer_id: None,
                        not_before: now,
                        not_after: root.not_after(),
                        created_at: now,
                    })
                    .await?;
                tracing::info!(authority = %id, "created root CA");
                root
            }
        };
        let records = store.list_authorities().await?;
        let intermediate = Self::load_intermediate(&records, keys.as_ref(), &root, now, lifetimes)?;
        let jwt = Self::load_jwt(&records, keys.as_ref(), now, lifetimes)?;
        let (intermediate, jwt) = match (intermediate, jwt) {
            (Some(i), Some(j)) => (i, j),
            (i, j) => {
                let i = match i {
                    Some(i) => i,
                    None => {
                        Self::new_intermediate(
                            &trust_domain,
                            keys.as_ref(),
                            &*store,
                            &*clock,
                            &root,
                            lifetimes,
                        )
                        .await?
                    }
                };
                let j = match j {
                    Some(j) => j,
                    None => Self::new_jwt(keys.as_ref(), &*store, &*clock, lifetimes).await?,
                };
                (i, j)
            }
        };
        let placeholder = Arc::new(TrustBundle {
            trust_domain: trust_domain.clone(),
            x509_authorities: vec![],
            jwt_authorities: vec![],
            sequence: 0,
            refresh_hint: lifetimes.bundle_refresh_hint,
        });
        let manager = Arc::new(Self {
            trust_domain,
            keys,
            store,
            clock,
            lifetimes,
            active: ArcSwap::from_pointee(ActiveAuthorities {
                root: Arc::new(root),
                intermediate: Arc::new(intermediate),
                jwt: Arc::new(jwt),
                bundle: placeholder,
            }),
            rotation: Mutex::new(()),
        });
        manager.publish_bundle().await?;
        Ok(manager)
    }

    fn load_root(
        records: &[AuthorityRecord],
        keys: &dyn KeyManager,
        now: i64,
    ) -> Result<Option<X509Authority>, CaManagerError> {
        let Some(rec) = records
            .iter()
            .filter(|r| {
                r.kind == AuthorityKind::X509Root
                    && r.state == AuthorityState::Active
                    && r.not_after > now
            })
            .max_by_key(|r| r.created_at)
        else {
            return Ok(None);
        };
        let key = keys
            .load(&rec.key_id)?
            .ok_or_else(|| CaManagerError::MissingKey(rec.key_id.clone()))?;
        let cert = rec
            .cert_der
            .clone()
            .ok_or_else(|| CaManagerError::MissingCertificate(rec.id.clone()))?;
        Ok(Some(X509Authority::from_parts(cert, key, Vec::new())?))
    }

    fn still_fresh(rec: &AuthorityRecord, now: i64) -> bool {
        !rotation_due(rec.not_before, rec.not_after, now)
    }

    fn load_intermediate(
        records: &[AuthorityRecord],
        keys: &dyn KeyManager,
        root: &X509Authority,
        now: i64,
        _lifetimes: CaLifetimes,
    ) -> Result<Option<X509Authority>, CaManagerError> {
        let root_id = root.subject_key_id();
        let Some(rec) = records
            .iter()
            .filter(|r| {
                r.kind == AuthorityKind::X509Intermediate
                    && r.state == AuthorityState::Active
                    && r.issuer_id.as_deref() == Some(root_id.as_str())
                    && Self::still_fresh(r, now)
            })
            .max_by_key(|r| r.created_at)
        else {
            return Ok(None);
        };
        let Some(key) = keys.load(&rec.key_id)? else {
            tracing::warn!(authority = %rec.id, "intermediate key missing; a new intermediate will be created");
            return Ok(None);
        };
        let cert = rec
            .cert_der
            .clone()
            .ok_or_else(|| CaManagerError::MissingCertificate(rec.id.clone()))?;
        Ok(Some(X509Authority::from_parts(cert, key, Vec::new())?))
    }

    fn load_jwt(
        records: &[AuthorityRecord],
        keys: &dyn KeyManager,
        now: i64,
        _lifetimes: CaLifetimes,
    ) -> Result<Option<JwtAuthority>, CaManagerError> {
        let Some(rec) = records
            .iter()
            .filter(|r| {
                r.kind == AuthorityKind::Jwt
                    && r.state == AuthorityState::Active
                    && Self::still_fresh(r, now)
            })
            .max_by_key(|r| r.created_at)
        else {
            return Ok(None);
        };
        let Some(key) = keys.load(&rec.key_id)? else {
            tracing::warn!(authority = %rec.id, "JWT key missing; a new JWT key will be created");
            return Ok(None);
        };
        Ok(Some(JwtAuthority::new(rec.id.clone(), key, rec.not_after)))
    }

    async fn retire_active(
        store: &dyn Datastore,
        kind: AuthorityKind,
        except: &str,
    ) -> Result<(), CaManagerError> {
        for mut rec in store.list_authorities().await? {
            if rec.kind == kind && rec.state == AuthorityState::Active && rec.id != except {
                rec.state = AuthorityState::Old;
                store.put_authority(rec).await?;
            }
        }
        Ok(())
    }

    async fn new_intermediate(
        td: &TrustDomain,
        keys: &dyn KeyManager,
        store: &dyn Datastore,
        clock: &dyn Clock,
        root: &X509Authority,
        lifetimes: CaLifetimes,
    ) -> Result<X509Authority, CaManagerError> {
        let key_id = new_key_id("x509")?;
        let key = keys.generate(&key_id)?;
        let ca = sigil_ca::intermediate(td, key, root, lifetimes.intermediate_ttl, clock.now())?;
        let id = ca.subject_key_id();
        let now = clock.unix_secs();
        store
            .put_authority(AuthorityRecord {
                id: id.clone(),
                kind: AuthorityKind::X509Intermediate,
                state: AuthorityState::Active,
                cert_der: Some(ca.cert_der().to_vec()),
                public_key_der: ca.key().public_key().spki_der().to_vec(),
                key_id,
                issuer_id: Some(root.subject_key_id()),
                not_before: now,
                not_after: ca.not_after(),
                created_at: now,
            })
            .await?;
        Self::retire_active(store, AuthorityKind::X509Intermediate, &id).await?;
        tracing::info!(authority = %id, not_after = ca.not_after(), "activated X.509 intermediate CA");
        Ok(ca)
    }

    async fn new_jwt(
        keys: &dyn KeyManager,
        store: &dyn Datastore,
        clock: &dyn Clock,
        lifetimes: CaLifetimes,
    ) -> Result<JwtAuthority, CaManagerError> {
        let kid = sigil_ca::new_kid()?;
        let key_id = new_key_id("jwt")?;
        let key = keys.generate(&key_id)?;
        let now = clock.unix_secs();
        let not_after =
            now.saturating_add(i64::try_from(lifetimes.jwt_key_ttl).unwrap_or(i64::MAX));
        store
            .put_authority(AuthorityRecord {
                id: kid.clone(),
                kind: AuthorityKind::Jwt,
                state: AuthorityState::Active,
                cert_der: None,
                public_key_der: key.public_key().spki_der().to_vec(),
                key_id,
                issuer_id: None,
                not_before: now,
                not_after,
                created_at: now,
            })
            .await?;
        Self::retire_active(store, AuthorityKind::Jwt, &kid).await?;
        tracing::info!(kid = %kid, "activated JWT signing key");
        Ok(JwtAuthority::new(kid, key, not_after))
    }

    /// Replaces the intermediate or the JWT key when less than a sixth of its life is left, and
    /// republishes the bundle if anything changed. Returns whether it rotated.
    pub async fn rotate_if_due(&self) -> Result<bool, CaManagerError> {
        let _guard = self.rotation.lock().await;
        let now = self.clock.unix_secs();
        let current = self.active.load_full();
        let due = |not_before: i64, not_after: i64| rotation_due(not_before, not_after, now);
        let records = self.store.list_authorities().await?;
        let started = |id: &str| {
            records
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.not_before)
                .unwrap_or(now)
        };
        let mut intermediate = None;
        let mut jwt = None;
        let i = &current.intermediate;
        if due(started(&i.subject_key_id()), i.not_after()) {
            intermediate = Some(
                Self::new_intermediate(
                    &self.trust_domain,
                    self.keys.as_ref(),
                    &*self.store,
                    &*self.clock,
                    &current.root,
                    self.lifetimes,
                )
                .await?,
            );
        }
        if due(started(current.jwt.kid()), current.jwt.not_after()) {
            jwt = Some(
                Self::new_jwt(
                    self.keys.as_ref(),
                    &*self.store,
                    &*self.clock,
                    self.lifetimes,
                )
                .await?,
            );
        }
        if intermediate.is_none() && jwt.is_none() {
            return Ok(false);
        }
        let next = ActiveAuthorities {
            root: current.root.clone(),
            intermediate: intermediate.map_or_else(|| current.intermediate.clone(), Arc::new),
            jwt: jwt.map_or_else(|| current.jwt.clone(), Arc::new),
            bundle: current.bundle.clone(),
        };
        self.active.store(Arc::new(next));
        self.publish_bundle().await?;
        Ok(true)
    }

    /// Rebuilds the trust bundle from the stored authorities and publishes it (with a new
    /// sequence number) when it differs from the stored one.
    pub async fn publish_bundle(&self) -> Result<Arc<TrustBundle>, CaManagerError> {
        let now = self.clock.unix_secs();
        let records = self.store.list_authorities().await?;
        let trusted =
            |r: &&AuthorityRecord| r.state != AuthorityState::Revoked && r.not_after > now;
        let x509_authorities: Vec<Vec<u8>> = records
            .iter()
            .filter(trusted)
            .filter(|r| r.kind == AuthorityKind::X509Root)
            .filter_map(|r| r.cert_der.clone())
            .collect();
        let jwt_authorities: Vec<JwtAuthorityKey> = records
            .iter()
            .filter(trusted)
            .filter(|r| r.kind == AuthorityKind::Jwt)
            .map(|r| JwtAuthorityKey {
                kid: r.id.clone(),
                public_key_der: r.public_key_der.clone(),
                expires_at: r.not_after,
            })
            .collect();
        let stored = self.store.get_bundle(self.trust_domain.as_str()).await?;
        let previous = match &stored {
            Some(s) => sigil_spiffe::BundleDocument::parse(&s.document)
                .ok()
                .and_then(|d| {
                    sigil_keys::bundle_json::from_document(self.trust_domain.clone(), &d).ok()
                }),
            None => None,
        };
        let mut bundle = TrustBundle {
            trust_domain: self.trust_domain.clone(),
            x509_authorities,
            jwt_authorities,
            sequence: stored.as_ref().map(|s| s.sequence).unwrap_or(0),
            refresh_hint: self.lifetimes.bundle_refresh_hint,
        };
        let unchanged = previous.as_ref().is_some_and(|p| {
            p.x509_authorities == bundle.x509_authorities
                && p.jwt_authorities
                    .iter()
                    .map(|k| (&k.kid, &k.public_key_der))
                    .eq(bundle
                        .jwt_authorities
                        .iter()
                        .map(|k| (&k.kid, &k.public_key_der)))
        });
        if !unchanged {
            bundle.sequence = bundle.sequence.saturating_add(1);
            let doc = sigil_keys::bundle_json::to_document(&bundle)?;
            self.store
                .put_bundle(StoredBundle {
                    trust_domain: self.trust_domain.clone(),
                    document: doc.to_json(),
                    sequence: bundle.sequence,
                    updated_at: now,
                })
                .await?;
            tracing::info!(sequence = bundle.sequence, "published trust bundle");
        }
        let bundle = Arc::new(bundle);
        let current = self.active.load_full();
        self.active.store(Arc::new(ActiveAuthorities {
            root: current.root.clone(),
            intermediate: current.intermediate.clone(),
            jwt: current.jwt.clone(),
            bundle: bundle.clone(),
        }));
        Ok(bundle)
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The current trust bundle.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.active.load().bundle.clone()
    }

    /// Signs an X509-SVID for `spiffe_id` from a CSR (only its public key is used); returns the
    /// chain, leaf first, then the intermediate.
    pub fn sign_x509_svid(
        &self,
        csr_der: &[u8],
        spiffe_id: &SpiffeId,
        ttl_secs: u64,
        dns_names: &[String],
    ) -> Result<Vec<Vec<u8>>, CaManagerError> {
        let active = self.active.load();
        let leaf = active.intermediate.sign_x509_svid(
            csr_der,
            spiffe_id,
            ttl_secs,
            dns_names,
            self.clock.now(),
        )?;
        Ok(vec![leaf, active.intermediate.cert_der().to_vec()])
    }

    /// Signs an X509-SVID for a public key held by this process (the server's own SVID).
    pub fn sign_x509_svid_for_key(
        &self,
        public_key: &PublicKey,
        spiffe_id: &SpiffeId,
        ttl_secs: u64,
        dns_names: &[String],
    ) -> Result<Vec<Vec<u8>>, CaManagerError> {
        let active = self.active.load();
        let leaf = active.intermediate.sign_x509_svid_for_key(
            public_key,
            spiffe_id,
            ttl_secs,
            dns_names,
            self.clock.now(),
        )?;
        Ok(vec![leaf, active.intermediate.cert_der().to_vec()])
    }

    /// Mints a JWT-SVID with the active JWT key.
    pub fn mint_jwt_svid(
        &self,
        sub: &SpiffeId,
        audience: &[String],
        ttl_secs: u64,
    ) -> Result<MintedJwt, CaManagerError> {
        Ok(self
            .active
            .load()
            .jwt
            .mint(sub, audience, ttl_secs, self.clock.now())?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, UnixTime};
    use rustls::server::danger::ClientCertVerifier;
    use sigil_keys::{MemoryKeyManager, PrivateKey};
    use sigil_spiffe::FakeClock;
    use sigil_spiffe::time::from_unix_secs;
    use sigil_store::SqliteStore;
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
            CaManager::load_or_init(
                td(),
                self.keys.clone(),
                self.store.clone(),
                Arc::new(self.clock.clone()),
                lifetimes(),
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

        fn now(&self) -> UnixTime {
            UnixTime::since_unix_epoch(Duration::from_secs(
                u64::try_from(self.clock.unix_secs()).unwrap(),
            ))
        }
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
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => {
                    Some(hex(ski.0))
                }
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
    async fn rotate_if_due_rotates_with_a_sixth_of_life_left_and_keeps_the_old_jwt_key() {
        let f = Fixture::new();
        let ca = f.ca().await;
        let old_intermediate = f.active(AuthorityKind::X509Intermediate).await[0].clone();
        let old_kid = f.active(AuthorityKind::Jwt).await[0].id.clone();
        let key = PrivateKey::generate().unwrap();
        let old_chain = ca
            .sign_x509_svid_for_key(&key.public_key(), &workload_id(), 600, &[])
            .unwrap();

        // 499 s in: 101 s of 600 s left, more than a sixth.
        f.clock.advance(Duration::from_secs(499));
        assert!(!ca.rotate_if_due().await.unwrap());
        assert_eq!(ca.bundle().sequence, 1);

        // 500 s in: exactly a sixth left.
        f.clock.advance(Duration::from_secs(1));
        assert!(ca.rotate_if_due().await.unwrap());

        let new_intermediate = f.active(AuthorityKind::X509Intermediate).await;
        assert_eq!(new_intermediate.len(), 1);
        assert_ne!(new_intermediate[0].id, old_intermediate.id);
        let retired = f.store.list_authorities().await.unwrap();
        let retired = retired
            .iter()
            .find(|r| r.id == old_intermediate.id)
            .unwrap();
        assert_eq!(retired.state, AuthorityState::Old);

        let new_kid = f.active(AuthorityKind::Jwt).await[0].id.clone();
        assert_ne!(new_kid, old_kid);
        let bundle = ca.bundle();
        assert_eq!(bundle.sequence, 2);
        let kids: Vec<&str> = bundle
            .jwt_authorities
            .iter()
            .map(|k| k.kid.as_str())
            .collect();
        assert!(
            kids.contains(&old_kid.as_str()),
            "old JWT key still published"
        );
        assert!(kids.contains(&new_kid.as_str()));
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
        assert!(minted.token.len() > 10);

        // Right after a rotation nothing is due again.
        assert!(!ca.rotate_if_due().await.unwrap());
        assert_eq!(ca.bundle().sequence, 2);
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
}
