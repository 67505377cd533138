//! The grpcio `:authority` workaround: [`AuthorityRewrite`] wraps an accepted Unix stream and
//! rewrites the client's HTTP/2 header blocks so that an `:authority` which is not a URI authority
//! becomes `localhost` before the server's HTTP/2 stack (h2) sees it.
//!
//! Why: clients built on grpcio's C core (py-spiffe among them) send the percent-encoded socket
//! path, such as `tmp%2Fagent.sock`, as `:authority`; h2 rejects that request with RST_STREAM
//! PROTOCOL_ERROR, so those clients could not use the Workload API at all. The server never
//! uses the authority of a Unix-socket request, so replacing it loses nothing.
//!
//! How: the server-bound bytes are parsed as HTTP/2 frames; every header block is decoded with an
//! HPACK decoder that follows the client's dynamic table and re-encoded with literal fields that
//! are never indexed, so the server's HPACK table stays empty and in step. Every other frame and
//! every server-to-client byte pass through untouched. Buffers are bounded
//! ([`MAX_HEADER_BLOCK_BYTES`], [`MAX_HEADER_LIST_BYTES`]); anything malformed ends the
//! connection with an I/O error of kind `InvalidData`.

mod hpack;
mod huffman;
mod rewriter;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use rewriter::FrameRewriter;
pub use rewriter::{MAX_HEADER_BLOCK_BYTES, MAX_HEADER_LIST_BYTES, REPLACEMENT_AUTHORITY};

/// Size of each read from the wrapped stream.
const READ_CHUNK: usize = 16 * 1024;

/// Why the client's byte stream could not be rewritten; carried inside the `InvalidData`
/// I/O error that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderRewriteError {
    #[error("the client did not open with the http/2 connection preface")]
    PrefaceMismatch,
    #[error("header block larger than {MAX_HEADER_BLOCK_BYTES} bytes")]
    HeaderBlockTooLarge,
    #[error("decoded header list larger than {MAX_HEADER_LIST_BYTES} bytes")]
    HeaderListTooLarge,
    #[error("frame of type {0:#x} inside an unfinished header block")]
    InterleavedFrame(u8),
    #[error("continuation frame on stream {0} without an open header block")]
    UnexpectedContinuation(u32),
    #[error("push_promise frame sent by a client")]
    PushPromiseFromClient,
    #[error("headers frame padding or priority longer than the frame")]
    BadPadding,
    #[error("malformed header block: {0}")]
    Hpack(&'static str),
}

/// An HTTP/2 server-side stream whose client-to-server header blocks get a valid `:authority`.
/// Writes (server to client) pass straight through.
#[derive(Debug)]
pub struct AuthorityRewrite<S> {
    inner: S,
    rewriter: FrameRewriter,
    chunk: Box<[u8]>,
    /// Rewritten bytes not yet handed to the reader, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    failed: Option<HeaderRewriteError>,
    eof: bool,
}

impl<S> AuthorityRewrite<S> {
    /// Wraps the server side of a freshly accepted connection (nothing read from it yet).
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: FrameRewriter::new(),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::new(),
            out_pos: 0,
            failed: None,
            eof: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let pending_out = this.out.get(this.out_pos..).unwrap_or_default();
            if !pending_out.is_empty() {
                let n = pending_out.len().min(buf.remaining());
                let (now, _) = pending_out.split_at(n);
                buf.put_slice(now);
                this.out_pos += n;
                if this.out_pos >= this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            let filled = chunk.filled();
            if filled.is_empty() {
                this.eof = true;
                continue;
            }
            if let Err(e) = this.rewriter.feed(filled, &mut this.out) {
                tracing::debug!(error = %e, "closing a workload api connection");
                this.failed = Some(e);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
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

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::hpack::client_encoder::{Repr, encode};
    use super::rewriter::PREFACE;
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn headers_frame(block: &[u8]) -> Vec<u8> {
        let len = u32::try_from(block.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], 0x1, 0x4, 0, 0, 0, 1];
        out.extend_from_slice(block);
        out
    }

    #[tokio::test]
    async fn reads_rewritten_bytes_through_small_buffers_and_passes_writes_through() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = AuthorityRewrite::new(server);
        let block = encode(&[(
            Repr::IncrementalNamed {
                index: 1,
                huffman: true,
            },
            "",
            "tmp%2Fx.sock",
        )]);
        let mut sent = PREFACE.to_vec();
        sent.extend_from_slice(&headers_frame(&block));
        let writer = tokio::spawn(async move {
            let mut client = client;
            client.write_all(&sent).await.unwrap();
            let mut reply = [0u8; 5];
            client.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"hello");
            client.shutdown().await.unwrap();
        });

        let mut expected = PREFACE.to_vec();
        let mut literal = Vec::new();
        hpack::encode_integer(0x00, 4, 1, &mut literal);
        hpack::encode_raw_string(REPLACEMENT_AUTHORITY.as_bytes(), &mut literal);
        expected.extend_from_slice(&headers_frame(&literal));

        let mut got = Vec::new();
        let mut small = [0u8; 7];
        while got.len() < expected.len() {
            let n = server.read(&mut small).await.unwrap();
            assert!(n > 0, "early end of stream");
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, expected);
        server.write_all(b"hello").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(
            server.read(&mut small).await.unwrap(),
            0,
            "end of stream after the client closes"
        );
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn malformed_input_ends_the_connection_with_invalid_data() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = AuthorityRewrite::new(server);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            err.get_ref()
                .and_then(|e| e.downcast_ref::<HeaderRewriteError>()),
            Some(&HeaderRewriteError::PrefaceMismatch)
        );
        assert_eq!(
            server.read(&mut buf).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
