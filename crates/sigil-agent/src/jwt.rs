//! JWT-SVIDs for workloads: minted by the server on request (the JWT signing key never leaves
//! it) and cached here per entry and audience set until half their life is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use sigil_proto::agent::v1 as pb;
use sigil_spiffe::Clock;

use crate::server_client::Client;
use crate::snapshot::{JwtMintError, JwtSvidMinter};

/// Most cached tokens; the cache is cleared when full (tokens are cheap to re-mint).
const MAX_CACHED: usize = 10_000;

struct CachedToken {
    token: String,
    refresh_at: i64,
}

/// Mints through the agent's current server connection.
pub struct ServerJwtMinter {
    client: Arc<ArcSwapOption<Client>>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<(String, Vec<String>), CachedToken>>,
}

impl ServerJwtMinter {
    /// A minter using whatever connection `client` holds at call time.
    pub(crate) fn new(client: Arc<ArcSwapOption<Client>>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            clock,
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
        if let Ok(cache) = self.cache.lock()
            && let Some(hit) = cache.get(&key)
            && hit.refresh_at > now
        {
            return Ok(hit.token.clone());
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
                    token: resp.token.clone(),
                    refresh_at: resp.issued_at.saturating_add(life / 2),
                },
            );
        }
        Ok(resp.token)
    }
}
