//! The agent's connection to the server: a tonic channel over mutual TLS, the server verified as
//! `spiffe://<td>/sigil/server` against the live trust roots, the agent presenting its live SVID
//! (or nothing, for the first attestation).

use std::sync::Arc;

use sigil_proto::agent::v1::agent_service_client::AgentServiceClient;
use sigil_spiffe::TrustDomain;
use sigil_tls::{LiveRoots, LiveSvid, ServerName, SpiffeServerVerifier, TlsConnector, TlsPolicy};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// A connected agent API client; cheap to clone (clones share the channel).
pub type Client = AgentServiceClient<Channel>;

/// Largest message the agent decodes from the server (a sync message carrying a large set).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What went wrong connecting to the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] sigil_tls::TlsError),
    #[error("cannot connect to the server at `{addr}`: {source}")]
    Transport {
        addr: String,
        source: tonic::transport::Error,
    },
}

/// Opens a channel to the server at `addr` (`host:port`) under the key-exchange policy `tls`.
pub async fn connect(
    addr: &str,
    td: &TrustDomain,
    roots: Arc<LiveRoots>,
    svid: Option<Arc<LiveSvid>>,
    tls: TlsPolicy,
) -> Result<Client, ConnectError> {
    let verifier = Arc::new(SpiffeServerVerifier::new(roots, td.sigil_server_id()));
    let config = Arc::new(sigil_tls::client_config(svid, verifier, tls)?);
    let target = addr.to_owned();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(&target).await?;
            let _ = tcp.set_nodelay(true);
            // The name is not checked (the verifier checks the SPIFFE ID) but rustls needs one.
            let name = ServerName::try_from("sigil-server")
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            tracing::debug!(
                server = %target,
                key_exchange = ?tls.get_ref().1.negotiated_key_exchange_group().map(|g| g.name()),
                "server TLS handshake completed"
            );
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let channel = Endpoint::from_static("http://sigil-server")
        .connect_timeout(std::time::Duration::from_secs(10))
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
        .map_err(|source| ConnectError::Transport {
            addr: addr.to_owned(),
            source,
        })?;
    Ok(AgentServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}
