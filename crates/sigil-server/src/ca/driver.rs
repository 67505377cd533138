//! The thin driver of the authority life cycle: reads the authority records, asks the pure
//! [`sigil_ca::lifecycle::plan`] what is due, and applies it: generating keys, creating records,
//! moving states by compare-and-swap, deleting expired authorities with their keys. It decides
//! nothing itself.
//!
//! Ticks are serialised by one lock that covers only the life cycle (never issuance or bundle
//! reads). Another replica on the same store is handled by the compare-and-swap: a transition
//! that lost the race ends the round, and the next plan starts from what the store says.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use sigil_ca::lifecycle::{Action, AuthorityStatus, MAX_ROUNDS, plan};
use sigil_ca::operator::Command;
use sigil_ca::{JwtAuthority, UpstreamAuthority, X509Authority};
use sigil_keys::{KeyManager, PrivateKey};
use sigil_spiffe::time::unix_secs;
use sigil_spiffe::{AuthorityKind, AuthorityState, TrustDomain};
use sigil_store::{AuthorityRecord, Datastore, StoreError};
use tokio::sync::Mutex;

use super::signing::Signing;
use super::{CaLifetimes, CaManagerError};

/// Applies the life cycle's actions to the store and the key manager.
pub(super) struct LifecycleDriver {
    trust_domain: TrustDomain,
    /// This server replica: it plans, rotates and signs with its own authorities only.
    replica: String,
    keys: Arc<dyn KeyManager>,
    store: Arc<dyn Datastore>,
    lifetimes: CaLifetimes,
    /// The upstream authority that signs this replica's roots, when one is configured.
    upstream: Option<Arc<UpstreamAuthority>>,
    /// Serialises ticks; holds the private keys already loaded, by key-manager name, so a tick
    /// does not read every key again.
    loaded: Mutex<HashMap<String, Arc<PrivateKey>>>,
}

impl LifecycleDriver {
    pub(super) fn new(
        trust_domain: TrustDomain,
        replica: String,
        keys: Arc<dyn KeyManager>,
        store: Arc<dyn Datastore>,
        lifetimes: CaLifetimes,
        upstream: Option<Arc<UpstreamAuthority>>,
    ) -> Self {
        Self {
            trust_domain,
            replica,
            keys,
            store,
            lifetimes,
            upstream,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Plans and applies this replica's life cycle until nothing is due at `now`; returns every
    /// record (all replicas': the bundle trusts them all) as it is then and whether anything
    /// changed. Fails with `MissingKey` when this replica's active, unexpired root has no key.
    pub(super) async fn settle(
        &self,
        now: SystemTime,
    ) -> Result<(Vec<AuthorityRecord>, bool), CaManagerError> {
        let mut loaded = self.loaded.lock().await;
        let secs = unix_secs(now);
        let mut changed = false;
        for _ in 0..=MAX_ROUNDS {
            let all = self.store.list_authorities().await?;
            let records = self.mine(&all);
            let statuses = self.statuses(&records, &mut loaded, secs)?;
            let actions = plan(&statuses, secs);
            if actions.is_empty() {
                return Ok((all, changed));
            }
            changed = true;
            for action in actions {
                match self.apply(&action, &records, &mut loaded, now).await {
                    Ok(_) => {}
                    Err(CaManagerError::Store(
                        e @ (StoreError::AuthorityStateConflict { .. }
                        | StoreError::NotFound { .. }),
                    )) => {
                        // Another writer moved first; plan again from what it did.
                        tracing::debug!(error = %e, "authority changed concurrently; replanning");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        tracing::warn!("authority life cycle did not settle; continuing on the next tick");
        Ok((self.store.list_authorities().await?, changed))
    }

    /// Carries out an operator command at `now`, serialised with the ticks; returns the id of the
    /// authority it created (prepare) or moved (activate, taint, revoke). Refused with nothing
    /// changed when [`sigil_ca::operator::command`] refuses it; a transition that loses a race
    /// with another writer fails with the store's conflict error.
    pub(super) async fn run_command(
        &self,
        command: &Command,
        now: SystemTime,
    ) -> Result<String, CaManagerError> {
        let mut loaded = self.loaded.lock().await;
        let all = self.store.list_authorities().await?;
        let records = self.mine(&all);
        if let Some(other) = command_subject(command)
            .and_then(|id| all.iter().find(|r| r.id == id))
            .filter(|r| r.replica != self.replica)
        {
            return Err(CaManagerError::OtherReplica {
                id: other.id.clone(),
                replica: other.replica.clone(),
            });
        }
        let statuses = self.statuses(&records, &mut loaded, unix_secs(now))?;
        let actions = sigil_ca::operator::command(&statuses, command, unix_secs(now))?;
        let mut subject = None;
        // The command's own action comes first; the rest follow from it (the retired
        // predecessor of an activated authority).
        for action in actions {
            let id = self.apply(&action, &records, &mut loaded, now).await?;
            subject.get_or_insert(id);
        }
        subject.ok_or_else(|| CaManagerError::UnknownAuthority("named by the command".to_owned()))
    }

    /// The active authorities of `records`, reusing those of `current` that did not change.
    pub(super) async fn load_signing(
        &self,
        records: &[AuthorityRecord],
        current: Option<&Signing>,
    ) -> Result<Signing, CaManagerError> {
        let mut loaded = self.loaded.lock().await;
        let active = |kind| {
            super::signing::active(records, kind).ok_or(CaManagerError::NoActiveAuthority(kind))
        };
        let [root_id, intermediate_id, jwt_id] = current.map(Signing::ids).unwrap_or_default();
        let root = active(AuthorityKind::X509Root)?;
        let root = match current {
            Some(c) if root_id == root.id => c.root.clone(),
            _ => Arc::new(self.x509_authority(root, records, &mut loaded)?),
        };
        let intermediate = active(AuthorityKind::X509Intermediate)?;
        let intermediate = match current {
            Some(c) if intermediate_id == intermediate.id => c.intermediate.clone(),
            _ => Arc::new(self.x509_authority(intermediate, records, &mut loaded)?),
        };
        let jwt = active(AuthorityKind::Jwt)?;
        let jwt = match current {
            Some(c) if jwt_id == jwt.id => c.jwt.clone(),
            _ => {
                let key = self
                    .key(&jwt.key_id, &mut loaded)?
                    .ok_or_else(|| CaManagerError::MissingKey(jwt.key_id.clone()))?;
                Arc::new(JwtAuthority::new(jwt.id.clone(), key, jwt.not_after))
            }
        };
        Ok(Signing {
            root,
            intermediate,
            jwt,
        })
    }

    /// This server replica, as its authority records name it.
    pub(super) fn replica(&self) -> &str {
        &self.replica
    }

    /// This replica's authorities among `records`.
    pub(super) fn mine(&self, records: &[AuthorityRecord]) -> Vec<AuthorityRecord> {
        records
            .iter()
            .filter(|r| r.replica == self.replica)
            .cloned()
            .collect()
    }

    /// The X.509 authorities of `records` that sign CRLs at `now`, with their records: every
    /// root and intermediate that is neither revoked nor expired and whose key is at hand (an
    /// old intermediate still vouches for the unexpired SVIDs it signed). An authority whose key
    /// is gone is skipped with a warning: its CRL cannot be signed.
    pub(super) async fn crl_signers(
        &self,
        records: &[AuthorityRecord],
        now: i64,
    ) -> Vec<(AuthorityRecord, X509Authority)> {
        let mut loaded = self.loaded.lock().await;
        let mut signers = Vec::new();
        for record in records
            .iter()
            .filter(|r| r.replica == self.replica && super::crls::signs_crls(r, now))
        {
            match self.x509_authority(record, records, &mut loaded) {
                Ok(authority) => signers.push((record.clone(), authority)),
                Err(e) => {
                    tracing::warn!(authority = %record.id, error = %e, "cannot sign this authority's CRL");
                }
            }
        }
        signers
    }

    /// What the life cycle needs of each record. Only prepared and active authorities are asked
    /// for their key.
    fn statuses(
        &self,
        records: &[AuthorityRecord],
        loaded: &mut HashMap<String, Arc<PrivateKey>>,
        now: i64,
    ) -> Result<Vec<AuthorityStatus>, CaManagerError> {
        records
            .iter()
            .map(|r| {
                let key_available = match r.state {
                    AuthorityState::Prepared | AuthorityState::Active => {
                        self.key(&r.key_id, loaded)?.is_some()
                    }
                    AuthorityState::Old | AuthorityState::Tainted | AuthorityState::Revoked => {
                        false
                    }
                };
                let root_in_use = r.kind == AuthorityKind::X509Root
                    && r.state == AuthorityState::Active
                    && r.not_after > now;
                if root_in_use && !key_available {
                    return Err(CaManagerError::MissingKey(r.key_id.clone()));
                }
                if !key_available && r.state == AuthorityState::Active && r.not_after > now {
                    tracing::warn!(authority = %r.id, kind = %r.kind, "key of the active authority is missing; replacing it");
                }
                Ok(status(r, key_available))
            })
            .collect()
    }

    /// Applies `action`; returns the id of the authority it created or changed.
    async fn apply(
        &self,
        action: &Action,
        records: &[AuthorityRecord],
        loaded: &mut HashMap<String, Arc<PrivateKey>>,
        now: SystemTime,
    ) -> Result<String, CaManagerError> {
        let record = |id: &str| {
            records
                .iter()
                .find(|r| r.id == id)
                .ok_or_else(|| CaManagerError::UnknownAuthority(id.to_owned()))
        };
        match action {
            Action::Prepare { kind, issuer_id } => {
                let issuer = issuer_id.as_deref().map(record).transpose()?;
                let created = self.prepare(*kind, issuer, records, loaded, now)?;
                let id = created.id.clone();
                self.store.create_authority(created).await?;
                tracing::info!(authority = %id, kind = %kind, "prepared authority");
                Ok(id)
            }
            Action::Activate { id } => {
                self.store
                    .set_authority_state(id, AuthorityState::Prepared, AuthorityState::Active)
                    .await?;
                tracing::info!(authority = %id, "activated authority");
                Ok(id.clone())
            }
            Action::Retire { id } => {
                self.store
                    .set_authority_state(id, AuthorityState::Active, AuthorityState::Old)
                    .await?;
                tracing::info!(authority = %id, "retired authority; trusted until it expires");
                Ok(id.clone())
            }
            Action::Taint { id } => {
                self.store
                    .set_authority_state(id, AuthorityState::Old, AuthorityState::Tainted)
                    .await?;
                tracing::warn!(authority = %id, "tainted authority; what it signed is replaced");
                Ok(id.clone())
            }
            Action::Revoke { id } => {
                self.store
                    .set_authority_state(id, AuthorityState::Tainted, AuthorityState::Revoked)
                    .await?;
                tracing::warn!(authority = %id, "revoked authority; removed from the bundle");
                Ok(id.clone())
            }
            Action::Drop { id } => {
                let gone = self.store.delete_authority(id).await?;
                loaded.remove(&gone.key_id);
                if let Err(e) = self.keys.delete(&gone.key_id) {
                    tracing::warn!(authority = %id, error = %e, "cannot delete the key of an expired authority");
                }
                tracing::info!(authority = %id, "dropped expired authority");
                Ok(id.clone())
            }
        }
    }

    /// Generates a key and builds the record of a new prepared authority of `kind`.
    fn prepare(
        &self,
        kind: AuthorityKind,
        issuer: Option<&AuthorityRecord>,
        records: &[AuthorityRecord],
        loaded: &mut HashMap<String, Arc<PrivateKey>>,
        now: SystemTime,
    ) -> Result<AuthorityRecord, CaManagerError> {
        let secs = unix_secs(now);
        let key_id = new_key_id(kind)?;
        let (id, cert_der, public_key_der, not_after) = match (kind, issuer) {
            (AuthorityKind::X509Root, _) => {
                let key = self.keys.generate(&key_id)?;
                loaded.insert(key_id.clone(), key.clone());
                let root = match &self.upstream {
                    Some(upstream) => sigil_ca::upstream_signed_root(
                        &self.trust_domain,
                        key,
                        upstream,
                        self.lifetimes.root_ttl,
                        now,
                    )?,
                    None => sigil_ca::self_signed_root(
                        &self.trust_domain,
                        key,
                        self.lifetimes.root_ttl,
                        now,
                    )?,
                };
                x509_parts(&root)
            }
            (AuthorityKind::X509Intermediate, Some(issuer)) => {
                let root = self.x509_authority(issuer, records, loaded)?;
                let key = self.keys.generate(&key_id)?;
                loaded.insert(key_id.clone(), key.clone());
                let ca = sigil_ca::intermediate(
                    &self.trust_domain,
                    key,
                    &root,
                    self.lifetimes.intermediate_ttl,
                    now,
                )?;
                x509_parts(&ca)
            }
            (AuthorityKind::X509Intermediate, None) => {
                return Err(CaManagerError::UnknownAuthority(
                    "issuer of a new intermediate".to_owned(),
                ));
            }
            (AuthorityKind::Jwt, _) => {
                let kid = sigil_ca::new_kid()?;
                let key = self.keys.generate(&key_id)?;
                loaded.insert(key_id.clone(), key.clone());
                let ttl = i64::try_from(self.lifetimes.jwt_key_ttl).unwrap_or(i64::MAX);
                let spki = key.public_key().spki_der().to_vec();
                (kid, None, spki, secs.saturating_add(ttl))
            }
        };
        Ok(AuthorityRecord {
            id,
            kind,
            state: AuthorityState::Prepared,
            cert_der,
            public_key_der,
            key_id,
            issuer_id: issuer.map(|r| r.id.clone()),
            not_before: secs,
            not_after,
            created_at: secs,
            replica: self.replica.clone(),
        })
    }

    /// The X.509 authority of `record` with its private key and the chain between it and the
    /// trust anchor (found among `records` and the upstream: the chain is not stored).
    fn x509_authority(
        &self,
        record: &AuthorityRecord,
        records: &[AuthorityRecord],
        loaded: &mut HashMap<String, Arc<PrivateKey>>,
    ) -> Result<X509Authority, CaManagerError> {
        let key = self
            .key(&record.key_id, loaded)?
            .ok_or_else(|| CaManagerError::MissingKey(record.key_id.clone()))?;
        let cert = record
            .cert_der
            .clone()
            .ok_or_else(|| CaManagerError::MissingCertificate(record.id.clone()))?;
        let chain = match record.kind {
            AuthorityKind::X509Root => self.above_root(record),
            AuthorityKind::X509Intermediate | AuthorityKind::Jwt => record
                .issuer_id
                .as_deref()
                .and_then(|id| records.iter().find(|r| r.id == id))
                .map(|root| self.through_root(root))
                .unwrap_or_default(),
        };
        Ok(X509Authority::from_parts(cert, key, chain)?)
    }

    /// The certificates between root `record` and the trust anchor: none for a self-signed root,
    /// the upstream's chain for one the configured upstream signed.
    fn above_root(&self, record: &AuthorityRecord) -> Vec<Vec<u8>> {
        let Some(cert) = record.cert_der.as_deref() else {
            return Vec::new();
        };
        match &self.upstream {
            Some(upstream) if upstream.issued(cert) => upstream.chain_for_issued(),
            _ => {
                if !sigil_ca::is_self_signed(cert) {
                    tracing::warn!(authority = %record.id, "root was signed by an upstream authority that is not configured now; its chain ends at the root");
                }
                Vec::new()
            }
        }
    }

    /// The certificates something issued by an authority under root `record` chains through
    /// above that authority: the root itself unless it is self-signed, then its upstream chain.
    fn through_root(&self, record: &AuthorityRecord) -> Vec<Vec<u8>> {
        match record.cert_der.as_deref() {
            Some(cert) if !sigil_ca::is_self_signed(cert) => {
                let mut chain = vec![cert.to_vec()];
                chain.extend(self.above_root(record));
                chain
            }
            _ => Vec::new(),
        }
    }

    /// The private key named `key_id`, from memory or else from the key manager.
    fn key(
        &self,
        key_id: &str,
        loaded: &mut HashMap<String, Arc<PrivateKey>>,
    ) -> Result<Option<Arc<PrivateKey>>, CaManagerError> {
        if let Some(key) = loaded.get(key_id) {
            return Ok(Some(key.clone()));
        }
        let key = self.keys.load(key_id)?;
        if let Some(key) = &key {
            loaded.insert(key_id.to_owned(), key.clone());
        }
        Ok(key)
    }
}

/// The authority an operator command names, if it names one.
fn command_subject(command: &Command) -> Option<&str> {
    match command {
        Command::Prepare { .. } => None,
        Command::Activate { id } | Command::Taint { id } | Command::Revoke { id } => Some(id),
    }
}

/// What the life cycle needs of `record`, given whether its key is at hand.
pub(super) fn status(record: &AuthorityRecord, key_available: bool) -> AuthorityStatus {
    AuthorityStatus {
        id: record.id.clone(),
        kind: record.kind,
        state: record.state,
        issuer_id: record.issuer_id.clone(),
        not_before: record.not_before,
        not_after: record.not_after,
        key_available,
    }
}

/// Id, certificate, public key and expiry of a new X.509 authority's record.
fn x509_parts(ca: &X509Authority) -> (String, Option<Vec<u8>>, Vec<u8>, i64) {
    (
        ca.subject_key_id(),
        Some(ca.cert_der().to_vec()),
        ca.key().public_key().spki_der().to_vec(),
        ca.not_after(),
    )
}

/// A fresh key-manager name for a new authority's private key.
fn new_key_id(kind: AuthorityKind) -> Result<String, CaManagerError> {
    let prefix = match kind {
        AuthorityKind::X509Root => "root",
        AuthorityKind::X509Intermediate => "x509",
        AuthorityKind::Jwt => "jwt",
    };
    let random = sigil_keys::random_bytes(12)?;
    Ok(format!("{prefix}-{}", sigil_keys::digest::hex(&random)))
}
