//! The server's certificate authorities: a long-lived self-signed root whose certificate is the
//! trust bundle's X.509 authority, a shorter-lived intermediate that signs X509-SVIDs, and a JWT
//! signing key. Every authority is a record in the datastore (several of each kind exist during a
//! rotation); private keys live only in the key manager.
//!
//! [`CaManager`] is the facade the rest of the server uses. Behind it the concerns are apart:
//! - when an authority is prepared, activated, retired or dropped is decided by the pure life
//!   cycle in [`sigil_ca::lifecycle`];
//! - [`driver`] applies those decisions (key generation, store writes by compare-and-swap),
//!   one tick at a time, serialised;
//! - [`signing`] holds the active authorities in memory, so signing never waits on a lock or the
//!   store;
//! - [`bundle`] builds the trust bundle and moves its sequence only when its content changes;
//! - [`crls`] decides what each X.509 authority's CRL lists; the CRLs are signed again whenever
//!   the deny-list or the authorities change, and stored, so that every replica serves, next to
//!   its own, the verified CRLs of the other replicas' authorities
//!   ([`CaManager::refresh_replica_crls`], when the change feed shows one changed).

mod bundle;
mod crls;
mod driver;
mod signing;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use sigil_ca::MintedJwt;
pub use sigil_ca::UpstreamAuthority;
pub use sigil_ca::operator::{Command, CommandError};
use sigil_keys::{KeyManager, PublicKey};
use sigil_spiffe::{AuthorityKind, AuthorityState, Clock, SpiffeId, TrustBundle, TrustDomain};
use sigil_store::{AuthorityRecord, CredentialKind, Datastore, StoreError, StoredCrl};

use crate::revocation::DenyList;
use tokio::sync::watch;

use bundle::BundlePublisher;
use driver::LifecycleDriver;
use signing::Signing;

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
    #[error("authority `{0}` named by the life cycle is not in the store")]
    UnknownAuthority(String),
    #[error("no active {0} authority after settling the life cycle")]
    NoActiveAuthority(AuthorityKind),
    /// An operator command was refused; nothing changed.
    #[error(transparent)]
    Refused(#[from] sigil_ca::operator::CommandError),
    /// An operator command named an authority of another server replica, which only that
    /// replica can move (it holds the key and runs its life cycle); nothing changed.
    #[error(
        "authority `{id}` belongs to server replica `{replica}`: send the command to that replica"
    )]
    OtherReplica { id: String, replica: String },
}

/// Issues SVIDs from the active authorities and publishes the trust bundle.
pub struct CaManager {
    trust_domain: TrustDomain,
    store: Arc<dyn Datastore>,
    clock: Arc<dyn Clock>,
    driver: LifecycleDriver,
    publisher: BundlePublisher,
    signing: ArcSwap<Signing>,
    bundle: ArcSwap<TrustBundle>,
    /// Ids of the tainted authorities, sorted.
    tainted: ArcSwap<Vec<String>>,
    /// The deny-list the CRLs were signed from, and the CRLs (DER), pushed together.
    revocations: ArcSwap<Revocations>,
    /// The CRLs this replica signed last, as published in `revocations` (first).
    own_crls: ArcSwap<Vec<Vec<u8>>>,
    /// The verified CRLs of other replicas' authorities, as published in `revocations` (after
    /// the own ones).
    replica_crls: ArcSwap<Vec<crls::ReplicaCrl>>,
    /// The number of the CRLs signed last ([`crls::next_number`]).
    crl_number: AtomicU64,
    /// Ids of this replica's authorities among the records read last, sorted: the change feed
    /// asks [`CaManager::holds_authority`] so that this replica's own CRL writes wake nobody.
    own_ids: ArcSwap<Vec<String>>,
    /// [`CaManager::next_transition`], from the records the last rotation read.
    next_transition: AtomicI64,
    /// Bumped whenever the bundle or the tainted set changes, for whoever pushes them.
    trust_version: watch::Sender<u64>,
    /// The OIDC issuer URL JWT-SVIDs carry as `iss`, once set.
    jwt_issuer: std::sync::OnceLock<String>,
    /// Held for the whole of a rotation (settle, signing switch, publication): a rotation that
    /// read older records would otherwise switch signing back or publish an older bundle after
    /// one that read newer (the timer's tick racing an operator command).
    rotation: tokio::sync::Mutex<()>,
}

/// The deny-list and the CRLs signed from it, published together so a sync message never pairs
/// a list with CRLs of another.
#[derive(Debug, Default)]
pub struct Revocations {
    pub list: Arc<DenyList>,
    /// DER CRLs, one per X.509 authority that signs one: first this replica's own, signed from
    /// `list`, then those other replicas signed for theirs (from the same deny-list once their
    /// CRLs reach the store).
    pub crls: Vec<Vec<u8>>,
}

/// [`CaManager::next_transition`]'s "nothing scheduled".
const NO_TRANSITION: i64 = i64::MIN;

/// When the life cycle of `records` next has something to do after `now`, or
/// [`NO_TRANSITION`].
fn next_transition_of(records: &[AuthorityRecord], now: i64) -> i64 {
    let statuses: Vec<sigil_ca::AuthorityStatus> = records
        .iter()
        // Only the times matter here.
        .map(|r| driver::status(r, true))
        .collect();
    sigil_ca::next_transition(&statuses, now).unwrap_or(NO_TRANSITION)
}

/// Ids of `replica`'s authorities among `records`, sorted.
fn own_ids(records: &[AuthorityRecord], replica: &str) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r.replica == replica)
        .map(|r| r.id.clone())
        .collect();
    ids.sort();
    ids
}

/// Ids of the tainted authorities among `records`, sorted.
fn tainted_ids(records: &[AuthorityRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r.state == AuthorityState::Tainted)
        .map(|r| r.id.clone())
        .collect();
    ids.sort();
    ids
}

impl std::fmt::Debug for CaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaManager")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl CaManager {
    /// Loads the authorities from the store and key manager, settles their life cycle (creating
    /// any that are missing, replacing any that expired or whose key is gone), and publishes the
    /// bundle. Fails with [`CaManagerError::MissingKey`] when the active root's key is gone: the
    /// trust anchor is not replaced silently.
    pub async fn load_or_init(
        trust_domain: TrustDomain,
        replica: &str,
        keys: Arc<dyn KeyManager>,
        store: Arc<dyn Datastore>,
        clock: Arc<dyn Clock>,
        lifetimes: CaLifetimes,
        upstream: Option<Arc<UpstreamAuthority>>,
    ) -> Result<Arc<Self>, CaManagerError> {
        let publisher = BundlePublisher::new(
            trust_domain.clone(),
            lifetimes.bundle_refresh_hint,
            upstream.clone(),
        );
        let driver = LifecycleDriver::new(
            trust_domain.clone(),
            replica.to_owned(),
            keys,
            store.clone(),
            lifetimes,
            upstream,
        );
        let (records, _) = driver.settle(clock.now()).await?;
        let signing = driver.load_signing(&driver.mine(&records), None).await?;
        let bundle = publisher
            .publish(store.as_ref(), &records, clock.unix_secs())
            .await?;
        let next = next_transition_of(&driver.mine(&records), clock.unix_secs());
        let list = Arc::new(DenyList::default());
        let crl_number = crls::next_number(0, clock.now());
        // Not stored: signed from an empty deny-list, these would replace, for the other
        // replicas, CRLs that list what is revoked. The first `set_revocations` stores them.
        let crls: Vec<Vec<u8>> = crls::sign_all(
            &driver.crl_signers(&records, clock.unix_secs()).await,
            &records,
            &list,
            crl_number,
            clock.now(),
        )
        .into_iter()
        .map(|crl| crl.der)
        .collect();
        let own = own_ids(&records, replica);
        Ok(Arc::new(Self {
            trust_domain,
            store,
            clock,
            driver,
            publisher,
            signing: ArcSwap::from_pointee(signing),
            bundle: ArcSwap::new(bundle),
            tainted: ArcSwap::from_pointee(tainted_ids(&records)),
            revocations: ArcSwap::from_pointee(Revocations {
                list,
                crls: crls.clone(),
            }),
            own_crls: ArcSwap::from_pointee(crls),
            replica_crls: ArcSwap::from_pointee(Vec::new()),
            crl_number: AtomicU64::new(crl_number),
            own_ids: ArcSwap::from_pointee(own),
            next_transition: AtomicI64::new(next),
            trust_version: watch::channel(0).0,
            jwt_issuer: std::sync::OnceLock::new(),
            rotation: tokio::sync::Mutex::new(()),
        }))
    }

    /// Applies the life-cycle transitions due now: prepares successors at half life, activates
    /// them with a sixth of life left, retires the replaced ones and drops expired ones; then
    /// signs with the active authorities and republishes the bundle if what it should trust
    /// changed. Also picks up transitions another replica made on the same store. Returns
    /// whether the authorities changed. Concurrent calls are serialised as a whole, so what is
    /// signed with and published always follows the newest records read; issuance goes on
    /// meanwhile.
    pub async fn rotate_if_due(&self) -> Result<bool, CaManagerError> {
        let _rotation = self.rotation.lock().await;
        let (records, mut changed) = self.driver.settle(self.clock.now()).await?;
        let mine = self.driver.mine(&records);
        let current = self.signing.load_full();
        if signing::active_ids(&mine) != current.ids() {
            let signing = self.driver.load_signing(&mine, Some(&current)).await?;
            self.signing.store(Arc::new(signing));
            changed = true;
        }
        let now = self.clock.unix_secs();
        if changed
            || !self
                .publisher
                .is_current(&self.bundle.load(), &records, now)
        {
            let bundle = self
                .publisher
                .publish(self.store.as_ref(), &records, now)
                .await?;
            self.bundle.store(bundle);
            changed = true;
            self.trust_version.send_modify(|v| *v = v.wrapping_add(1));
        }
        self.next_transition
            .store(next_transition_of(&mine, now), Ordering::Relaxed);
        let tainted = tainted_ids(&records);
        if **self.tainted.load() != tainted {
            self.tainted.store(Arc::new(tainted));
            changed = true;
            self.trust_version.send_modify(|v| *v = v.wrapping_add(1));
        }
        if changed {
            // New, retired or revoked authorities: each signer's CRL, and the set of signers.
            let list = self.revocations.load().list.clone();
            self.sign_crls(&records, list).await;
        }
        Ok(changed)
    }

    /// Takes a new deny-list (from the revocation index): signs the CRL of every X.509
    /// authority this replica holds again, publishes both (with the other replicas' CRLs held),
    /// waking whoever pushes them, and stores the new CRLs for the other replicas. Serialised
    /// with rotations.
    pub async fn set_revocations(&self, list: Arc<DenyList>) -> Result<(), CaManagerError> {
        let _rotation = self.rotation.lock().await;
        let records = self.store.list_authorities().await?;
        self.sign_crls(&records, list).await;
        Ok(())
    }

    /// Waits, at most [`crate::applied::READ_YOUR_WRITE_WAIT`], until the published deny-list
    /// (and the CRLs signed with it) names credential `id` of `kind`: read-your-writes for a
    /// revocation, which the revocation task publishes once the index has it. Returns whether
    /// it did in time.
    pub async fn revocation_published(&self, kind: CredentialKind, id: &str) -> bool {
        let mut trust = self.trust_version.subscribe();
        let published = async {
            loop {
                trust.mark_unchanged();
                if self
                    .revocations()
                    .list
                    .is_revoked(kind, id, self.clock.unix_secs())
                {
                    return;
                }
                if trust.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(crate::applied::READ_YOUR_WRITE_WAIT, published)
            .await
            .is_ok()
    }

    /// The deny-list and the CRLs signed from it.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.revocations.load_full()
    }

    /// Reads the CRLs stored by every replica and publishes, next to this replica's own, those
    /// of other replicas' X.509 authorities that still sign one, each verified against its
    /// authority's certificate ([`crls::replica_crls`]; a CRL that fails is left out with a
    /// warning). Wakes whoever pushes the revocations only when what is served changed; returns
    /// whether it did. Serialised with rotations. The change feed calls for it when the CRL or
    /// the record of an authority this replica does not hold changed.
    pub async fn refresh_replica_crls(&self) -> Result<bool, CaManagerError> {
        let _rotation = self.rotation.lock().await;
        let records = self.store.list_authorities().await?;
        let stored = self.store.list_crls().await?;
        let others = crls::replica_crls(
            &stored,
            &records,
            self.driver.replica(),
            self.clock.unix_secs(),
        );
        if **self.replica_crls.load() == others {
            return Ok(false);
        }
        self.replica_crls.store(Arc::new(others));
        let list = self.revocations.load().list.clone();
        self.publish_crls(list);
        Ok(true)
    }

    /// Whether authority `id` is one of this replica's, among the records read last.
    pub fn holds_authority(&self, id: &str) -> bool {
        self.own_ids
            .load()
            .binary_search_by(|own| own.as_str().cmp(id))
            .is_ok()
    }

    /// Signs the CRLs of this replica's authorities among `records` from `list`, publishes them
    /// with it (and with the other replicas' CRLs whose authorities still sign one), then
    /// stores them for the other replicas. A CRL the store refuses is still served here, with a
    /// warning; the next signing stores it again.
    async fn sign_crls(&self, records: &[AuthorityRecord], list: Arc<DenyList>) {
        let now = self.clock.unix_secs();
        let signers = self.driver.crl_signers(records, now).await;
        let number = crls::next_number(self.crl_number.load(Ordering::Relaxed), self.clock.now());
        self.crl_number.store(number, Ordering::Relaxed);
        let signed = crls::sign_all(&signers, records, &list, number, self.clock.now());
        self.own_ids
            .store(Arc::new(own_ids(records, self.driver.replica())));
        self.own_crls
            .store(Arc::new(signed.iter().map(|crl| crl.der.clone()).collect()));
        // Other replicas' authorities that were revoked, expired or pruned since: their CRLs go.
        let others = self.replica_crls.load();
        let kept: Vec<crls::ReplicaCrl> = others
            .iter()
            .filter(|crl| {
                records.iter().any(|r| {
                    r.id == crl.authority_id
                        && r.replica != self.driver.replica()
                        && crls::signs_crls(r, now)
                })
            })
            .cloned()
            .collect();
        if kept.len() != others.len() {
            self.replica_crls.store(Arc::new(kept));
        }
        self.publish_crls(list);
        for crl in signed {
            let authority = crl.authority_id.clone();
            let stored = StoredCrl {
                authority_id: crl.authority_id,
                replica: self.driver.replica().to_owned(),
                number,
                der: crl.der,
                next_update: crl.next_update,
            };
            match self.store.put_crl(stored).await {
                Ok(_) => {}
                // Pruned meanwhile: nothing to serve it for.
                Err(StoreError::NotFound { .. }) => {
                    tracing::debug!(%authority, "authority gone before its CRL was stored");
                }
                Err(e) => {
                    tracing::warn!(%authority, error = %e, "cannot store the CRL for the other replicas");
                }
            }
        }
    }

    /// Publishes `list` with this replica's CRLs and the other replicas' held, waking whoever
    /// pushes them.
    fn publish_crls(&self, list: Arc<DenyList>) {
        let crls = self
            .own_crls
            .load()
            .iter()
            .cloned()
            .chain(self.replica_crls.load().iter().map(|crl| crl.der.clone()))
            .collect();
        self.revocations.store(Arc::new(Revocations { list, crls }));
        self.trust_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Ids of the tainted authorities (hex subject key ids and JWT `kid`s), sorted.
    pub fn tainted(&self) -> Arc<Vec<String>> {
        self.tainted.load_full()
    }

    /// A receiver that changes whenever the trust bundle, the tainted set or the revocations
    /// (deny-list and CRLs) change.
    pub fn subscribe_trust(&self) -> watch::Receiver<u64> {
        self.trust_version.subscribe()
    }

    /// Carries out an operator command (`sigil authority prepare|activate|taint|revoke`), then
    /// settles the life cycle, switches signing and republishes the bundle as it requires (an
    /// intermediate under a tainted root is replaced at once). Returns the authority the command
    /// created or moved, as stored once the life cycle settled. Refused commands change nothing
    /// ([`CaManagerError::Refused`]); a step that lost a race with another writer fails with the
    /// store's conflict (`StoreError::AuthorityStateConflict` or `NotFound`). Other replicas
    /// follow through the change feed.
    pub async fn command(&self, command: &Command) -> Result<AuthorityRecord, CaManagerError> {
        let id = self.driver.run_command(command, self.clock.now()).await?;
        self.rotate_if_due().await?;
        self.store
            .list_authorities()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(CaManagerError::UnknownAuthority(id))
    }

    /// The next instant (Unix seconds) at which the life cycle has something to do
    /// ([`sigil_ca::next_transition`] of the records the last rotation read); `None` when
    /// nothing is scheduled. No I/O: the rotation task asks it after every tick.
    pub fn next_transition(&self) -> Option<i64> {
        Some(self.next_transition.load(Ordering::Relaxed)).filter(|at| *at != NO_TRANSITION)
    }

    /// Every authority record, as stored.
    pub async fn authorities(&self) -> Result<Vec<AuthorityRecord>, CaManagerError> {
        Ok(self.store.list_authorities().await?)
    }

    /// Rebuilds the trust bundle from the stored authorities and publishes it (with a new
    /// sequence number) when it differs from the stored one.
    pub async fn publish_bundle(&self) -> Result<Arc<TrustBundle>, CaManagerError> {
        let _rotation = self.rotation.lock().await;
        let records = self.store.list_authorities().await?;
        let bundle = self
            .publisher
            .publish(self.store.as_ref(), &records, self.clock.unix_secs())
            .await?;
        self.bundle.store(bundle.clone());
        self.trust_version.send_modify(|v| *v = v.wrapping_add(1));
        Ok(bundle)
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The current trust bundle.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.bundle.load_full()
    }

    /// Signs an X509-SVID for `spiffe_id` from a CSR (only its public key is used); returns the
    /// chain, leaf first, then the intermediate (and, under an upstream authority, this
    /// replica's root and the upstream's intermediates).
    pub fn sign_x509_svid(
        &self,
        csr_der: &[u8],
        spiffe_id: &SpiffeId,
        ttl_secs: u64,
        dns_names: &[String],
    ) -> Result<Vec<Vec<u8>>, CaManagerError> {
        let signing = self.signing.load();
        let leaf = signing.intermediate.sign_x509_svid(
            csr_der,
            spiffe_id,
            ttl_secs,
            dns_names,
            self.clock.now(),
        )?;
        Ok(signing.intermediate.svid_chain(leaf))
    }

    /// Signs an X509-SVID for a public key held by this process (the server's own SVID).
    pub fn sign_x509_svid_for_key(
        &self,
        public_key: &PublicKey,
        spiffe_id: &SpiffeId,
        ttl_secs: u64,
        dns_names: &[String],
    ) -> Result<Vec<Vec<u8>>, CaManagerError> {
        let signing = self.signing.load();
        let leaf = signing.intermediate.sign_x509_svid_for_key(
            public_key,
            spiffe_id,
            ttl_secs,
            dns_names,
            self.clock.now(),
        )?;
        Ok(signing.intermediate.svid_chain(leaf))
    }

    /// Makes every JWT-SVID minted from now on carry `iss: issuer`. Set once, at start; a second
    /// call changes nothing and returns `false`.
    pub fn set_jwt_issuer(&self, issuer: String) -> bool {
        self.jwt_issuer.set(issuer).is_ok()
    }

    /// Mints a JWT-SVID with the active JWT key.
    pub fn mint_jwt_svid(
        &self,
        sub: &SpiffeId,
        audience: &[String],
        ttl_secs: u64,
    ) -> Result<MintedJwt, CaManagerError> {
        Ok(self.signing.load().jwt.mint(
            sub,
            audience,
            ttl_secs,
            self.jwt_issuer.get().map(String::as_str),
            self.clock.now(),
        )?)
    }

    /// Mints a token for token exchange (a JWT-SVID or an access token) with the active JWT
    /// authority, carrying `iss` when an issuer is set.
    pub fn mint_exchanged(
        &self,
        claims: &sigil_ca::ExchangedClaims<'_>,
    ) -> Result<MintedJwt, CaManagerError> {
        Ok(self.signing.load().jwt.mint_exchanged(
            claims,
            self.jwt_issuer.get().map(String::as_str),
            self.clock.now(),
        )?)
    }

    /// The OIDC issuer URL JWTs carry as `iss`, once set.
    pub fn jwt_issuer(&self) -> Option<&str> {
        self.jwt_issuer.get().map(String::as_str)
    }
}
