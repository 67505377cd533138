//! A small HTTP/1.1 client for the admin API over its Unix socket (hyper 1, one connection per
//! call). Non-2xx answers become an error carrying the server's one-line message; answers are
//! read with a size limit and the whole call with a timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sigil_api::ErrorBody;
use tokio::net::UnixStream;

/// Largest admin API answer read, in bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Longest wait for one admin call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the admin API at one socket path.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    /// A client for the admin socket at `socket` (nothing is connected yet).
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// `GET path` decoded as JSON `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        decode(&self.call(Method::GET, path, None).await?)
    }

    /// `GET path`, the raw answer bytes.
    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<Bytes> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with `body` as JSON, answer decoded as `T`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        decode(&self.call(Method::POST, path, Some(encode(body)?)).await?)
    }

    /// `POST path` without a body, answer decoded as `T`.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        decode(&self.call(Method::POST, path, None).await?)
    }

    /// `PUT path` with `body` as JSON, answer decoded as `T`.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        decode(&self.call(Method::PUT, path, Some(encode(body)?)).await?)
    }

    /// `PATCH path` with `body` as JSON, answer decoded as `T`.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        decode(&self.call(Method::PATCH, path, Some(encode(body)?)).await?)
    }

    /// `DELETE path`, answer decoded as `T`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        decode(&self.call(Method::DELETE, path, None).await?)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        tokio::time::timeout(CALL_TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| {
                anyhow!(
                    "the admin API at {} did not answer within {} seconds",
                    self.socket.display(),
                    CALL_TIMEOUT.as_secs()
                )
            })?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|err| {
            anyhow!(
                "cannot reach the admin API at {}: {} (is the server running?)",
                self.socket.display(),
                describe_io_error(&err)
            )
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("cannot talk HTTP to the admin API")?;
        let driver = tokio::spawn(connection);

        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost")
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("cannot build the admin API request")?;
        let response = sender
            .send_request(request)
            .await
            .context("the admin API closed the connection")?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|err| anyhow!("cannot read the admin API answer: {err}"))?
            .to_bytes();
        driver.abort();
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(server_error(status, &bytes))
        }
    }
}

impl AdminClient {
    /// `GET path` streamed into `out` frame by frame: no size limit (an audit export grows
    /// with the log), but at most [`CALL_TIMEOUT`] between two frames. A non-2xx answer is
    /// read (bounded) and returned as the server's message.
    pub async fn download(&self, path: &str, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|err| {
            anyhow!(
                "cannot reach the admin API at {}: {} (is the server running?)",
                self.socket.display(),
                describe_io_error(&err)
            )
        })?;
        let stalled = || {
            anyhow!(
                "the admin API at {} stopped answering for {} seconds",
                self.socket.display(),
                CALL_TIMEOUT.as_secs()
            )
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("cannot talk HTTP to the admin API")?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .context("cannot build the admin API request")?;
        let response = tokio::time::timeout(CALL_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| stalled())?
            .context("the admin API closed the connection")?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = tokio::time::timeout(
                CALL_TIMEOUT,
                Limited::new(body, MAX_RESPONSE_BYTES).collect(),
            )
            .await
            .map_err(|_| stalled())?
            .map_err(|err| anyhow!("cannot read the admin API answer: {err}"))?
            .to_bytes();
            driver.abort();
            return Err(server_error(status, &bytes));
        }
        let mut written = 0u64;
        while let Some(frame) = tokio::time::timeout(CALL_TIMEOUT, body.frame())
            .await
            .map_err(|_| stalled())?
        {
            let frame = frame.map_err(|err| anyhow!("the admin API answer broke off: {err}"))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).context("cannot write the download")?;
                written += data.len() as u64;
            }
        }
        driver.abort();
        Ok(written)
    }
}

/// The server's own message for a non-2xx answer, or a description of the status.
fn server_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(err) => anyhow!("{}", err.error.message),
        Err(_) => anyhow!("the admin API answered HTTP {status}"),
    }
}

fn encode<B: Serialize>(body: &B) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(body).context("cannot encode the request as JSON")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|err| anyhow!("the admin API answered unexpected JSON: {err}"))
}

/// An I/O error as a lowercase phrase without the `(os error N)` suffix, e.g.
/// `no such file or directory`.
pub fn describe_io_error(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => text.get(..i).unwrap_or(&text).to_owned(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_lowercase_phrases() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(describe_io_error(&err), "no such file or directory");
        let err = std::io::Error::from_raw_os_error(111);
        assert_eq!(describe_io_error(&err), "connection refused");
    }

    #[test]
    fn server_errors_carry_the_server_message() {
        let body = br#"{"error":{"code":"invalid_argument","message":"owner is required"}}"#;
        let err = server_error(StatusCode::BAD_REQUEST, body);
        assert_eq!(err.to_string(), "owner is required");
        let err = server_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(
            err.to_string(),
            "the admin API answered HTTP 502 Bad Gateway"
        );
    }

    #[tokio::test]
    async fn missing_socket_is_one_actionable_message() {
        let client = AdminClient::new(Path::new("/nonexistent/sigil/admin.sock"));
        let err = client
            .get::<serde_json::Value>("/api/v1/health")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reach the admin API at /nonexistent/sigil/admin.sock: no such file or directory (is the server running?)"
        );
    }
}
