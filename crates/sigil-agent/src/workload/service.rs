//! [`WorkloadApi`]: the five RPCs of the SPIFFE Workload API (X.509-SVID and JWT-SVID profiles),
//! answered from the agent's identity snapshot for the attested caller.
//!
//! Every call must carry the `workload.spiffe.io: true` metadata (else `InvalidArgument`); the
//! caller is the connection's [`ConnectionPeer`] (pinned at accept, attested once per
//! connection, re-checked per call) and receives the identities whose selectors it has. Status codes are the ones the Workload API and Workload Endpoint
//! standards name; internal causes are logged, not returned.
//!
//! With a [`UsageCounter`] ([`WorkloadApi::with_usage`]), every response that delivers an
//! identity is counted for its workload (X509-SVID stream messages, JWT-SVIDs); counting bumps
//! counters in memory, the report to the server happens elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sigil_proto::WORKLOAD_API_HEADER;
use sigil_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use sigil_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svidRequest, X509svidResponse,
};
use sigil_spiffe::{Clock, Selector, SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::{Semaphore, watch};
use tonic::{Request, Response, Status};

use super::claims::to_struct;
use super::peer::ConnectionPeer;
use super::responses::{
    federated_bundles, jwt_bundles_response, served_identities, with_unique_hints,
    x509_bundles_response, x509_svid_response,
};
use super::stream::{NO_IDENTITY, Observe, ResponseStream, watch_stream};
use crate::attestor::{UnixAttestor, WorkloadAttestor};
use crate::snapshot::{IdentitySnapshot, JwtMintError, WorkloadApiContext, X509SvidMaterial};
use crate::usage::{Delivery, UsageCounter, WorkloadBinary};

/// The status message of a request without the security header (Workload Endpoint §6).
pub const MISSING_HEADER: &str = "security header missing from request";
/// The status message of `ValidateJWTSVID` for a correctly signed, unexpired JWT-SVID of the
/// agent's trust domain whose `jti` is on the server's deny-list.
pub const REVOKED_JWT_SVID: &str = "JWT-SVID has been revoked";
/// Attestations (binary hashes) run at once when nothing else is configured.
pub const DEFAULT_MAX_CONCURRENT_ATTESTATIONS: usize = 4;

/// The SPIFFE Workload API service. Build one with [`WorkloadApi::new`] and hand it to
/// [`serve`](super::serve), which also wires the connection's [`ConnectionPeer`] into each
/// request.
pub struct WorkloadApi {
    ctx: WorkloadApiContext,
    attestor: Arc<dyn WorkloadAttestor>,
    /// Bounds the attestations running at once, across connections.
    attestations: Arc<Semaphore>,
    /// Turns true when the server shuts down, ending every open stream.
    stop: watch::Receiver<bool>,
    /// Where deliveries of identities are counted; `None`: not counted.
    usage: Option<Arc<UsageCounter>>,
}

impl std::fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApi").finish_non_exhaustive()
    }
}

impl WorkloadApi {
    /// A service over `ctx` that attests callers with the default `unix` attestor.
    pub fn new(ctx: WorkloadApiContext) -> Self {
        Self::with_attestor(ctx, Arc::new(UnixAttestor::default()))
    }

    /// A service over `ctx` that attests callers with `attestor`.
    pub fn with_attestor(ctx: WorkloadApiContext, attestor: Arc<dyn WorkloadAttestor>) -> Self {
        // A sender dropped at once never signals: streams end only when `serve` installs its own.
        let (_never, stop) = watch::channel(false);
        Self {
            ctx,
            attestor,
            attestations: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_ATTESTATIONS)),
            stop,
            usage: None,
        }
    }

    /// The same service, counting in `usage` each identity it delivers, per workload (uid,
    /// binary path and the hash the attestor computed, if any).
    pub fn with_usage(mut self, usage: Arc<UsageCounter>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The same service, running at most `limit` attestations at once (at least one).
    pub(crate) fn with_attestation_limit(mut self, limit: usize) -> Self {
        self.attestations = Arc::new(Semaphore::new(limit.max(1)));
        self
    }

    /// The same service, whose streams end when `stop` turns true.
    pub(crate) fn with_stop_signal(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = stop;
        self
    }

    /// The selectors of the connection's pinned peer: attested on the connection's first call,
    /// then from its cache; refused once the pinned process is gone.
    async fn attest<T>(&self, request: &Request<T>) -> Result<Arc<[Selector]>, Status> {
        let Some(peer) = request.extensions().get::<Arc<ConnectionPeer>>() else {
            tracing::warn!("workload api request without a pinned peer");
            return Err(Status::permission_denied("the caller cannot be identified"));
        };
        peer.selectors(&self.attestor, &self.attestations)
            .await
            .map_err(|e| {
                let caller = peer.caller();
                tracing::debug!(pid = caller.pid, uid = caller.uid, error = %e, "workload api call refused");
                Status::permission_denied("workload attestation failed")
            })
    }

    fn snapshot(&self) -> Arc<IdentitySnapshot> {
        Arc::clone(&self.ctx.snapshots.borrow())
    }

    /// The counter and the caller's workload, when usage is counted.
    fn usage_of<T>(
        &self,
        request: &Request<T>,
        selectors: &[Selector],
    ) -> Option<(Arc<UsageCounter>, Arc<WorkloadBinary>)> {
        let usage = self.usage.as_ref()?;
        let peer = request.extensions().get::<Arc<ConnectionPeer>>()?;
        let workload = WorkloadBinary::new(peer.caller().uid, peer.binary_path(), selectors);
        Some((usage.clone(), Arc::new(workload)))
    }

    /// A stream for the attested caller of a streaming RPC: the first message now (or
    /// `PermissionDenied` if there is none), then one per relevant snapshot change; `observe`
    /// is told of the snapshot behind every message sent.
    fn follow<T>(
        &self,
        selectors: Arc<[Selector]>,
        build: fn(&IdentitySnapshot, &[&crate::snapshot::WorkloadIdentity]) -> Option<T>,
        mut observe: Option<Observe>,
    ) -> Result<ResponseStream<T>, Status>
    where
        T: Clone + PartialEq + Send + Sync + 'static,
    {
        let for_caller = move |snapshot: &IdentitySnapshot| {
            build(snapshot, &snapshot.identities_for(&selectors))
        };
        let mut snapshots = self.ctx.snapshots.clone();
        let current = Arc::clone(&snapshots.borrow_and_update());
        let first = for_caller(&current).ok_or_else(|| Status::permission_denied(NO_IDENTITY))?;
        if let Some(observe) = observe.as_mut() {
            observe(&current);
        }
        Ok(watch_stream(
            snapshots,
            self.stop.clone(),
            first,
            Box::new(for_caller),
            observe,
        ))
    }
}

/// Counts, for one `FetchX509SVID` stream of the workload with `selectors`, what each message
/// delivers: for every identity it carries, a delivery at the clock's time, a fetch when the
/// previous message did not carry that identity, and an SVID when it carries an SVID this
/// stream has not sent before (a message sent for another reason, a new CRL say, repeats the
/// SVID without counting it).
fn x509_usage_observer(
    usage: Arc<UsageCounter>,
    workload: Arc<WorkloadBinary>,
    selectors: Arc<[Selector]>,
    clock: Arc<dyn Clock>,
) -> Observe {
    // By entry, the SVID last sent: held weakly, so neither it nor its key is kept alive here.
    let mut sent: HashMap<String, Weak<X509SvidMaterial>> = HashMap::new();
    Box::new(move |snapshot: &IdentitySnapshot| {
        let now = clock.unix_secs();
        let mut now_sent = HashMap::with_capacity(sent.len());
        for id in served_identities(&snapshot.identities_for(&selectors)) {
            let previous = sent.get(&id.entry_id);
            let delivery = Delivery {
                fetch: previous.is_none(),
                svids: u64::from(previous.is_none_or(|p| p.as_ptr() != Arc::as_ptr(&id.svid))),
            };
            usage.record(&id.entry_id, &workload, delivery, now);
            now_sent.insert(id.entry_id.clone(), Arc::downgrade(&id.svid));
        }
        sent = now_sent;
    })
}

/// Refuses requests without `workload.spiffe.io: true` (Workload Endpoint §3, §6).
fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(WORKLOAD_API_HEADER) {
        Some(v) if v.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(MISSING_HEADER)),
    }
}

fn mint_status(e: &JwtMintError) -> Status {
    tracing::warn!(error = %e, "cannot mint a JWT-SVID");
    match e {
        JwtMintError::Unavailable(_) => {
            Status::unavailable("the server cannot be reached to mint a JWT-SVID")
        }
        JwtMintError::Refused(_) => {
            Status::permission_denied("the server refused to mint a JWT-SVID")
        }
    }
}

/// The trust domain of the token's `sub`, read without verification only to pick the bundle the
/// token is then verified with. Bounded by the JWS size limit.
fn unverified_subject_trust_domain(token: &str) -> Result<TrustDomain, String> {
    if token.len() > sigil_keys::jws::MAX_JWS_BYTES {
        return Err(format!(
            "token is longer than {} bytes",
            sigil_keys::jws::MAX_JWS_BYTES
        ));
    }
    let payload = token
        .split('.')
        .nth(1)
        .ok_or("token is not a compact JWS")?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "token payload is not base64url")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&json).map_err(|_| "token payload is not JSON")?;
    let sub = claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .ok_or("token has no `sub` claim")?;
    SpiffeId::parse(sub)
        .map(|id| id.trust_domain())
        .map_err(|e| format!("token subject is not a SPIFFE ID: {e}"))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        check_header(&request)?;
        let selectors = self.attest(&request).await?;
        let observe = self
            .usage_of(&request, &selectors)
            .map(|(usage, workload)| {
                x509_usage_observer(usage, workload, selectors.clone(), self.ctx.clock.clone())
            });
        Ok(Response::new(self.follow(
            selectors,
            x509_svid_response,
            observe,
        )?))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        check_header(&request)?;
        let selectors = self.attest(&request).await?;
        Ok(Response::new(self.follow(
            selectors,
            x509_bundles_response,
            None,
        )?))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        check_header(&request)?;
        let req = request.get_ref();
        if req.audience.is_empty() || req.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let wanted = match req.spiffe_id.as_str() {
            "" => None,
            id => Some(SpiffeId::parse(id).map_err(|e| {
                Status::invalid_argument(format!("`spiffe_id` is not a valid SPIFFE ID: {e}"))
            })?),
        };
        let selectors = self.attest(&request).await?;
        let snapshot = self.snapshot();
        let mut identities = snapshot.identities_for(&selectors);
        if identities.is_empty() {
            return Err(Status::permission_denied(NO_IDENTITY));
        }
        if let Some(wanted) = &wanted {
            identities.retain(|id| id.spiffe_id == *wanted);
            if identities.is_empty() {
                return Err(Status::permission_denied(format!(
                    "no identity `{wanted}` for this workload"
                )));
            }
        }
        let served = with_unique_hints(&identities);
        let mut svids = Vec::with_capacity(served.len());
        for id in &served {
            let token = self
                .ctx
                .jwt
                .mint(&id.entry_id, &req.audience)
                .await
                .map_err(|e| mint_status(&e))?;
            svids.push(Jwtsvid {
                spiffe_id: id.spiffe_id.to_string(),
                svid: token,
                hint: id.hint.clone(),
            });
        }
        if let Some((usage, workload)) = self.usage_of(&request, &selectors) {
            let now = self.ctx.clock.unix_secs();
            let delivery = Delivery {
                fetch: true,
                svids: 1,
            };
            for id in &served {
                usage.record(&id.entry_id, &workload, delivery, now);
            }
        }
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        check_header(&request)?;
        let selectors = self.attest(&request).await?;
        Ok(Response::new(self.follow(
            selectors,
            jwt_bundles_response,
            None,
        )?))
    }

    /// Validation needs no identity of the caller (the standard does not ask for one), but the
    /// foreign bundles it may use are those its identities federate with, as for
    /// `FetchJWTBundles`. A token of the agent's own trust domain that passes every check but
    /// whose `jti` the server revoked is refused with `InvalidArgument`
    /// ([`REVOKED_JWT_SVID`]), as any other invalid token.
    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        check_header(&request)?;
        let req = request.get_ref();
        if req.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let selectors = self.attest(&request).await?;
        let snapshot = self.snapshot();
        let td = unverified_subject_trust_domain(&req.svid)
            .map_err(|e| Status::invalid_argument(format!("invalid JWT-SVID: {e}")))?;
        let bundle: &TrustBundle = if td == snapshot.trust_domain {
            &snapshot.bundle
        } else {
            let identities = snapshot.identities_for(&selectors);
            let federated = federated_bundles(&snapshot, &identities);
            match federated.get(&td) {
                Some(b) => b,
                None => {
                    return Err(Status::invalid_argument(format!(
                        "invalid JWT-SVID: no bundle for trust domain `{td}`"
                    )));
                }
            }
        };
        let validated = sigil_keys::jwt_svid::validate(
            &req.svid,
            bundle,
            &req.audience,
            self.ctx.clock.unix_secs(),
        )
        .map_err(|e| Status::invalid_argument(format!("invalid JWT-SVID: {e}")))?;
        // Only the agent's own trust domain: the deny-list names tokens its server issued, and
        // a `jti` is unique only per issuer (a foreign token may reuse one).
        if td == snapshot.trust_domain
            && let Some(jti) = validated.claims.get("jti").and_then(|v| v.as_str())
            && snapshot.revoked_jwt_svids.contains(jti)
        {
            tracing::debug!(jti, spiffe_id = %validated.spiffe_id, "refusing a revoked JWT-SVID");
            return Err(Status::invalid_argument(REVOKED_JWT_SVID));
        }
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: validated.spiffe_id.to_string(),
            claims: Some(to_struct(&validated.claims)),
        }))
    }
}
