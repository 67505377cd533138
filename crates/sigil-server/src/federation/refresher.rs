//! Keeps every federated bundle fresh: for each federation relationship in the datastore, fetch
//! the peer's bundle endpoint when its bundle's `spiffe_refresh_hint` says (bounded below and
//! above), authenticate the endpoint as the relationship's profile says (`https_web`: the web
//! PKI; `https_spiffe`: the peer's current bundle and the endpoint's SPIFFE ID), and store what
//! it serves when it is newer. A failed refresh keeps the last good bundle, is logged and
//! counted, and is tried again sooner. Relationships added, changed or deleted (here or on
//! another replica) are picked up through the change feed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sigil_spiffe::{Clock, TrustBundle, TrustDomain};
use sigil_store::{
    BundleEndpointProfile, Datastore, FederationRelationship, Outcome, StoredBundle,
};
use sigil_tls::{HttpsServerAuth, TlsPolicy};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::ForeignBundles;
use super::fetch::{EndpointUrl, FetchError, fetch_bundle};
use crate::metrics::{Metrics, RefreshLabel};

/// Shortest wait between two refreshes of one bundle, whatever its hint says.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
/// Longest wait between two refreshes of one bundle, whatever its hint says.
pub const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// The wait when a bundle gives no hint.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The wait after a failed refresh (or the hint, if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);
/// How often the relationships are read again even without a change-feed wake.
const RELOAD_EVERY: Duration = Duration::from_secs(300);

/// What one refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// A newer bundle was stored, with this sequence.
    Updated { sequence: u64 },
    /// The endpoint served what is already held.
    Unchanged { sequence: u64 },
}

/// Why a refresh failed (the last good bundle stays).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("no federation relationship with `{0}`")]
    Unknown(String),
    #[error(
        "no bundle of `{0}` to authenticate its https_spiffe endpoint with: give a bootstrap bundle"
    )]
    NoBootstrap(String),
    #[error("relationship with `{0}` (https_spiffe) has no endpoint SPIFFE ID")]
    NoEndpointId(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the bundle's sequence went backwards: {fetched} after {held}")]
    SequenceBackwards { held: u64, fetched: u64 },
    #[error("datastore: {0}")]
    Store(#[from] sigil_store::StoreError),
    #[error("cannot encode the bundle: {0}")]
    Encode(String),
    #[error("the refresher has stopped")]
    Stopped,
}

/// Asks the running refresher to refresh one relationship now.
#[derive(Debug, Clone)]
pub struct RefreshHandle {
    requests: mpsc::Sender<(TrustDomain, oneshot::Sender<Result<Refreshed, String>>)>,
    statuses: RefreshStatuses,
}

impl RefreshHandle {
    /// Refreshes the bundle of `trust_domain` now and waits for the outcome.
    pub async fn refresh_now(&self, trust_domain: TrustDomain) -> Result<Refreshed, String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((trust_domain, tx))
            .await
            .map_err(|_| RefreshError::Stopped.to_string())?;
        rx.await.map_err(|_| RefreshError::Stopped.to_string())?
    }

    /// What the refresher knows of each relationship's refreshes (read-only for callers; the
    /// governance findings read it).
    pub fn statuses(&self) -> RefreshStatuses {
        self.statuses.clone()
    }
}

/// Longest refresh error kept in a [`RefreshStatus`], in characters.
const MAX_STATUS_ERROR_CHARS: usize = 512;

/// How the refreshes of one relationship went, as this replica saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshStatus {
    /// Unix seconds of the last refresh attempt.
    pub last_attempt: i64,
    /// Unix seconds of the last successful refresh; `None` if none succeeded yet.
    pub last_success: Option<i64>,
    /// Failed refreshes since the last success (0 when the last one succeeded).
    pub consecutive_failures: u32,
    /// Why the last refresh failed (cut to 512 characters); `None` when it succeeded.
    pub last_error: Option<String>,
}

/// The refresh status of every relationship the refresher has tried, shared between the
/// refresher (which writes it after each refresh) and its readers. Holds one small record per
/// relationship; relationships deleted from the store are forgotten at the next reload.
#[derive(Debug, Clone, Default)]
pub struct RefreshStatuses(Arc<std::sync::Mutex<BTreeMap<TrustDomain, RefreshStatus>>>);

impl RefreshStatuses {
    /// A copy of every status, by trust domain.
    pub fn snapshot(&self) -> BTreeMap<TrustDomain, RefreshStatus> {
        self.lock().clone()
    }

    /// Records a refresh of `trust_domain` at `at` (Unix seconds) that succeeded (`Ok`) or
    /// failed with the given reason.
    pub fn record(&self, trust_domain: &TrustDomain, at: i64, outcome: Result<(), &str>) {
        let mut statuses = self.lock();
        let status = statuses
            .entry(trust_domain.clone())
            .or_insert(RefreshStatus {
                last_attempt: at,
                last_success: None,
                consecutive_failures: 0,
                last_error: None,
            });
        status.last_attempt = at;
        match outcome {
            Ok(()) => {
                status.last_success = Some(at);
                status.consecutive_failures = 0;
                status.last_error = None;
            }
            Err(reason) => {
                status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                status.last_error = Some(reason.chars().take(MAX_STATUS_ERROR_CHARS).collect());
            }
        }
    }

    /// Forgets the relationships `keep` refuses.
    fn retain(&self, keep: impl Fn(&TrustDomain) -> bool) {
        self.lock().retain(|td, _| keep(td));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TrustDomain, RefreshStatus>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The refresher's inputs.
pub struct Refresher {
    pub store: Arc<dyn Datastore>,
    pub foreign: Arc<ForeignBundles>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub policy: TlsPolicy,
    /// Trust anchors for `https_web` endpoints: the system's, in production.
    pub web_roots: Arc<Vec<Vec<u8>>>,
    /// Longest one fetch may take ([`super::fetch::FETCH_TIMEOUT`] in production).
    pub fetch_timeout: Duration,
    /// Where each refresh is recorded.
    pub audit: crate::audit::AuditLog,
}

impl Refresher {
    /// Starts the refresher; returns the handle to ask for refreshes and the task's future,
    /// which runs until `stop` turns `true`.
    pub fn start(
        self,
        changed: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> (RefreshHandle, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::channel(16);
        let statuses = RefreshStatuses::default();
        let handle = RefreshHandle {
            requests: tx,
            statuses: statuses.clone(),
        };
        (handle, self.run(changed, rx, stop, statuses))
    }

    async fn run(
        self,
        changed: Arc<Notify>,
        mut requests: mpsc::Receiver<(TrustDomain, oneshot::Sender<Result<Refreshed, String>>)>,
        mut stop: watch::Receiver<bool>,
        statuses: RefreshStatuses,
    ) {
        let mut relationships: BTreeMap<TrustDomain, FederationRelationship> = BTreeMap::new();
        let mut due: BTreeMap<TrustDomain, Instant> = BTreeMap::new();
        let mut reload_at = Instant::now();
        loop {
            if Instant::now() >= reload_at {
                match self.store.list_federations().await {
                    Ok(list) => {
                        relationships = list
                            .into_iter()
                            .map(|r| (r.trust_domain.clone(), r))
                            .collect();
                        due.retain(|td, _| relationships.contains_key(td));
                        statuses.retain(|td| relationships.contains_key(td));
                        for td in relationships.keys() {
                            due.entry(td.clone()).or_insert_with(Instant::now);
                        }
                        reload_at = Instant::now() + RELOAD_EVERY;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the federation relationships");
                        reload_at = Instant::now() + RETRY_AFTER_FAILURE;
                    }
                }
            }
            let now = Instant::now();
            let ready: Vec<TrustDomain> = due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(td, _)| td.clone())
                .collect();
            for td in ready {
                let Some(relationship) = relationships.get(&td) else {
                    due.remove(&td);
                    continue;
                };
                let (outcome, next) = self.refresh(relationship).await;
                let reason = outcome.as_ref().err().map(ToString::to_string);
                statuses.record(
                    &td,
                    self.clock.unix_secs(),
                    reason.as_deref().map_or(Ok(()), Err),
                );
                if let Err(e) = &outcome {
                    tracing::warn!(trust_domain = %td, error = %e, "federated bundle refresh failed; keeping the last good bundle");
                }
                due.insert(td, Instant::now() + next);
            }
            let next_due = due
                .values()
                .min()
                .copied()
                .unwrap_or(reload_at)
                .min(reload_at);
            tokio::select! {
                () = tokio::time::sleep_until(next_due) => {}
                () = changed.notified() => reload_at = Instant::now(),
                request = requests.recv() => {
                    let Some((td, reply)) = request else { return };
                    // Read the relationship as stored now: the caller may have just changed it.
                    let outcome = match self.store.get_federation(td.as_str()).await {
                        Ok(Some(relationship)) => {
                            let (outcome, next) = self.refresh(&relationship).await;
                            let outcome = outcome.map_err(|e| e.to_string());
                            let reason = outcome.as_ref().err().map(String::as_str);
                            statuses.record(&td, self.clock.unix_secs(), reason.map_or(Ok(()), Err));
                            due.insert(td, Instant::now() + next);
                            outcome
                        }
                        Ok(None) => Err(RefreshError::Unknown(td.to_string()).to_string()),
                        Err(e) => Err(RefreshError::Store(e).to_string()),
                    };
                    let _ = reply.send(outcome);
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Refreshes one relationship; returns the outcome and when to refresh it next.
    async fn refresh(
        &self,
        relationship: &FederationRelationship,
    ) -> (Result<Refreshed, RefreshError>, Duration) {
        let td = &relationship.trust_domain;
        let held = self.foreign.get(td);
        let fetched = self.try_refresh(relationship, held.as_deref()).await;
        // The next refresh follows the hint of what was fetched (the held bundles follow the
        // change feed and may not show it yet).
        let fetched_hint = fetched.as_ref().ok().map(|(_, hint)| *hint);
        let outcome = fetched.map(|(refreshed, _)| refreshed);
        let label = |result| RefreshLabel {
            trust_domain: td.to_string(),
            result,
        };
        match &outcome {
            Ok(_) => {
                self.metrics
                    .federation_refreshes
                    .get_or_create(&label("ok"))
                    .inc();
                #[allow(
                    clippy::cast_precision_loss,
                    reason = "Unix seconds fit a float's mantissa for millennia"
                )]
                self.metrics
                    .federation_last_success
                    .get_or_create(&label("ok"))
                    .set(self.clock.unix_secs() as f64);
            }
            Err(_) => {
                self.metrics
                    .federation_refreshes
                    .get_or_create(&label("error"))
                    .inc();
            }
        }
        let draft = match &outcome {
            Ok(refreshed) => self
                .audit
                .event(
                    "sigil-server",
                    "federation.refresh",
                    td.as_str(),
                    Outcome::Success,
                )
                .detail("result", format!("{refreshed:?}")),
            Err(e) => self
                .audit
                .event(
                    "sigil-server",
                    "federation.refresh",
                    td.as_str(),
                    Outcome::Failure,
                )
                .detail("error", e.to_string()),
        };
        self.audit.record_detached(draft);
        let hint = match (fetched_hint, held.as_deref()) {
            (Some(hint), _) => hint,
            (None, Some(b)) => hint_of(b).min(RETRY_AFTER_FAILURE),
            (None, None) => RETRY_AFTER_FAILURE,
        };
        (outcome, hint.clamp(MIN_REFRESH, MAX_REFRESH))
    }

    /// Fetches and stores the bundle of `relationship`; returns what happened and the hint of
    /// the bundle fetched.
    async fn try_refresh(
        &self,
        relationship: &FederationRelationship,
        held: Option<&TrustBundle>,
    ) -> Result<(Refreshed, Duration), RefreshError> {
        let td = &relationship.trust_domain;
        let auth = match relationship.profile {
            BundleEndpointProfile::HttpsWeb => HttpsServerAuth::WebPki((*self.web_roots).clone()),
            BundleEndpointProfile::HttpsSpiffe => {
                let expected = relationship
                    .endpoint_spiffe_id
                    .clone()
                    .ok_or_else(|| RefreshError::NoEndpointId(td.to_string()))?;
                let roots = held
                    .map(|b| b.x509_authorities.clone())
                    .filter(|roots| !roots.is_empty())
                    .ok_or_else(|| RefreshError::NoBootstrap(td.to_string()))?;
                HttpsServerAuth::Spiffe { roots, expected }
            }
        };
        let url = EndpointUrl::parse(&relationship.bundle_endpoint_url)?;
        let fetched = fetch_bundle(&url, td, &auth, self.policy, self.fetch_timeout).await?;
        if let Some(held) = held
            && fetched.sequence < held.sequence
        {
            return Err(RefreshError::SequenceBackwards {
                held: held.sequence,
                fetched: fetched.sequence,
            });
        }
        let document = sigil_keys::bundle_json::to_document(&fetched)
            .map_err(|e| RefreshError::Encode(e.to_string()))?;
        let stored = StoredBundle {
            trust_domain: td.clone(),
            document: document.to_json(),
            sequence: fetched.sequence,
            updated_at: self.clock.unix_secs(),
        };
        let same_content = held.is_some_and(|h| same_trust(h, &fetched));
        let wrote = if fetched.sequence == 0 && !same_content {
            // A peer without sequence numbers: its content is all there is to compare.
            self.store.put_bundle(stored).await?;
            true
        } else {
            self.store.put_bundle_if_newer(stored).await?
        };
        let hint = hint_of(&fetched);
        if wrote {
            tracing::info!(trust_domain = %td, sequence = fetched.sequence, "stored a newer federated bundle");
            Ok((
                Refreshed::Updated {
                    sequence: fetched.sequence,
                },
                hint,
            ))
        } else {
            Ok((
                Refreshed::Unchanged {
                    sequence: fetched.sequence,
                },
                hint,
            ))
        }
    }
}

/// The refresh interval a bundle asks for.
fn hint_of(bundle: &TrustBundle) -> Duration {
    match bundle.refresh_hint {
        0 => DEFAULT_REFRESH,
        secs => Duration::from_secs(secs),
    }
}

/// Whether two bundles trust the same keys.
fn same_trust(a: &TrustBundle, b: &TrustBundle) -> bool {
    a.x509_authorities == b.x509_authorities && a.jwt_authorities == b.jwt_authorities
}
