//! [`Credentials`]: the one place brokered database credentials are created, renewed and revoked.
//! Every path (the public `/creds/v1` endpoints, the agent's credentials RPCs, the admin API, the
//! expiry task, entry deletion and agent bans) goes through it, so policy, the lease record and
//! the audit log attach here.
//!
//! Order of a creation, chosen so that a crash at any point leaves nothing behind for good: the
//! policy decides; the lease is stored (active, with its expiry); only then is the user created
//! in the target database. A crash after the user exists leaves a stored lease whose expiry
//! revokes it (revocation is idempotent, so a lease whose user was never created is revoked
//! harmlessly). A failed creation revokes at once.

use std::sync::Arc;
use std::time::Duration;

use sigil_api::DatabaseAddress;
use sigil_policy::{AgentRef, ContextInput, DecisionRequest, Principal, ResourceRef};
use sigil_spiffe::{Clock, SpiffeId};
use sigil_store::{Datastore, Lease, LeaseFilter, LeaseState, Outcome};
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

use super::CredentialsError;
use super::password::{PasswordPolicy, generate_username};
use super::targets::{LiveTarget, TargetRegistry};
use super::template::{Template, TemplateValues};
use crate::audit::AuditLog;
use crate::policy::Policies;

/// The Cedar action a workload needs on the role.
pub const REQUEST_CREDENTIAL_ACTION: &str = "RequestCredential";
/// The resource kind of a role in decisions.
pub const CREDENTIAL_ROLE_KIND: &str = "credential_role";
/// How long a replica holds a claim on a lease it revokes; a claim that runs out (the replica
/// died mid-way) makes the lease due again.
pub const REVOCATION_CLAIM_SECS: i64 = 120;
/// Longest the expiry task sleeps without looking (another replica may have created a lease
/// that is due sooner).
pub const EXPIRY_RESCAN: Duration = Duration::from_secs(30);
/// Leases revoked in one pass of the expiry task (it loops at once while there are more).
const EXPIRY_BATCH: u32 = 100;
/// Most leases one `revoke_matching` call revokes.
pub const MAX_REVOKE_MATCHING: usize = 10_000;

/// `[credentials]`: the targets of the configuration file and the password rules.
#[derive(Debug, Clone, Default)]
pub struct CredentialsConfig {
    pub targets: Vec<sigil_api::TargetSpec>,
    pub password: PasswordPolicy,
}

/// How a request reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The agent's credentials service, for an attested workload.
    Agent,
    /// The public endpoint, authenticated by the workload's X509-SVID.
    MutualTls,
    /// The public endpoint, authenticated by a JWT-SVID bearer.
    JwtSvid,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::MutualTls => "mtls",
            Self::JwtSvid => "jwt_svid",
        }
    }
}

/// The workload asking, as authenticated.
#[derive(Debug, Clone)]
pub struct Requester {
    pub spiffe_id: SpiffeId,
    /// The registration entry it is served under, when known.
    pub entry_id: Option<String>,
    /// The entry's owner (empty when unknown).
    pub owner: String,
    /// Attested selectors, `type:value` (empty through the public endpoint).
    pub selectors: Vec<String>,
    /// The entry's labels, `key=value` (empty when the entry is not known).
    pub labels: Vec<String>,
    /// The agent it came through.
    pub agent: Option<AgentRef>,
    pub source_address: Option<String>,
    pub via: Via,
}

/// A credential just created: the lease and the password, which exists nowhere else.
pub struct Issued {
    pub lease: Lease,
    pub password: Zeroizing<String>,
    pub address: DatabaseAddress,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("lease", &self.lease.id)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The wire form, as of `now`.
    pub fn to_wire(&self, now: i64) -> sigil_api::IssuedCredential {
        sigil_api::IssuedCredential {
            lease_id: self.lease.id.clone(),
            target: self.lease.target.clone(),
            role: self.lease.role.clone(),
            username: self.lease.username.clone(),
            password: self.password.to_string(),
            expires_at: self.lease.expires_at,
            max_expires_at: self.lease.max_expires_at,
            lease_duration: u64::try_from(self.lease.expires_at.saturating_sub(now)).unwrap_or(0),
            renewable: self.lease.expires_at < self.lease.max_expires_at,
            database: self.address.clone(),
        }
    }
}

/// Brokered database credentials: creation, renewal, revocation, expiry.
pub struct Credentials {
    registry: TargetRegistry,
    store: Arc<dyn Datastore>,
    clock: Arc<dyn Clock>,
    policies: Arc<Policies>,
    audit: AuditLog,
    password: PasswordPolicy,
    replica: String,
    /// Wakes the expiry task when a lease is created or renewed.
    wake: Notify,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks and opens the configured targets (nothing connects yet).
    pub fn new(
        config: CredentialsConfig,
        store: Arc<dyn Datastore>,
        clock: Arc<dyn Clock>,
        policies: Arc<Policies>,
        audit: AuditLog,
        replica: String,
    ) -> Result<Self, CredentialsError> {
        Ok(Self {
            registry: TargetRegistry::new(config.targets, store.clone())?,
            store,
            clock,
            policies,
            audit,
            password: config.password,
            replica,
            wake: Notify::new(),
        })
    }

    /// The targets.
    pub fn registry(&self) -> &TargetRegistry {
        &self.registry
    }

    /// The store the leases live in.
    pub fn store(&self) -> &Arc<dyn Datastore> {
        &self.store
    }

    /// Creates a credential of `role` on `target` for `requester`, lasting `ttl` seconds (the
    /// role's default when `None`).
    pub async fn issue(
        &self,
        requester: &Requester,
        target: &str,
        role: &str,
        ttl: Option<u64>,
    ) -> Result<Issued, CredentialsError> {
        let result = self.issue_unaudited(requester, target, role, ttl).await;
        if let Err(e) = &result {
            let outcome = match e {
                CredentialsError::Denied { .. } => Outcome::Denied,
                _ => Outcome::Failure,
            };
            self.audit.record_detached(
                self.audit
                    .event(
                        requester.spiffe_id.as_str(),
                        "credential.issue",
                        &format!("{target}/{role}"),
                        outcome,
                    )
                    .detail("via", requester.via.as_str())
                    .detail("error", e.to_string()),
            );
        }
        result
    }

    async fn issue_unaudited(
        &self,
        requester: &Requester,
        target_name: &str,
        role_name: &str,
        ttl: Option<u64>,
    ) -> Result<Issued, CredentialsError> {
        let live = self.registry.get(target_name).await?;
        let role =
            live.target
                .roles
                .get(role_name)
                .ok_or_else(|| CredentialsError::UnknownRole {
                    target: target_name.to_owned(),
                    role: role_name.to_owned(),
                })?;
        let ttl = match ttl {
            None | Some(0) => role.default_ttl,
            Some(t) if t > role.max_ttl => {
                return Err(CredentialsError::TtlTooLong {
                    requested: t,
                    max: role.max_ttl,
                });
            }
            Some(t) => t,
        };
        let now = self.clock.unix_secs();
        self.authorize(requester, &live, role_name, now)?;

        let username = generate_username(role_name).map_err(CredentialsError::Random)?;
        let password = self.password.generate().map_err(CredentialsError::Random)?;
        let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
        let max_ttl = i64::try_from(role.max_ttl).unwrap_or(i64::MAX);
        let lease = Lease {
            id: new_lease_id()?,
            target: target_name.to_owned(),
            role: role_name.to_owned(),
            spiffe_id: requester.spiffe_id.to_string(),
            entry_id: requester.entry_id.clone(),
            agent_id: requester.agent.as_ref().map(|a| a.spiffe_id.to_string()),
            username,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            max_expires_at: now.saturating_add(max_ttl),
            renewed_at: None,
            state: LeaseState::Active,
            claim_until: None,
            revoked_at: None,
            revoke_reason: None,
            replica: self.replica.clone(),
        };
        self.store.create_lease(lease.clone()).await?;
        self.wake.notify_one();
        let expiration = expiration(lease.expires_at);
        let values = TemplateValues {
            name: &lease.username,
            password: &password,
            expiration: &expiration,
        };
        if let Err(e) = live.database.create_user(&role.creation, &values).await {
            let error = CredentialsError::Database {
                target: target_name.to_owned(),
                source: e,
            };
            // Nothing half-created stays. When the database was never reached (or refused the
            // login), no statement ran: the lease is closed without it. Otherwise whatever the
            // statements before the failing one made is dropped; if even that fails, the lease
            // stays due and the expiry task retries.
            let cleanup = match &error {
                CredentialsError::Database {
                    source:
                        super::database::DatabaseError::Unreachable { .. }
                        | super::database::DatabaseError::Authentication { .. },
                    ..
                } => self.close_unused_lease(&lease, "creation failed").await,
                _ => {
                    self.revoke_claimed_lease(&lease, "creation failed", "sigil")
                        .await
                }
            };
            if let Err(cleanup) = cleanup {
                tracing::warn!(lease = %lease.id, error = %cleanup, "cannot clean up after a failed creation; the expiry task will retry");
            }
            return Err(error);
        }
        let recorded = self
            .audit
            .record(
                self.audit
                    .event(
                        requester.spiffe_id.as_str(),
                        "credential.issue",
                        &lease.id,
                        Outcome::Success,
                    )
                    .detail("target", lease.target.clone())
                    .detail("role", lease.role.clone())
                    .detail("username", lease.username.clone())
                    .detail("expires_at", lease.expires_at)
                    .detail("via", requester.via.as_str())
                    .detail("entry_id", lease.entry_id.clone().unwrap_or_default()),
            )
            .await;
        if let Err(e) = recorded {
            // An unaudited credential is not handed out.
            let _ = self
                .revoke_claimed_lease(&lease, "audit log unavailable", "sigil")
                .await;
            return Err(CredentialsError::Audit(e.to_string()));
        }
        Ok(Issued {
            lease,
            password,
            address: live.target.address.clone(),
        })
    }

    fn authorize(
        &self,
        requester: &Requester,
        live: &LiveTarget,
        role: &str,
        now: i64,
    ) -> Result<(), CredentialsError> {
        let request = DecisionRequest {
            principal: Principal::Workload {
                spiffe_id: requester.spiffe_id.clone(),
                selectors: requester.selectors.clone(),
                owner: requester.owner.clone(),
                labels: requester.labels.clone(),
                agent: requester.agent.clone(),
            },
            action: REQUEST_CREDENTIAL_ACTION.to_owned(),
            resource: ResourceRef {
                id: format!("{}/{role}", live.target.name()),
                kind: CREDENTIAL_ROLE_KIND.to_owned(),
            },
            context: ContextInput {
                source_address: requester.source_address.clone(),
                ..ContextInput::default()
            },
        };
        let decision = self.policies.decide(&request, now);
        if decision.allowed {
            Ok(())
        } else {
            Err(CredentialsError::Denied {
                target: live.target.name().to_owned(),
                role: role.to_owned(),
                policies: decision.policies,
                errors: decision.errors,
            })
        }
    }

    /// Extends lease `id` to `increment` seconds from now (the role's default when `None`),
    /// never past its maximum. With `holder`, only that workload's lease is found.
    pub async fn renew(
        &self,
        id: &str,
        increment: Option<u64>,
        holder: Option<&SpiffeId>,
        actor: &str,
    ) -> Result<Lease, CredentialsError> {
        let lease = self.lease_of(id, holder).await?;
        if lease.state != LeaseState::Active {
            return Err(CredentialsError::LeaseNotActive {
                id: id.to_owned(),
                state: lease.state.as_str(),
            });
        }
        let live = self.registry.get(&lease.target).await?;
        let now = self.clock.unix_secs();
        let role = live.target.roles.get(&lease.role);
        let increment = match increment {
            None | Some(0) => role.map_or(0, |r| r.default_ttl),
            Some(i) => i,
        };
        let expires_at = now
            .saturating_add(i64::try_from(increment).unwrap_or(i64::MAX))
            .min(lease.max_expires_at);
        let renewal: &[Template] = role.map_or(&[], |r| r.renewal.as_slice());
        let expiration = expiration(expires_at);
        let values = TemplateValues {
            name: &lease.username,
            password: "",
            expiration: &expiration,
        };
        live.database
            .renew_user(renewal, &values)
            .await
            .map_err(|e| CredentialsError::Database {
                target: lease.target.clone(),
                source: e,
            })?;
        let renewed = self.store.renew_lease(id, expires_at, now).await?;
        self.wake.notify_one();
        self.audit.record_detached(
            self.audit
                .event(actor, "credential.renew", id, Outcome::Success)
                .detail("expires_at", expires_at),
        );
        Ok(renewed)
    }

    /// Revokes lease `id` now (idempotent: a revoked lease is returned as it is). With
    /// `holder`, only that workload's lease is found.
    pub async fn revoke(
        &self,
        id: &str,
        reason: &str,
        holder: Option<&SpiffeId>,
        actor: &str,
    ) -> Result<Lease, CredentialsError> {
        let lease = self.lease_of(id, holder).await?;
        if lease.state == LeaseState::Revoked {
            return Ok(lease);
        }
        self.revoke_claimed_lease(&lease, reason, actor).await?;
        Ok(self.store.get_lease(id).await?.unwrap_or(lease))
    }

    /// Revokes every active lease matching `filter` (its `state`, `after` and `limit` are
    /// ignored); returns the ids revoked and those that failed, with why.
    pub async fn revoke_matching(
        &self,
        mut filter: LeaseFilter,
        reason: &str,
        actor: &str,
    ) -> Result<(Vec<String>, Vec<(String, String)>), CredentialsError> {
        filter.state = Some(LeaseState::Active);
        filter.after = None;
        filter.limit = sigil_store::MAX_LEASE_PAGE;
        let mut revoked = Vec::new();
        let mut failed = Vec::new();
        loop {
            let page = self.store.list_leases(&filter).await?;
            let Some(last) = page.last() else {
                break;
            };
            filter.after = Some(last.id.clone());
            for lease in page {
                match self.revoke_claimed_lease(&lease, reason, actor).await {
                    Ok(()) => revoked.push(lease.id),
                    Err(e) => failed.push((lease.id, e.to_string())),
                }
            }
            if revoked.len() + failed.len() >= MAX_REVOKE_MATCHING {
                break;
            }
        }
        Ok((revoked, failed))
    }

    /// The leases of `spiffe_id`'s workloads, `entry_id` or `agent_id` after an entry was
    /// deleted or an agent banned: revoked in the background, failures logged (they stay due
    /// and the expiry task retries them).
    pub fn revoke_in_background(self: &Arc<Self>, filter: LeaseFilter, reason: String) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.revoke_matching(filter, &reason, "sigil").await {
                Ok((revoked, failed)) => {
                    if !revoked.is_empty() || !failed.is_empty() {
                        tracing::info!(revoked = revoked.len(), failed = failed.len(), reason = %reason, "leases revoked");
                    }
                }
                Err(e) => tracing::warn!(error = %e, reason = %reason, "cannot revoke leases"),
            }
        });
    }

    async fn lease_of(
        &self,
        id: &str,
        holder: Option<&SpiffeId>,
    ) -> Result<Lease, CredentialsError> {
        let lease = self
            .store
            .get_lease(id)
            .await?
            .ok_or_else(|| CredentialsError::UnknownLease(id.to_owned()))?;
        if let Some(holder) = holder
            && holder.as_str() != lease.spiffe_id
        {
            // Someone else's lease is reported as missing: its existence is not the caller's
            // business.
            return Err(CredentialsError::UnknownLease(id.to_owned()));
        }
        Ok(lease)
    }

    /// Claims `lease` for revocation (unless another replica holds it), revokes the user and
    /// marks the lease revoked. A lease that is revoked already or claimed elsewhere is left
    /// alone (`Ok`).
    async fn revoke_claimed_lease(
        &self,
        lease: &Lease,
        reason: &str,
        actor: &str,
    ) -> Result<(), CredentialsError> {
        let now = self.clock.unix_secs();
        let Some(claimed) = self
            .store
            .claim_lease_revocation(
                &lease.id,
                reason,
                now,
                now.saturating_add(REVOCATION_CLAIM_SECS),
            )
            .await?
        else {
            return Ok(());
        };
        let result = self.drop_user(&claimed).await;
        match &result {
            Ok(()) => {
                self.store
                    .finish_lease_revocation(&claimed.id, self.clock.unix_secs())
                    .await?;
                self.audit.record_detached(
                    self.audit
                        .event(actor, "credential.revoke", &claimed.id, Outcome::Success)
                        .detail("reason", claimed.revoke_reason.clone().unwrap_or_default())
                        .detail("target", claimed.target.clone())
                        .detail("username", claimed.username.clone())
                        .detail("spiffe_id", claimed.spiffe_id.clone()),
                );
            }
            Err(e) => {
                tracing::warn!(lease = %claimed.id, target = %claimed.target, error = %e, "lease revocation failed; it will be retried");
                self.audit.record_detached(
                    self.audit
                        .event(actor, "credential.revoke", &claimed.id, Outcome::Failure)
                        .detail("reason", reason.to_owned())
                        .detail("error", e.to_string()),
                );
            }
        }
        result
    }

    /// Marks `lease` revoked without touching the database: for a lease whose user was never
    /// created.
    async fn close_unused_lease(
        &self,
        lease: &Lease,
        reason: &str,
    ) -> Result<(), CredentialsError> {
        let now = self.clock.unix_secs();
        if self
            .store
            .claim_lease_revocation(
                &lease.id,
                reason,
                now,
                now.saturating_add(REVOCATION_CLAIM_SECS),
            )
            .await?
            .is_some()
        {
            self.store.finish_lease_revocation(&lease.id, now).await?;
        }
        Ok(())
    }

    async fn drop_user(&self, lease: &Lease) -> Result<(), CredentialsError> {
        let live = self.registry.get(&lease.target).await?;
        let defaults;
        let statements: &[Template] = match live.target.roles.get(&lease.role) {
            Some(role) => &role.revocation,
            None => {
                // The role was removed from the target since: its users still go.
                defaults = super::database::default_revocation_statements(live.target.kind)
                    .iter()
                    .filter_map(|s| Template::parse(s).ok())
                    .collect::<Vec<_>>();
                &defaults
            }
        };
        let values = TemplateValues {
            name: &lease.username,
            password: "",
            expiration: "",
        };
        live.database
            .revoke_user(&lease.username, statements, &values)
            .await
            .map_err(|e| CredentialsError::Database {
                target: lease.target.clone(),
                source: e,
            })
    }

    /// Revokes the leases due now (expired, or claimed by a replica that did not finish);
    /// returns how many it revoked.
    pub async fn revoke_due(&self) -> Result<usize, CredentialsError> {
        let mut done = 0;
        loop {
            let now = self.clock.unix_secs();
            let due = self.store.due_leases(now, EXPIRY_BATCH).await?;
            let full = due.len() >= usize::try_from(EXPIRY_BATCH).unwrap_or(usize::MAX);
            let mut progressed = false;
            for lease in due {
                let reason = if lease.state == LeaseState::Active {
                    "expired"
                } else {
                    "revocation retried"
                };
                match self.revoke_claimed_lease(&lease, reason, "sigil").await {
                    Ok(()) => {
                        done += 1;
                        progressed = true;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %lease.id, error = %e, "cannot revoke an expired lease")
                    }
                }
            }
            if !full || !progressed {
                return Ok(done);
            }
        }
    }

    /// The expiry task: revokes every lease when it falls due, including those that fell due
    /// while the server was down (at once, on start), until `shutdown` turns true.
    pub async fn run_expiry(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.revoke_due().await {
                tracing::warn!(error = %e, "lease expiry pass failed");
            }
            let now = self.clock.unix_secs();
            let wait = match self.store.next_lease_due().await {
                Ok(Some(due)) if due > now => {
                    Duration::from_secs(u64::try_from(due - now).unwrap_or(0)).min(EXPIRY_RESCAN)
                }
                // Due now but not revoked (it failed): retry soon, not in a tight loop.
                Ok(Some(_)) => Duration::from_secs(1),
                Ok(None) => EXPIRY_RESCAN,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the next lease expiry");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// Changes target `name`'s administrative password to a new random one that only Sigil
    /// knows, and writes it to the target's password file: first to a new file beside it, then
    /// the database, then the rename, so a failure at any step leaves a password that works.
    pub async fn rotate_root(&self, name: &str, actor: &str) -> Result<i64, CredentialsError> {
        let live = self.registry.get(name).await?;
        let super::targets::PasswordSource::File(path) = &live.target.password else {
            return Err(CredentialsError::RotateNeedsFile(name.to_owned()));
        };
        let password = self.password.generate().map_err(CredentialsError::Random)?;
        let staged = super::rotation::stage(path, &password).map_err(|e| {
            CredentialsError::AdminPassword {
                target: name.to_owned(),
                reason: e,
            }
        })?;
        if let Err(e) = live.database.rotate_root(&password).await {
            staged.discard();
            return Err(CredentialsError::Database {
                target: name.to_owned(),
                source: e,
            });
        }
        staged
            .commit()
            .map_err(|e| CredentialsError::AdminPassword {
                target: name.to_owned(),
                reason: format!(
                    "the database now has the new password but it could not be saved: {e}"
                ),
            })?;
        let now = self.clock.unix_secs();
        self.audit.record_detached(self.audit.event(
            actor,
            "credential.rotate_root",
            name,
            Outcome::Success,
        ));
        Ok(now)
    }
}

/// `lease_` and 32 random lowercase hex digits.
fn new_lease_id() -> Result<String, CredentialsError> {
    let bytes = sigil_keys::random_bytes(16).map_err(CredentialsError::Random)?;
    Ok(format!(
        "lease_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Unix seconds as the timestamp the statements' `{{expiration}}` gets (RFC 3339, UTC).
fn expiration(unix_secs: i64) -> String {
    crate::audit::sinks::rfc3339_millis(unix_secs.saturating_mul(1000))
}
