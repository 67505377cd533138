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

pub use rewriter::{MAX_HEADER_BLOCK_BYTES, MAX_HEADER_LIST_BYTES, REPLACEMENT_AUTHORITY};
use rewriter::FrameRewriter;

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
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
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
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
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
