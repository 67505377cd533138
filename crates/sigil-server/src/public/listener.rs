//! The public listener's connections for axum: TLS handshakes each in a task of their own (a
//! slow client cannot stall the others) and bounded in time, or plain TCP on loopback.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sigil_tls::TlsAcceptor;
use sigil_tls::server::TlsStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for axum to take them.
const ACCEPT_QUEUE: usize = 64;

/// Binds the public listener's address.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Who is at the other end of a public connection: its address and, when it presented an
/// X509-SVID of this trust domain that the TLS handshake verified (mutual TLS client
/// authentication, RFC 8705), its SPIFFE ID. Handlers read it as `ConnectInfo<PeerInfo>`.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    pub client_spiffe_id: Option<sigil_spiffe::SpiffeId>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, PublicListener>>
    for PeerInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, PublicListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Connections of the public listener, TLS (handshaken in the background) or plain.
pub enum PublicListener {
    Tls {
        connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
        accept_task: tokio::task::JoinHandle<()>,
    },
    Plain(TcpListener),
}

impl PublicListener {
    /// TLS with `acceptor` on `listener`.
    pub fn tls(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, connections) = mpsc::channel(ACCEPT_QUEUE);
        let accept_task = tokio::spawn(async move {
            loop {
                let (tcp, remote) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "public listener accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let conn_tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = conn_tx.send((tls, remote)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "public TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "public TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self::Tls {
            connections,
            local,
            accept_task,
        })
    }
}

impl Drop for PublicListener {
    fn drop(&mut self) {
        if let Self::Tls { accept_task, .. } = self {
            accept_task.abort();
        }
    }
}

/// A connection of either kind.
pub enum PublicConn {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

impl tokio::io::AsyncRead for PublicConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for PublicConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            Self::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl axum::serve::Listener for PublicListener {
    type Io = PublicConn;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            Self::Tls { connections, .. } => match connections.recv().await {
                Some((tls, remote)) => {
                    // Only a certificate the verifier accepted gets here (the handshake fails
                    // otherwise), so its SPIFFE ID is the client's.
                    let client_spiffe_id = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| sigil_tls::peer_spiffe_id(leaf).ok());
                    (
                        PublicConn::Tls(Box::new(tls)),
                        PeerInfo {
                            remote,
                            client_spiffe_id,
                        },
                    )
                }
                // The accept task is gone: no connection will come.
                None => std::future::pending().await,
            },
            Self::Plain(listener) => {
                // axum's own accept loop for TCP, which retries failed accepts.
                let (tcp, remote) = axum::serve::Listener::accept(listener).await;
                (
                    PublicConn::Plain(tcp),
                    PeerInfo {
                        remote,
                        client_spiffe_id: None,
                    },
                )
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        let local = match self {
            Self::Tls { local, .. } => *local,
            Self::Plain(listener) => listener.local_addr()?,
        };
        Ok(PeerInfo {
            remote: local,
            client_spiffe_id: None,
        })
    }
}
