//! The Cedar policy set in force on this server ([`sigil_policy::PolicyEngine`]), where it comes
//! from, and its reloads: from the `[policy] dir` directory at start (an invalid set stops
//! start-up), then again on `SIGHUP` ([`Policies::reload`], called by the binary) and whenever a
//! file in the directory changes ([`watch_dir`] polls a fingerprint of names, sizes and
//! modification times). An invalid reload keeps the set in force, logs the error with its
//! `file:line:column` and counts it; a valid one is swapped in atomically, so no decision sees a
//! half-loaded set, and wakes every agent's sync stream (the message carries the new hash), so
//! agents ask again at once for SVIDs a policy withheld.
//!
//! Without a directory the built-in default applies: issuance as the registration entries say
//! and exchange as `[oauth]` says, as in plain SPIFFE.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sigil_policy::{
    Decision, DecisionRequest, LoadedPolicies, PolicyEngine, PolicyError, Principal,
};
use sigil_store::Outcome;
use tokio::sync::watch;

use crate::audit::{AuditLog, DecisionAudit};
use crate::metrics::Metrics;

/// How often [`watch_dir`] looks at the directory.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The policy set in force and where it is reloaded from.
pub struct Policies {
    engine: PolicyEngine,
    dir: Option<PathBuf>,
    version: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    /// Serialises reloads (SIGHUP and the watcher may race); decisions never wait on it.
    reloading: std::sync::Mutex<()>,
    /// Where decisions (as configured) and reloads are recorded; set once the log is started.
    audit: std::sync::OnceLock<AuditLog>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("dir", &self.dir)
            .field("hash", &self.hash())
            .finish()
    }
}

impl Policies {
    /// The set of `dir` (strictly validated), or the built-in default without one. Fails with
    /// the first error, located as `file:line:column`.
    pub fn load(dir: Option<&Path>, metrics: Arc<Metrics>) -> Result<Self, PolicyError> {
        let loaded = match dir {
            Some(dir) => sigil_policy::load_dir(dir)?,
            None => LoadedPolicies::builtin_default()?,
        };
        tracing::info!(
            hash = loaded.hash(),
            policies = loaded.len(),
            dir = ?dir,
            "policy set loaded"
        );
        metrics
            .policies
            .set(i64::try_from(loaded.len()).unwrap_or(i64::MAX));
        Ok(Self {
            engine: PolicyEngine::new(loaded),
            dir: dir.map(Path::to_path_buf),
            version: watch::channel(0).0,
            metrics,
            reloading: std::sync::Mutex::new(()),
            audit: std::sync::OnceLock::new(),
        })
    }

    /// Records decisions (those [`AuditLog::decisions`] asks for) and reloads in `audit` from
    /// now on. Only the first call has an effect.
    pub fn set_audit(&self, audit: AuditLog) {
        let _ = self.audit.set(audit);
    }

    /// Records `decision` on `request` when the audit configuration asks for it.
    fn audit_decision(&self, request: &DecisionRequest, decision: &Decision) {
        let Some(audit) = self.audit.get() else {
            return;
        };
        let wanted = match audit.decisions() {
            DecisionAudit::None => false,
            DecisionAudit::Deny => !decision.allowed,
            DecisionAudit::All => true,
        };
        if !wanted {
            return;
        }
        let actor = match &request.principal {
            Principal::Workload { spiffe_id, .. } => spiffe_id.to_string(),
            Principal::Agent(agent) => agent.spiffe_id.to_string(),
            Principal::External {
                issuer, subject, ..
            } => format!("{issuer}#{subject}"),
        };
        let outcome = if decision.allowed {
            Outcome::Success
        } else {
            Outcome::Denied
        };
        audit.record_detached(
            audit
                .event(&actor, "policy.decide", &request.resource.id, outcome)
                .detail("action", request.action.clone())
                .detail("resource_kind", request.resource.kind.clone())
                .detail("policies", decision.policies.clone())
                .detail("errors", decision.errors.clone())
                .detail("policy_hash", decision.policy_hash.clone()),
        );
    }

    /// The decision on `request` at Unix time `now`, by the set in force. The built-in default
    /// permits every built-in action and nothing else; while it is in force, issuance and
    /// exchange are allowed without evaluating it (it says so itself; a Cedar evaluation costs
    /// tens of microseconds that plain SPIFFE issuance should not pay).
    pub fn decide(&self, request: &DecisionRequest, now: i64) -> Decision {
        let decision = self.decide_unaudited(request, now);
        self.audit_decision(request, &decision);
        decision
    }

    fn decide_unaudited(&self, request: &DecisionRequest, now: i64) -> Decision {
        let current = self.engine.current();
        if current.hash() == sigil_policy::DEFAULT_POLICY_HASH {
            let id = match request.action.as_str() {
                "IssueX509Svid" | "IssueJwtSvid" => Some("default:issue"),
                "Exchange" => Some("default:exchange"),
                _ => None,
            };
            if let Some(id) = id {
                return Decision {
                    allowed: true,
                    policies: vec![id.to_owned()],
                    errors: Vec::new(),
                    policy_hash: current.hash().to_owned(),
                };
            }
        }
        current.decide(request, now)
    }

    /// The set in force.
    pub fn current(&self) -> Arc<LoadedPolicies> {
        self.engine.current()
    }

    /// The hash of the set in force.
    pub fn hash(&self) -> String {
        self.engine.current().hash().to_owned()
    }

    /// The directory reloads read, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A receiver that changes whenever another set is swapped in.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Reads the directory again: the new set's hash, or the error (the set in force stays).
    /// Without a directory there is nothing to reload: the default's hash.
    pub fn reload(&self) -> Result<String, PolicyError> {
        let Some(dir) = &self.dir else {
            return Ok(self.hash());
        };
        let _one_at_a_time = self.reloading.lock();
        let before = self.hash();
        let outcome = self.engine.reload_from(dir);
        if let Some(audit) = self.audit.get() {
            let draft = match &outcome {
                Ok(hash) => audit
                    .event(
                        "sigil-server",
                        "policy.reload",
                        &dir.display().to_string(),
                        Outcome::Success,
                    )
                    .detail("hash", hash.clone())
                    .detail("previous_hash", before.clone()),
                Err(e) => audit
                    .event(
                        "sigil-server",
                        "policy.reload",
                        &dir.display().to_string(),
                        Outcome::Failure,
                    )
                    .detail("error", e.to_string())
                    .detail("kept_hash", before.clone()),
            };
            audit.record_detached(draft);
        }
        match outcome {
            Ok(hash) => {
                self.metrics.policy_reload("ok");
                let current = self.engine.current();
                self.metrics
                    .policies
                    .set(i64::try_from(current.len()).unwrap_or(i64::MAX));
                if hash != before {
                    tracing::info!(%hash, policies = current.len(), "policy set reloaded");
                    self.version.send_modify(|v| *v = v.wrapping_add(1));
                }
                Ok(hash)
            }
            Err(e) => {
                self.metrics.policy_reload("error");
                tracing::error!(error = %e, kept = %before, "policy reload refused; the set in force stays");
                Err(e)
            }
        }
    }
}

/// A fingerprint of the policy directory: every `.cedar` and `.cedarschema` file's name, size
/// and modification time. `None` when the directory cannot be read.
fn fingerprint(dir: &Path) -> Option<Vec<(String, u64, Option<std::time::SystemTime>)>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".cedar") || name.ends_with(".cedarschema")) {
                return None;
            }
            let meta = entry.metadata().ok()?;
            Some((name, meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    Some(files)
}

/// Reloads `policies` whenever a file of its directory changes, until `shutdown` fires. Without
/// a directory there is nothing to watch: it waits for `shutdown` (a server task that ends early
/// counts as a failure).
pub async fn watch_dir(policies: Arc<Policies>, mut shutdown: watch::Receiver<bool>) {
    let Some(dir) = policies.dir().map(Path::to_path_buf) else {
        let _ = shutdown.changed().await;
        return;
    };
    let mut seen = fingerprint(&dir);
    loop {
        tokio::select! {
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let now = fingerprint(&dir);
        if now != seen {
            seen = now;
            let policies = policies.clone();
            // Parsing and validating may take a while for a large set: off the async threads.
            let _ = tokio::task::spawn_blocking(move || policies.reload()).await;
        }
    }
}
