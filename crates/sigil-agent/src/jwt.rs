//! JWT-SVIDs for workloads: minted by the server on request (the JWT signing key never leaves
//! it) and cached here per entry and audience set until half their life is gone, until the key
//! that signed one is tainted, or until its `jti` is revoked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use async_trait::async_trait;
use sigil_proto::agent::v1 as pb;
use sigil_spiffe::Clock;

use crate::revocation::{RevokedIds, RevokedJwtSvids};
use crate::server_client::Client;
use crate::snapshot::{JwtMintError, JwtSvidMinter};

/// Most cached tokens; the cache is cleared when full (tokens are cheap to re-mint).
const MAX_CACHED: usize = 10_000;

struct CachedToken {
    token: String,
    refresh_at: i64,
    /// The signing key's `kid`.
    kid: Option<String>,
    /// The token's `jti`.
    jti: Option<String>,
}

impl CachedToken {
    /// Whether the token may no longer be served: signed by a key in `tainted` or with a `jti`
    /// in `revoked`.
    fn withdrawn(&self, tainted: &[String], revoked: &RevokedIds) -> bool {
        let signed_by_tainted = !tainted.is_empty()
            && self
                .kid
                .as_ref()
                .is_some_and(|kid| tainted.binary_search(kid).is_ok());
        let is_revoked =
            !revoked.is_empty() && self.jti.as_deref().is_some_and(|jti| revoked.contains(jti));
        signed_by_tainted || is_revoked
    }
}

/// The authorities the server last said are tainted (shared with the session that receives
/// them), sorted.
pub(crate) type TaintedAuthorities = Arc<ArcSwap<Vec<String>>>;

/// Mints through the agent's current server connection.
pub struct ServerJwtMinter {
    client: Arc<ArcSwapOption<Client>>,
    clock: Arc<dyn Clock>,
    tainted: TaintedAuthorities,
    revoked: RevokedJwtSvids,
    cache: Mutex<HashMap<(String, Vec<String>), CachedToken>>,
}

impl ServerJwtMinter {
    /// A minter using whatever connection `client` holds at call time; cached tokens signed by
    /// a key in `tainted` or whose `jti` is in `revoked` are dropped instead of served.
    pub(crate) fn new(
        client: Arc<ArcSwapOption<Client>>,
        tainted: TaintedAuthorities,
        revoked: RevokedJwtSvids,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            clock,
            tainted,
            revoked,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl JwtSvidMinter for ServerJwtMinter {
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<String, JwtMintError> {
        let mut audiences = audience.to_vec();
        audiences.sort();
        audiences.dedup();
        let key = (entry_id.to_owned(), audiences.clone());
        let now = self.clock.unix_secs();
        if let Ok(mut cache) = self.cache.lock()
            && let Some(hit) = cache.get(&key)
            && hit.refresh_at > now
        {
            if !hit.withdrawn(&self.tainted.load(), &self.revoked.load()) {
                return Ok(hit.token.clone());
            }
            cache.remove(&key);
        }
        let client = self
            .client
            .load_full()
            .ok_or_else(|| JwtMintError::Unavailable("not connected to the server".into()))?;
        let mut client = Client::clone(&client);
        let resp = client
            .new_jwt_svid(pb::NewJwtSvidRequest {
                entry_id: entry_id.to_owned(),
                audience: audience.to_vec(),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                    JwtMintError::Unavailable(s.message().to_owned())
                }
                _ => JwtMintError::Refused(s.message().to_owned()),
            })?
            .into_inner();
        let life = resp.expires_at.saturating_sub(resp.issued_at).max(0);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                key,
                CachedToken {
                    kid: sigil_keys::jws::unverified_kid(&resp.token),
                    jti: sigil_keys::jws::unverified_jti(&resp.token),
                    token: resp.token.clone(),
                    refresh_at: resp.issued_at.saturating_add(life / 2),
                },
            );
        }
        Ok(resp.token)
    }
}

#[cfg(test)]
mod tests {
    use sigil_spiffe::time::from_unix_secs;
    use sigil_testkit::FakeClock;

    use super::*;

    const NOW: i64 = 1_700_000_000;

    /// A minter without a server connection, holding one cached token signed by key `kid`.
    fn minter_with_cached(kid: &str, tainted: &TaintedAuthorities) -> ServerJwtMinter {
        let minter = ServerJwtMinter::new(
            Arc::new(ArcSwapOption::empty()),
            tainted.clone(),
            Arc::new(ArcSwap::from_pointee(RevokedIds::default())),
            Arc::new(FakeClock::new(from_unix_secs(NOW))),
        );
        minter.cache.lock().unwrap().insert(
            ("e1".to_owned(), vec!["aud".to_owned()]),
            CachedToken {
                token: "cached-token".into(),
                refresh_at: NOW + 100,
                kid: Some(kid.to_owned()),
                jti: None,
            },
        );
        minter
    }

    fn revoked_jtis(jtis: &[&str]) -> Arc<RevokedIds> {
        let list = jtis
            .iter()
            .map(|jti| pb::RevokedCredential {
                id: (*jti).to_owned(),
                expires_at: NOW + 300,
            })
            .collect();
        Arc::new(RevokedIds::jwt_ids(list, NOW))
    }

    #[tokio::test]
    async fn a_cached_token_is_served_until_its_key_is_tainted() {
        let tainted: TaintedAuthorities = Arc::new(ArcSwap::from_pointee(vec!["other".into()]));
        let minter = minter_with_cached("k1", &tainted);
        let audience = ["aud".to_owned()];
        assert_eq!(minter.mint("e1", &audience).await.unwrap(), "cached-token");

        tainted.store(Arc::new(vec!["k1".into(), "other".into()]));
        // Not served from the cache: the minter goes to the server (absent here).
        assert!(matches!(
            minter.mint("e1", &audience).await,
            Err(JwtMintError::Unavailable(_))
        ));
        assert!(
            minter.cache.lock().unwrap().is_empty(),
            "the token was not dropped"
        );
    }

    #[tokio::test]
    async fn a_cached_token_whose_jti_is_revoked_is_not_served_while_others_are() {
        let revoked: RevokedJwtSvids = Arc::new(ArcSwap::from_pointee(RevokedIds::default()));
        let minter = ServerJwtMinter::new(
            Arc::new(ArcSwapOption::empty()),
            Arc::new(ArcSwap::from_pointee(Vec::new())),
            revoked.clone(),
            Arc::new(FakeClock::new(from_unix_secs(NOW))),
        );
        // Real signed tokens: the jti is read from them as the minter does for fresh ones.
        let key = sigil_keys::PrivateKey::generate().unwrap();
        let header = serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let aud = |a: &str| vec![a.to_owned()];
        for (audience, jti) in [("aud-1", "jti-1"), ("aud-2", "jti-2")] {
            let claims = serde_json::json!({"sub": "spiffe://example.org/w", "aud": [audience], "exp": NOW + 300, "jti": jti});
            let token = sigil_keys::jws::sign_compact(&header, &claims, &key).unwrap();
            minter.cache.lock().unwrap().insert(
                ("e1".to_owned(), aud(audience)),
                CachedToken {
                    kid: sigil_keys::jws::unverified_kid(&token),
                    jti: sigil_keys::jws::unverified_jti(&token),
                    token,
                    refresh_at: NOW + 150,
                },
            );
        }
        let first = minter.mint("e1", &aud("aud-1")).await.unwrap();
        assert_eq!(
            sigil_keys::jws::unverified_jti(&first).as_deref(),
            Some("jti-1")
        );
        assert!(minter.mint("e1", &aud("aud-2")).await.is_ok());

        revoked.store(revoked_jtis(&["jti-1", "jti-elsewhere"]));
        assert!(
            matches!(
                minter.mint("e1", &aud("aud-1")).await,
                Err(JwtMintError::Unavailable(_))
            ),
            "a revoked token must go back to the server (absent here)"
        );
        let second = minter.mint("e1", &aud("aud-2")).await.unwrap();
        assert_eq!(
            sigil_keys::jws::unverified_jti(&second).as_deref(),
            Some("jti-2")
        );
        let cache = minter.cache.lock().unwrap();
        assert_eq!(cache.len(), 1, "only the revoked token was dropped");
        assert!(cache.contains_key(&("e1".to_owned(), aud("aud-2"))));
    }
}
