//! External OIDC issuers whose JWTs token exchange accepts (CI systems, Kubernetes service
//! accounts, clouds): each issuer's verification keys, from a static JWK Set file, a `jwks_uri`
//! or OIDC discovery, cached in memory. An unknown `kid` fetches the keys again (a key rotation
//! at the issuer), at most once per refresh interval ([`DEFAULT_REFRESH_INTERVAL`] unless
//! configured) so that tokens with made-up key ids cannot make the server hammer the issuer; keys older than [`MAX_KEYS_AGE`] are fetched
//! again on the next use so a key the issuer withdrew stops verifying.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sigil_keys::jose::{JwsAlgorithm, KeySet, VerifyingKey};
use sigil_tls::{HttpsServerAuth, TlsPolicy};
use tokio::sync::Mutex;

use super::mapping::{AttributeMapping, SpiffeIdTemplate};
use crate::federation::fetch::{self, EndpointUrl, FetchError};

/// Shortest time between two fetches of one issuer's keys, by default.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Longest fetched keys are used before they are fetched again.
pub const MAX_KEYS_AGE: Duration = Duration::from_secs(3600);
/// Largest discovery document read, in bytes.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Longest one fetch (discovery and keys together) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery,
    /// A JWK Set URL (https).
    JwksUri(String),
    /// A JWK Set read from a file at start.
    Static(KeySet),
}

/// One trusted external issuer, as configured.
#[derive(Debug, Clone)]
pub struct ExternalIssuerConfig {
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// The team or contact accountable for trusting this issuer (not blank, at most 256 bytes,
    /// as the configuration requires); listed by the governance findings.
    pub owner: String,
    pub keys: KeySource,
    /// Trust anchors (DER) for its https endpoints; `None`: the system's.
    pub roots: Option<Vec<Vec<u8>>>,
    /// A token's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// A token whose `iat` is older than this many seconds is refused; `None`: no limit.
    pub max_token_age: Option<u64>,
    /// Signature algorithms accepted (never `none` or HMAC).
    pub algorithms: Vec<JwsAlgorithm>,
    pub attributes: AttributeMapping,
    /// The SPIFFE ID its tokens are exchanged for.
    pub spiffe_id: SpiffeIdTemplate,
    /// Scopes its subjects may be granted; `None`: the `[oauth]` scopes.
    pub scopes: Option<Vec<String>>,
    /// Shortest time between two fetches of its keys.
    pub refresh_interval: Duration,
}

/// Why an issuer's key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyLookupError {
    #[error("no key of issuer `{issuer}` has key id `{kid}` for {alg}")]
    Unknown {
        issuer: String,
        kid: String,
        alg: &'static str,
    },
    #[error("cannot fetch the keys of issuer `{issuer}`: {cause}")]
    Fetch { issuer: String, cause: String },
}

struct Fetched {
    keys: KeySet,
    at: Option<Instant>,
}

/// A configured issuer and its cached keys.
pub struct ExternalIssuer {
    pub config: ExternalIssuerConfig,
    keys: ArcSwap<Fetched>,
    /// Held while fetching; the time of the last attempt.
    last_attempt: Mutex<Option<Instant>>,
    policy: TlsPolicy,
    system_roots: Arc<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("issuer", &self.config.issuer)
            .field("keys", &self.keys.load().keys.len())
            .finish_non_exhaustive()
    }
}

impl ExternalIssuer {
    /// The issuer of `config`; keys from a file are there at once, fetched ones on first use.
    pub fn new(
        config: ExternalIssuerConfig,
        policy: TlsPolicy,
        system_roots: Arc<Vec<Vec<u8>>>,
    ) -> Self {
        let keys = match &config.keys {
            KeySource::Static(keys) => keys.clone(),
            _ => KeySet::default(),
        };
        Self {
            config,
            keys: ArcSwap::from_pointee(Fetched { keys, at: None }),
            last_attempt: Mutex::new(None),
            policy,
            system_roots,
        }
    }

    /// The key for a token with `kid` signed with `alg`, fetching the keys again when it is
    /// unknown (at most once per refresh interval) or the held ones are stale.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<VerifyingKey, KeyLookupError> {
        let fresh = |held: &Fetched| {
            matches!(self.config.keys, KeySource::Static(_))
                || held.at.is_some_and(|at| at.elapsed() < MAX_KEYS_AGE)
        };
        {
            let held = self.keys.load();
            if fresh(&held)
                && let Some(key) = held.keys.find(kid, alg)
            {
                return Ok(key.clone());
            }
        }
        if !matches!(self.config.keys, KeySource::Static(_)) {
            let mut last = self.last_attempt.lock().await;
            // Another request may have fetched while this one waited.
            let held = self.keys.load();
            let found = held.keys.find(kid, alg).cloned();
            let due = last.is_none_or(|at| at.elapsed() >= self.config.refresh_interval);
            if (found.is_none() || !fresh(&held)) && due {
                *last = Some(Instant::now());
                match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
                    Ok(Ok(keys)) => {
                        tracing::info!(issuer = %self.config.issuer, keys = keys.len(), skipped = keys.skipped(), "fetched the keys of an external issuer");
                        self.keys.store(Arc::new(Fetched {
                            keys,
                            at: Some(Instant::now()),
                        }));
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot fetch the keys of an external issuer");
                        if held.at.is_none() {
                            return Err(KeyLookupError::Fetch {
                                issuer: self.config.issuer.clone(),
                                cause: e.to_string(),
                            });
                        }
                    }
                    Err(_) => {
                        tracing::warn!(issuer = %self.config.issuer, "fetching the keys of an external issuer timed out");
                        if held.at.is_none() {
                            return Err(KeyLookupError::Fetch {
                                issuer: self.config.issuer.clone(),
                                cause: format!("no answer within {FETCH_TIMEOUT:?}"),
                            });
                        }
                    }
                }
            }
        }
        self.keys
            .load()
            .keys
            .find(kid, alg)
            .cloned()
            .ok_or_else(|| KeyLookupError::Unknown {
                issuer: self.config.issuer.clone(),
                kid: kid.unwrap_or("(none)").to_owned(),
                alg: alg.name(),
            })
    }

    fn auth(&self) -> HttpsServerAuth {
        HttpsServerAuth::WebPki(
            self.config
                .roots
                .clone()
                .unwrap_or_else(|| self.system_roots.as_ref().clone()),
        )
    }

    /// Fetches the key set from the issuer (through discovery when configured so).
    async fn fetch(&self) -> Result<KeySet, IssuerFetchError> {
        let auth = self.auth();
        let jwks_uri = match &self.config.keys {
            KeySource::Static(keys) => return Ok(keys.clone()),
            KeySource::JwksUri(uri) => uri.clone(),
            KeySource::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let body = fetch::get(
                    &EndpointUrl::parse(&url)?,
                    &auth,
                    self.policy,
                    MAX_DISCOVERY_BYTES,
                    "sigil-oauth",
                )
                .await?;
                discovered_jwks_uri(&body, &self.config.issuer)?
            }
        };
        let body = fetch::get(
            &EndpointUrl::parse(&jwks_uri)?,
            &auth,
            self.policy,
            KeySet::MAX_DOCUMENT_BYTES,
            "sigil-oauth",
        )
        .await?;
        KeySet::parse(&body).map_err(|e| IssuerFetchError::Keys(e.to_string()))
    }
}

/// Why fetching an issuer's keys failed.
#[derive(Debug, thiserror::Error)]
enum IssuerFetchError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the discovery document is invalid: {0}")]
    Discovery(String),
    #[error("the key set is invalid: {0}")]
    Keys(String),
}

/// The `jwks_uri` of discovery document `body`, whose `issuer` must be exactly `issuer` (OpenID
/// Connect Discovery §4.3).
fn discovered_jwks_uri(body: &[u8], issuer: &str) -> Result<String, IssuerFetchError> {
    let document: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| IssuerFetchError::Discovery("not JSON".to_owned()))?;
    let found = document.get("issuer").and_then(serde_json::Value::as_str);
    if found != Some(issuer) {
        return Err(IssuerFetchError::Discovery(format!(
            "it names issuer `{}`, not `{issuer}`",
            found
                .unwrap_or("(none)")
                .chars()
                .take(200)
                .collect::<String>()
        )));
    }
    document
        .get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| IssuerFetchError::Discovery("it has no `jwks_uri`".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_must_name_the_configured_issuer() {
        let doc = br#"{"issuer":"https://a.example","jwks_uri":"https://a.example/keys"}"#;
        assert_eq!(
            discovered_jwks_uri(doc, "https://a.example").unwrap(),
            "https://a.example/keys"
        );
        assert!(
            discovered_jwks_uri(doc, "https://b.example")
                .unwrap_err()
                .to_string()
                .contains("not `https://b.example`")
        );
        assert!(
            discovered_jwks_uri(br#"{"issuer":"https://a.example"}"#, "https://a.example").is_err()
        );
        assert!(discovered_jwks_uri(b"[", "https://a.example").is_err());
    }
}
