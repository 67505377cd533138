//! The `bao server -dev` child that the load bench (PKI engine) and the credentials bench
//! (database engine) measure Sigil against: started on a free 127.0.0.1 port with the bench's
//! root token, waited on until `sys/health` answers, killed on drop; and the keep-alive HTTP/1.1
//! connection that talks to it with that token. What each bench configures and times stays in
//! its own `openbao.rs`.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Longest a bench waits for the dev server to answer; only ever a failure bound.
const START_PATIENCE: Duration = Duration::from_secs(60);
/// The child's stdout and stderr, in its temporary directory.
const LOG_FILE: &str = "bao.log";

/// A `bao server -dev` child on a free 127.0.0.1 port, killed on drop.
pub struct DevServer {
    child: Child,
    addr: SocketAddr,
    /// The root token given to the child on its command line; every [`Conn`] sends it.
    root_token: &'static str,
    /// Holds the child's log and serves as its `HOME`.
    dir: tempfile::TempDir,
}

impl DevServer {
    /// Starts `binary` as a dev server (in-memory storage, plain HTTP) whose root token is
    /// `root_token` and waits until it answers `sys/health` as unsealed; panics, with the
    /// child's log, if it exits or does not answer in time.
    pub async fn start(binary: &Path, root_token: &'static str) -> Self {
        let addr = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join(LOG_FILE)).unwrap();
        let child = Command::new(binary)
            .args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address={addr}"),
            ])
            // The token helper and any other per-user state stay out of the caller's home.
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", binary.display()));
        let mut server = Self {
            child,
            addr,
            root_token,
            dir,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("`bao server -dev` exited ({status}):\n{}", server.log());
            }
            if healthy(addr, root_token).await {
                return server;
            }
            if started.elapsed() > START_PATIENCE {
                panic!(
                    "`bao server -dev` did not answer on {addr}:\n{}",
                    server.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the child has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default()
    }

    /// The child's process ID.
    #[allow(
        dead_code,
        reason = "only the load bench measures the child's CPU time; the credentials bench includes this module too"
    )]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new keep-alive connection to the dev server.
    pub async fn connect(&self) -> std::io::Result<Conn> {
        connect(self.addr, self.root_token).await
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection to the dev server, sending the root token with every
/// request; its driver task ends with it.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    root_token: &'static str,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// `method path` with a JSON `body` (empty for none); the status and the response body as
    /// JSON (`null` when it is not JSON).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Value), hyper::Error> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Vault-Token", self.root_token)
            .body(Full::new(body))
            .unwrap();
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// [`Conn::request`] with `body` serialised, or no body.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), hyper::Error> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(serde_json::to_vec(b).unwrap()));
        self.request(method, path, body).await
    }

    /// OpenBao's version, from `sys/health`.
    pub async fn version(&mut self) -> String {
        let (_, health) = self.call("GET", "/v1/sys/health", None).await.unwrap();
        health["version"]
            .as_str()
            .unwrap_or("(unknown version)")
            .to_owned()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(addr: SocketAddr, root_token: &'static str) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn {
        sender,
        host: addr.to_string(),
        root_token,
        driver,
    })
}

/// Whether the dev server at `addr` answers `sys/health` with a 200 (initialised, unsealed,
/// active).
async fn healthy(addr: SocketAddr, root_token: &'static str) -> bool {
    let Ok(mut conn) = connect(addr, root_token).await else {
        return false;
    };
    matches!(
        conn.call("GET", "/v1/sys/health", None).await,
        Ok((StatusCode::OK, _))
    )
}

/// A 127.0.0.1 address nothing listens on (the port is free when this returns).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
