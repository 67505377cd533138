//! The server's one issuance choke point: every credential the server hands out (an agent's
//! SVID at attestation and at renewal, workload X509-SVIDs, workload JWT-SVIDs) is decided and
//! signed here, and so is every token the OAuth token exchange issues. Input: who asks, for which identity or entry, what; output: the credential or a
//! typed [`Refusal`].
//!
//! Every credential is recorded in the credential inventory ([`Datastore::record_issued`], with
//! concurrent RPCs' records grouped into one write by [`crate::inventory`]) after it is signed
//! and before it is returned, so whatever the server hands out can be revoked by
//! its serial or `jti`; a credential that cannot be recorded is not handed out. Policy decisions
//! and audit records attach here when they land: decisions in [`Issuer::decide`], records next
//! to the inventory write. No RPC handler signs on its own.

use std::sync::Arc;
use std::time::Instant;

use sigil_ca::MintedJwt;
use sigil_spiffe::{Clock, SpiffeId, TrustBundle, TrustDomain};
use sigil_store::{CredentialKind, Datastore, IssuedCredential, Outcome};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::agent_index::{AgentIndex, AgentView};
use crate::audit::AuditLog;
use crate::ca::{CaManager, Revocations};
use crate::entry_index::{EntryAccess, EntryIndex, IndexedEntry};
use crate::inventory::InventoryWriter;
use crate::metrics::Metrics;
use crate::policy::Policies;
use sigil_policy::{AgentRef, ContextInput, DecisionRequest, Principal, ResourceRef};

/// Most SPIFFE IDs (and refusals) named in one issuance record; the counts are always exact.
const AUDITED_IDS: usize = 32;
/// Largest CSR accepted, in bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;
/// Most audiences in one JWT-SVID request.
pub const MAX_AUDIENCES: usize = 32;
/// Longest audience accepted, in bytes.
pub const MAX_AUDIENCE_BYTES: usize = 1024;

/// Issuance defaults, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct IssuanceDefaults {
    pub agent_svid_ttl: u64,
    pub x509_svid_ttl: u64,
    pub jwt_svid_ttl: u64,
}

impl Default for IssuanceDefaults {
    fn default() -> Self {
        Self {
            agent_svid_ttl: 3600,
            x509_svid_ttl: 3600,
            jwt_svid_ttl: 300,
        }
    }
}

/// Why a credential was not issued. The agent API maps each to a gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("entry `{entry_id}` is not authorized for this agent")]
    EntryNotAuthorized { entry_id: String },
    #[error("entry `{entry_id}` expired at {expired_at}")]
    EntryExpired { entry_id: String, expired_at: i64 },
    #[error("agent `{agent_id}` is banned")]
    AgentBanned { agent_id: SpiffeId },
    #[error("csr is not acceptable: {0}")]
    InvalidCsr(String),
    #[error("audience is not acceptable: {0}")]
    InvalidAudience(String),
    /// The Cedar policy set in force denies it (the ids of the deciding policies, if any).
    #[error("denied by policy{}", describe_policies(.policies, .errors))]
    PolicyDenied {
        policies: Vec<String>,
        errors: Vec<String>,
    },
    /// The CA failed for a reason that is not the caller's (logged, not sent).
    #[error("cannot sign: {0}")]
    Signing(String),
    /// The credential was signed but could not be recorded in the inventory, so it is not
    /// handed out (logged, not sent).
    #[error("cannot record the issued credential: {0}")]
    Unrecorded(String),
}

/// ` [ids]` and `: errors` for a policy refusal's message.
fn describe_policies(policies: &[String], errors: &[String]) -> String {
    let mut text = String::new();
    if !policies.is_empty() {
        text.push_str(&format!(" [{}]", policies.join(", ")));
    } else {
        text.push_str(" (no policy permits it)");
    }
    if !errors.is_empty() {
        text.push_str(&format!(": {}", errors.join("; ")));
    }
    text
}

/// A signed X509-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedX509 {
    pub spiffe_id: SpiffeId,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// Lowercase hex of the leaf's serial number.
    pub serial: String,
    /// The leaf's `notAfter`, Unix seconds.
    pub expires_at: i64,
    /// Hex key id of the authority that signed the leaf (its authority key identifier).
    pub authority_id: String,
}

impl IssuedX509 {
    fn inventory(&self, issued_to: &SpiffeId, issued_at: i64) -> IssuedCredential {
        IssuedCredential {
            kind: CredentialKind::X509Svid,
            id: self.serial.clone(),
            spiffe_id: self.spiffe_id.clone(),
            authority_id: self.authority_id.clone(),
            issued_to: issued_to.clone(),
            issued_at,
            expires_at: self.expires_at,
        }
    }
}

/// Who asks for a credential.
#[derive(Debug, Clone, Copy)]
enum Requester<'a> {
    /// A node that just proved itself (attestation) and will be the agent `0`.
    Attesting(&'a SpiffeId),
    /// An authenticated agent.
    Agent(&'a AgentView),
}

/// What is to be issued, as the policy sees it.
#[derive(Debug, Clone, Copy)]
enum Action<'a> {
    X509,
    Jwt { audience: &'a [String] },
}

/// For which identity.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    /// The requester's own agent identity.
    OwnAgentId,
    /// A registration entry's identity.
    Entry(&'a str),
}

/// What a decision allows: the identity and how it is issued.
struct Grant {
    spiffe_id: SpiffeId,
    dns_names: Vec<String>,
    /// The entry's selectors and owner (empty for an agent's own SVID), for the policy.
    selectors: Vec<sigil_spiffe::Selector>,
    owner: String,
    /// The entry granted (`None` for an agent's own SVID), shared with the index rather than
    /// copied: the policy reads its labels only when it is consulted.
    entry: Option<Arc<IndexedEntry>>,
    /// Latest the credential may expire (the entry's expiry), Unix seconds.
    not_after: Option<i64>,
    x509_ttl: u64,
    jwt_ttl: u64,
}

/// The issuance choke point. Cheap to share via `Arc`.
pub struct Issuer {
    ca: Arc<CaManager>,
    entries: Arc<EntryIndex>,
    inventory: InventoryWriter,
    clock: Arc<dyn Clock>,
    defaults: IssuanceDefaults,
    metrics: Arc<Metrics>,
    policies: Arc<Policies>,
    audit: AuditLog,
    /// The attested agents, when the server shares them: what describes a workload's agent to
    /// a policy decision asked about by SPIFFE ID alone.
    agents: Option<Arc<AgentIndex>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("trust_domain", self.ca.trust_domain())
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer signing with `ca`, authorizing entries with `entries` and then `policies`,
    /// and recording what it issues in `store`, on `clock`.
    pub fn new(
        ca: Arc<CaManager>,
        entries: Arc<EntryIndex>,
        store: Arc<dyn Datastore>,
        clock: Arc<dyn Clock>,
        defaults: IssuanceDefaults,
        metrics: Arc<Metrics>,
        policies: Arc<Policies>,
    ) -> Self {
        Self {
            ca,
            entries,
            inventory: InventoryWriter::new(store),
            clock,
            defaults,
            metrics,
            policies,
            audit: AuditLog::disabled(),
            agents: None,
        }
    }

    /// Looks agents up in `agents` when describing a workload named by SPIFFE ID alone
    /// ([`Issuer::agent`]).
    pub fn with_agents(mut self, agents: Arc<AgentIndex>) -> Self {
        self.agents = Some(agents);
        self
    }

    /// The live entries that issue `spiffe_id` (unexpired, ordered by id), from the entry index.
    pub fn entries_with_spiffe_id(&self, spiffe_id: &SpiffeId) -> Vec<Arc<IndexedEntry>> {
        self.entries.entries_with_spiffe_id(spiffe_id)
    }

    /// The attested agent `spiffe_id`, if it is one and the agents are shared
    /// ([`Issuer::with_agents`]).
    pub fn agent(&self, spiffe_id: &SpiffeId) -> Option<Arc<AgentView>> {
        self.agents.as_ref()?.get(spiffe_id)
    }

    /// Records what this issuer issues in `audit`: one record per call (a batch of workload
    /// X509-SVIDs is one record), not one per credential.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// The audit log issuance records into.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The policy set issuance is decided by.
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// The metrics issuance counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The trust domain credentials are issued in.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.ca.trust_domain()
    }

    /// The trust bundle that verifies what this issuer signs.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.ca.bundle()
    }

    /// Ids of the tainted authorities: what they signed is to be replaced at once.
    pub fn tainted_authorities(&self) -> Arc<Vec<String>> {
        self.ca.tainted()
    }

    /// A receiver that changes whenever the bundle, the tainted set or the revocations change.
    pub fn subscribe_trust(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ca.subscribe_trust()
    }

    /// The deny-list and the CRLs signed from it, as last published.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.ca.revocations()
    }

    /// The first SVID of agent `agent_id`, whose node attestation just succeeded.
    pub async fn attestation_svid(
        &self,
        agent_id: &SpiffeId,
        csr: &[u8],
    ) -> Result<IssuedX509, Refusal> {
        let started = Instant::now();
        let grant = self.decide(
            Requester::Attesting(agent_id),
            Subject::OwnAgentId,
            Action::X509,
        )?;
        let svid = self.sign_x509(&grant, csr, self.defaults.agent_svid_ttl)?;
        self.record(vec![svid.inventory(agent_id, self.clock.unix_secs())])
            .await?;
        self.metrics.issued("agent_x509_svid", 1, started.elapsed());
        Ok(svid)
    }

    /// A renewed SVID for `agent`.
    pub async fn renewal_svid(&self, agent: &AgentView, csr: &[u8]) -> Result<IssuedX509, Refusal> {
        let started = Instant::now();
        let grant = self.decide(Requester::Agent(agent), Subject::OwnAgentId, Action::X509)?;
        let svid = self.sign_x509(&grant, csr, self.defaults.agent_svid_ttl)?;
        self.record(vec![
            svid.inventory(&agent.spiffe_id, self.clock.unix_secs()),
        ])
        .await?;
        self.audit.record_detached(
            self.audit
                .event(
                    agent.spiffe_id.as_str(),
                    "agent.renew",
                    agent.spiffe_id.as_str(),
                    Outcome::Success,
                )
                .detail("serial", svid.serial.clone())
                .detail("expires_at", svid.expires_at),
        );
        self.metrics.issued("agent_x509_svid", 1, started.elapsed());
        Ok(svid)
    }

    /// Workload X509-SVIDs asked for by `agent`, one per `(entry id, CSR)`: each is decided and
    /// signed on its own (one refusal does not fail the others), then all that were signed are
    /// recorded in one write. If that write fails, nothing is handed out.
    pub async fn workload_x509_svids(
        &self,
        agent: &AgentView,
        requests: &[(&str, &[u8])],
    ) -> Result<Vec<Result<IssuedX509, Refusal>>, Refusal> {
        let started = Instant::now();
        let results: Vec<Result<IssuedX509, Refusal>> = requests
            .iter()
            .map(|(entry_id, csr)| {
                let grant = self.decide(
                    Requester::Agent(agent),
                    Subject::Entry(entry_id),
                    Action::X509,
                )?;
                let ttl = grant.x509_ttl;
                self.sign_x509(&grant, csr, ttl)
            })
            .collect();
        let now = self.clock.unix_secs();
        let inventory: Vec<IssuedCredential> = results
            .iter()
            .flatten()
            .map(|svid| svid.inventory(&agent.spiffe_id, now))
            .collect();
        let signed = inventory.len() as u64;
        let audited = self.audit.enabled().then(|| {
            let issued: Vec<String> = inventory
                .iter()
                .take(AUDITED_IDS)
                .map(|c| c.spiffe_id.to_string())
                .collect();
            let refused: Vec<String> = results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .take(AUDITED_IDS)
                .map(|e| e.to_string())
                .collect();
            (issued, refused)
        });
        self.record(inventory).await?;
        self.metrics.issued("x509_svid", signed, started.elapsed());
        if let Some((issued, refused)) = audited {
            let refused_count = results.len() as u64 - signed;
            let outcome = if signed == 0 && refused_count > 0 {
                Outcome::Denied
            } else {
                Outcome::Success
            };
            // Aggregated: the calls of one agent queued together make one record.
            self.audit.record_aggregated(
                self.audit
                    .event(
                        agent.spiffe_id.as_str(),
                        "x509_svid.issue",
                        agent.spiffe_id.as_str(),
                        outcome,
                    )
                    .detail("issued", signed)
                    .detail("refused", refused_count)
                    .detail("spiffe_ids", issued)
                    .detail("refusals", refused),
            );
        }
        Ok(results)
    }

    /// A workload JWT-SVID for entry `entry_id` with `audience`, asked for by `agent`.
    pub async fn workload_jwt_svid(
        &self,
        agent: &AgentView,
        entry_id: &str,
        audience: &[String],
    ) -> Result<MintedJwt, Refusal> {
        let started = Instant::now();
        check_audience(audience)?;
        let grant = self.decide(
            Requester::Agent(agent),
            Subject::Entry(entry_id),
            Action::Jwt { audience },
        )?;
        let ttl = self.capped_ttl(grant.jwt_ttl, grant.not_after);
        let minted = self
            .ca
            .mint_jwt_svid(&grant.spiffe_id, audience, ttl)
            .map_err(|e| Refusal::Signing(e.to_string()))?;
        let subject = grant.spiffe_id.to_string();
        self.record(vec![IssuedCredential {
            kind: CredentialKind::JwtSvid,
            id: minted.jti.clone(),
            spiffe_id: grant.spiffe_id,
            authority_id: minted.kid.clone(),
            issued_to: agent.spiffe_id.clone(),
            issued_at: minted.issued_at,
            expires_at: minted.expires_at,
        }])
        .await?;
        self.metrics.issued("jwt_svid", 1, started.elapsed());
        self.audit.record_detached(
            self.audit
                .event(
                    agent.spiffe_id.as_str(),
                    "jwt_svid.issue",
                    &subject,
                    Outcome::Success,
                )
                .detail("jti", minted.jti.clone())
                .detail("audience", audience.to_vec())
                .detail("expires_at", minted.expires_at),
        );
        Ok(minted)
    }

    /// A token issued by token exchange (an access token or a JWT-SVID, per `claims`) for a
    /// subject the OAuth endpoint has verified, asked for by `issued_to` (the authenticated
    /// client, else the subject). Recorded in the inventory under the JWT kind, by `jti`, so it
    /// can be revoked and introspected like any JWT-SVID.
    pub async fn exchanged_token(
        &self,
        claims: &sigil_ca::ExchangedClaims<'_>,
        issued_to: &SpiffeId,
    ) -> Result<MintedJwt, Refusal> {
        let started = Instant::now();
        if let Err(refusal) = check_audience(claims.audience) {
            self.metrics.refused.inc();
            return Err(refusal);
        }
        let minted = self
            .ca
            .mint_exchanged(claims)
            .map_err(|e| Refusal::Signing(e.to_string()))?;
        self.record(vec![IssuedCredential {
            kind: CredentialKind::JwtSvid,
            id: minted.jti.clone(),
            spiffe_id: claims.sub.clone(),
            authority_id: minted.kid.clone(),
            issued_to: issued_to.clone(),
            issued_at: minted.issued_at,
            expires_at: minted.expires_at,
        }])
        .await?;
        let kind = if claims.access_token {
            "access_token"
        } else {
            "exchanged_jwt_svid"
        };
        self.metrics.issued(kind, 1, started.elapsed());
        self.audit.record_detached(
            self.audit
                .event(
                    issued_to.as_str(),
                    "token.exchange",
                    claims.sub.as_str(),
                    Outcome::Success,
                )
                .detail("token_type", kind)
                .detail("jti", minted.jti.clone())
                .detail("audience", claims.audience.to_vec())
                .detail("expires_at", minted.expires_at),
        );
        Ok(minted)
    }

    /// Writes `credentials` to the inventory (nothing for an empty batch).
    async fn record(&self, credentials: Vec<IssuedCredential>) -> Result<(), Refusal> {
        self.inventory
            .record(credentials)
            .await
            .map_err(Refusal::Unrecorded)
    }

    /// The decision: may `requester` have a credential for `subject` now? Every method passes
    /// here before anything is signed; refusals are counted. A workload's credential must be
    /// authorized by its entry and then permitted by the policy set in force; an agent's own SVID
    /// by its attestation alone (a policy cannot lock agents out of the trust domain).
    fn decide(
        &self,
        requester: Requester<'_>,
        subject: Subject<'_>,
        action: Action<'_>,
    ) -> Result<Grant, Refusal> {
        let decision = self.decide_uncounted(requester, subject).and_then(|grant| {
            match (requester, subject) {
                (Requester::Agent(agent), Subject::Entry(entry_id)) => {
                    self.decide_by_policy(agent, entry_id, &grant, action)?;
                    Ok(grant)
                }
                _ => Ok(grant),
            }
        });
        if decision.is_err() {
            self.metrics.refused.inc();
        }
        decision
    }

    fn decide_uncounted(
        &self,
        requester: Requester<'_>,
        subject: Subject<'_>,
    ) -> Result<Grant, Refusal> {
        let agent = match requester {
            Requester::Attesting(agent_id) => {
                return match subject {
                    Subject::OwnAgentId => Ok(self.agent_grant(agent_id)),
                    Subject::Entry(entry_id) => Err(Refusal::EntryNotAuthorized {
                        entry_id: entry_id.to_owned(),
                    }),
                };
            }
            Requester::Agent(agent) => agent,
        };
        if agent.banned {
            return Err(Refusal::AgentBanned {
                agent_id: agent.spiffe_id.clone(),
            });
        }
        let entry_id = match subject {
            Subject::OwnAgentId => return Ok(self.agent_grant(&agent.spiffe_id)),
            Subject::Entry(entry_id) => entry_id,
        };
        let entry = match self
            .entries
            .entry_access(&agent.spiffe_id, &agent.selectors, entry_id)
        {
            EntryAccess::Authorized(entry) => entry,
            EntryAccess::Expired { expired_at } => {
                return Err(Refusal::EntryExpired {
                    entry_id: entry_id.to_owned(),
                    expired_at,
                });
            }
            EntryAccess::NotAuthorized => {
                return Err(Refusal::EntryNotAuthorized {
                    entry_id: entry_id.to_owned(),
                });
            }
        };
        // The index already leaves expired entries out; checked again against this decision's
        // own clock reading so nothing is issued for an entry past its expiry.
        if let Some(expired_at) = entry
            .expires_at()
            .filter(|at| *at <= self.clock.unix_secs())
        {
            return Err(Refusal::EntryExpired {
                entry_id: entry_id.to_owned(),
                expired_at,
            });
        }
        let or_default = |ttl: u64, default: u64| if ttl == 0 { default } else { ttl };
        Ok(Grant {
            spiffe_id: entry.spiffe_id().clone(),
            dns_names: entry.dns_names().to_vec(),
            selectors: entry.selectors().to_vec(),
            owner: entry.owner().to_owned(),
            not_after: entry.expires_at(),
            entry: Some(Arc::clone(&entry)),
            x509_ttl: or_default(entry.x509_svid_ttl(), self.defaults.x509_svid_ttl),
            jwt_ttl: or_default(entry.jwt_svid_ttl(), self.defaults.jwt_svid_ttl),
        })
    }

    /// The policy decision on issuing `grant` (from entry `entry_id`) to a workload of `agent`.
    fn decide_by_policy(
        &self,
        agent: &AgentView,
        entry_id: &str,
        grant: &Grant,
        action: Action<'_>,
    ) -> Result<(), Refusal> {
        let (action_name, audience) = match action {
            Action::X509 => ("IssueX509Svid", Vec::new()),
            Action::Jwt { audience } => ("IssueJwtSvid", audience.to_vec()),
        };
        let request = DecisionRequest {
            principal: Principal::Workload {
                spiffe_id: grant.spiffe_id.clone(),
                selectors: grant.selectors.iter().map(ToString::to_string).collect(),
                owner: grant.owner.clone(),
                labels: grant
                    .entry
                    .as_ref()
                    .map(|entry| sigil_store::label_strings(entry.labels()))
                    .unwrap_or_default(),
                agent: Some(AgentRef {
                    spiffe_id: agent.spiffe_id.clone(),
                    attestation_type: crate::naming::agent_attestor(&agent.spiffe_id)
                        .unwrap_or_default()
                        .to_owned(),
                    node_selectors: agent.selectors.iter().map(ToString::to_string).collect(),
                }),
            },
            action: action_name.to_owned(),
            resource: ResourceRef {
                id: grant.spiffe_id.to_string(),
                kind: "svid".to_owned(),
            },
            context: ContextInput {
                audience,
                ..ContextInput::default()
            },
        };
        let decision = self.policies.decide(&request, self.clock.unix_secs());
        self.metrics.policy_decision(action_name, decision.allowed);
        if decision.allowed {
            return Ok(());
        }
        tracing::info!(entry = %entry_id, spiffe_id = %grant.spiffe_id, action = action_name, policies = ?decision.policies, errors = ?decision.errors, "issuance denied by policy");
        Err(Refusal::PolicyDenied {
            policies: decision.policies,
            errors: decision.errors,
        })
    }

    fn agent_grant(&self, agent_id: &SpiffeId) -> Grant {
        Grant {
            spiffe_id: agent_id.clone(),
            dns_names: Vec::new(),
            selectors: Vec::new(),
            owner: String::new(),
            entry: None,
            not_after: None,
            x509_ttl: self.defaults.agent_svid_ttl,
            jwt_ttl: 0,
        }
    }

    /// `ttl`, shortened so the credential does not outlive the entry's expiry.
    fn capped_ttl(&self, ttl: u64, not_after: Option<i64>) -> u64 {
        let Some(not_after) = not_after else {
            return ttl;
        };
        let left = not_after.saturating_sub(self.clock.unix_secs()).max(1);
        ttl.min(left.unsigned_abs())
    }

    fn sign_x509(&self, grant: &Grant, csr: &[u8], ttl: u64) -> Result<IssuedX509, Refusal> {
        check_csr(csr)?;
        let ttl = self.capped_ttl(ttl, grant.not_after);
        let chain = self
            .ca
            .sign_x509_svid(csr, &grant.spiffe_id, ttl, &grant.dns_names)
            .map_err(|e| Refusal::InvalidCsr(e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| Refusal::Signing("the CA returned an empty chain".to_owned()))?;
        let (serial, expires_at, authority_id) = leaf_facts(leaf)
            .ok_or_else(|| Refusal::Signing("the CA returned an unparsable leaf".to_owned()))?;
        Ok(IssuedX509 {
            spiffe_id: grant.spiffe_id.clone(),
            chain,
            serial,
            expires_at,
            authority_id,
        })
    }
}

/// Lowercase hex serial and `notAfter` (Unix seconds) of a DER certificate; `None` if it does not
/// parse.
pub fn cert_serial_and_expiry(der: &[u8]) -> Option<(String, i64)> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let serial = sigil_keys::digest::hex(cert.tbs_certificate.raw_serial());
    Some((serial, cert.validity().not_after.timestamp()))
}

/// Serial (lowercase hex), `notAfter` (Unix seconds) and authority key identifier (hex) of a
/// leaf the CA just signed; `None` if it does not parse or names no issuer key.
fn leaf_facts(der: &[u8]) -> Option<(String, i64, String)> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })?;
    Some((
        sigil_keys::digest::hex(cert.tbs_certificate.raw_serial()),
        cert.validity().not_after.timestamp(),
        sigil_keys::digest::hex(aki.0),
    ))
}

/// A CSR is non-empty and at most [`MAX_CSR_BYTES`]; the CA checks the rest.
fn check_csr(csr: &[u8]) -> Result<(), Refusal> {
    if csr.is_empty() {
        return Err(Refusal::InvalidCsr("csr is empty".to_owned()));
    }
    if csr.len() > MAX_CSR_BYTES {
        return Err(Refusal::InvalidCsr(format!(
            "csr is larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    Ok(())
}

/// One to [`MAX_AUDIENCES`] audiences, each 1 to [`MAX_AUDIENCE_BYTES`] bytes.
fn check_audience(audience: &[String]) -> Result<(), Refusal> {
    if audience.is_empty() || audience.iter().any(String::is_empty) {
        return Err(Refusal::InvalidAudience("audience is required".to_owned()));
    }
    if audience.len() > MAX_AUDIENCES || audience.iter().any(|a| a.len() > MAX_AUDIENCE_BYTES) {
        return Err(Refusal::InvalidAudience(
            "too many or too long audiences".to_owned(),
        ));
    }
    Ok(())
}
