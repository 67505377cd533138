//! OAuth 2.0 on the public listener: token exchange (RFC 8693) that turns JWT-SVIDs of this or a
//! federated trust domain and JWTs of configured external OIDC issuers into scoped Sigil
//! credentials, client authentication with SVIDs (draft-ietf-oauth-spiffe-client-auth) and
//! RFC 7523 assertions, introspection (RFC 7662) and revocation (RFC 7009).
//!
//! - `POST /oauth2/token`: [`token`]; `POST /oauth2/introspect` and `POST /oauth2/revoke`:
//!   [`introspect`]; `POST /authz/v1/decide` (policy decisions for any service): [`authz`]. Bodies are forms of at most [`MAX_BODY_BYTES`]; every token in them at
//!   most 16 KiB; every error is the protocol's JSON error body ([`error`]).
//! - Who the presented tokens speak for: [`tokens`] (with [`external`] issuers' keys, and
//!   [`mapping`] for their claims); who the client is: [`client_auth`]. Which of them may be
//!   exchanged, and for what, the Cedar policies decide (action `Exchange`, in [`token`]).
//! - What is issued goes through the server's one issuance choke point,
//!   [`crate::issuer::Issuer::exchanged_token`], so the inventory (and with it revocation) sees it.

pub mod authz;
pub mod client_auth;
pub mod error;
pub mod external;
pub mod form;
pub mod introspect;
pub mod mapping;
pub mod replay;
pub mod token;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use sigil_keys::jose::VerifyingKey;
use sigil_spiffe::{Clock, TrustDomain};
use sigil_store::Datastore;
use sigil_tls::TlsPolicy;

use crate::ca::CaManager;
use crate::federation::ForeignBundles;
use crate::issuer::Issuer;

pub use external::{ExternalIssuer, ExternalIssuerConfig, KeySource};

/// The token exchange grant type (RFC 8693 §2.1).
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Client assertion type of a JWT-SVID (draft-ietf-oauth-spiffe-client-auth).
pub const ASSERTION_JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/// Client assertion type of an RFC 7523 JWT.
pub const ASSERTION_JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Token type: an OAuth access token (RFC 8693 §3).
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Token type: a JWT (RFC 8693 §3); as a requested type, a JWT-SVID.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Token type: an OpenID Connect ID token (RFC 8693 §3).
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Largest request body, in bytes: room for a subject token, an actor token and a client
/// assertion of 16 KiB each.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Path of the introspection endpoint.
pub const INTROSPECT_PATH: &str = "/oauth2/introspect";
/// Path of the revocation endpoint.
pub const REVOKE_PATH: &str = "/oauth2/revoke";
/// Path of the policy decision endpoint.
pub const DECIDE_PATH: &str = "/authz/v1/decide";

/// Federated trust domains whose JWT-SVIDs token exchange accepts as subjects or actors.
#[derive(Debug, Clone)]
pub struct FederatedSubjects {
    pub trust_domain: TrustDomain,
    /// The SPIFFE ID of this trust domain its subjects are exchanged for (attributes
    /// `trust_domain`, `path`, `spiffe_id` and the token's string claims); `None`: they keep
    /// their own SPIFFE ID, which only access tokens can carry.
    pub spiffe_id: Option<mapping::SpiffeIdTemplate>,
    /// Scopes its subjects may be granted; `None`: the `[oauth]` scopes.
    pub scopes: Option<Vec<String>>,
}

/// `[oauth]`: token exchange and its endpoints.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Longest lifetime of an issued access token, seconds.
    pub access_token_ttl: u64,
    /// Longest lifetime of a JWT-SVID issued by exchange, seconds.
    pub jwt_svid_ttl: u64,
    /// Most actors in a delegation chain (`act`, nested).
    pub max_delegation_depth: usize,
    /// Scopes that may be granted to this trust domain's identities (and others' by default).
    pub scopes: Vec<String>,
    /// Audiences and resources tokens may be issued for; `None`: any.
    pub audiences: Option<Vec<String>>,
    pub issuers: Vec<ExternalIssuerConfig>,
    pub federated: Vec<FederatedSubjects>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: 300,
            jwt_svid_ttl: 300,
            max_delegation_depth: 4,
            scopes: Vec::new(),
            audiences: None,
            issuers: Vec::new(),
            federated: Vec::new(),
        }
    }
}

/// Token exchange as the public listener serves it.
pub struct OAuth {
    config: OAuthConfig,
    pub(crate) issuer_url: Arc<str>,
    pub(crate) token_endpoint: String,
    trust_domain: TrustDomain,
    ca: Arc<CaManager>,
    issuer: Arc<Issuer>,
    foreign: Arc<ForeignBundles>,
    store: Arc<dyn Datastore>,
    clock: Arc<dyn Clock>,
    externals: Vec<ExternalIssuer>,
    replay: replay::ReplayCache,
    /// Verification keys of JWT authorities, by their SPKI DER.
    key_cache: Mutex<HashMap<Vec<u8>, VerifyingKey>>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("issuer", &self.issuer_url)
            .field("externals", &self.externals)
            .finish_non_exhaustive()
    }
}

/// What [`OAuth::new`] needs from the server.
pub struct OAuthParts {
    pub config: OAuthConfig,
    /// The OIDC issuer URL; the endpoints live under it.
    pub issuer_url: String,
    pub ca: Arc<CaManager>,
    pub issuer: Arc<Issuer>,
    pub foreign: Arc<ForeignBundles>,
    pub store: Arc<dyn Datastore>,
    pub clock: Arc<dyn Clock>,
    pub policy: TlsPolicy,
    /// Trust anchors for external issuers without their own.
    pub system_roots: Arc<Vec<Vec<u8>>>,
}

impl OAuth {
    pub fn new(parts: OAuthParts) -> Self {
        let base = parts.issuer_url.trim_end_matches('/').to_owned();
        let externals = parts
            .config
            .issuers
            .iter()
            .cloned()
            .map(|c| ExternalIssuer::new(c, parts.policy, parts.system_roots.clone()))
            .collect();
        Self {
            trust_domain: parts.ca.trust_domain().clone(),
            token_endpoint: format!("{base}{TOKEN_PATH}"),
            issuer_url: Arc::from(parts.issuer_url),
            config: parts.config,
            ca: parts.ca,
            issuer: parts.issuer,
            foreign: parts.foreign,
            store: parts.store,
            clock: parts.clock,
            externals,
            replay: replay::ReplayCache::default(),
            key_cache: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint URLs for the discovery document: token, introspection, revocation.
    pub fn endpoints(&self) -> [String; 3] {
        let base = self.issuer_url.trim_end_matches('/');
        [
            self.token_endpoint.clone(),
            format!("{base}{INTROSPECT_PATH}"),
            format!("{base}{REVOKE_PATH}"),
        ]
    }
}

/// The OAuth routes, for the public listener's router.
pub fn router(oauth: Arc<OAuth>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token::token))
        .route(INTROSPECT_PATH, post(introspect::introspect))
        .route(REVOKE_PATH, post(introspect::revoke))
        .route(DECIDE_PATH, post(authz::decide))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(oauth)
}
