//! The agent API's TLS listener: accepts TCP connections, completes the TLS handshake off the
//! accept loop, and hands tonic a stream of connections that carry the peer's verified
//! certificate chain (as [`AgentPeer`]) into every request's extensions.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sigil_spiffe::SpiffeId;
use sigil_tls::TlsAcceptor;
use sigil_tls::server::TlsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::Connected;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server knows about the other end of an agent API connection.
#[derive(Debug, Clone)]
pub struct AgentPeer {
    /// What the client's leaf certificate (verified by the TLS layer) says, read once per
    /// connection rather than on every request; `None` when the client sent no certificate
    /// (only `AttestAgent` accepts that).
    pub leaf: Option<Arc<Result<PeerLeaf, String>>>,
    pub remote: SocketAddr,
}

/// The facts of a client's leaf certificate every agent API request checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLeaf {
    pub spiffe_id: SpiffeId,
    /// Lowercase hex serial number.
    pub serial: String,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

impl PeerLeaf {
    /// Reads a leaf certificate; the error says what is wrong with it.
    pub fn read(der: &[u8]) -> Result<Self, String> {
        let spiffe_id =
            sigil_tls::peer_spiffe_id(der).map_err(|e| format!("client certificate: {e}"))?;
        let (serial, not_after) = crate::issuer::cert_serial_and_expiry(der)
            .ok_or_else(|| "client certificate does not parse".to_owned())?;
        Ok(Self {
            spiffe_id,
            serial,
            not_after,
        })
    }
}

/// A TLS connection from an agent.
pub struct AgentConn {
    inner: TlsStream<TcpStream>,
    peer: AgentPeer,
}

impl Connected for AgentConn {
    type ConnectInfo = AgentPeer;
    fn connect_info(&self) -> AgentPeer {
        self.peer.clone()
    }
}

impl AsyncRead for AgentConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AgentConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` until the returned stream's receiver is dropped; each
/// handshake runs in its own task so a slow client cannot stall the others.
pub fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> (
    tokio_stream::wrappers::ReceiverStream<io::Result<AgentConn>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "agent API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let conn_tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let session = tls.get_ref().1;
                        tracing::debug!(
                            %remote,
                            key_exchange = ?session.negotiated_key_exchange_group().map(|g| g.name()),
                            client_certificate = session.peer_certificates().is_some(),
                            "agent TLS handshake completed"
                        );
                        let leaf = session
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|leaf| Arc::new(PeerLeaf::read(leaf)));
                        let conn = AgentConn {
                            inner: tls,
                            peer: AgentPeer { leaf, remote },
                        };
                        let _ = conn_tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "agent TLS handshake failed"),
                    Err(_) => tracing::info!(%remote, "agent TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), task)
}
