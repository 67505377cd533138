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
//! every server-to-client byte pass through untouched.
//!
//! Bounds: a header block is at most [`MAX_HEADER_BLOCK_BYTES`] on the wire and
//! [`MAX_HEADER_LIST_BYTES`] decoded; and the adapter stops reading from the client while more
//! than [`MAX_PENDING_OUTPUT`] rewritten bytes wait for the server, so what one read expands to
//! (small blocks of one-byte references to large dynamic-table entries) is bounded too:
//! [`AuthorityRewrite::max_buffered_output`] never exceeds [`MAX_BUFFERED_OUTPUT`]. Anything
//! malformed or over a bound ends the connection: once the connection preface has been seen,
//! the server's HTTP/2 stack is handed a frame it must treat as a connection error, so it
//! sends the client a GOAWAY and closes; then reads fail with `InvalidData`.

mod hpack;
mod huffman;
mod rewriter;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use rewriter::FrameRewriter;
pub use rewriter::{
    MAX_HEADER_BLOCK_BYTES, MAX_HEADER_LIST_BYTES, MAX_PENDING_OUTPUT, REPLACEMENT_AUTHORITY,
};

/// Size of each read from the wrapped stream.
const READ_CHUNK: usize = 16 * 1024;

/// The most rewritten bytes an [`AuthorityRewrite`] ever holds for the server: the pending
/// bound, plus one step past it (a re-encoded header block of at most a full list, with its
/// frame headers and at most two table size updates, or one read of pass-through bytes).
pub const MAX_BUFFERED_OUTPUT: usize = MAX_PENDING_OUTPUT + MAX_HEADER_LIST_BYTES + 1024;

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
    /// Bytes read from the client, of which `chunk[in_pos..in_len]` are not yet rewritten.
    chunk: Box<[u8]>,
    in_pos: usize,
    in_len: usize,
    /// Rewritten bytes not yet handed to the reader, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// The largest `out` has been, for tests and the fuzz target.
    max_out: usize,
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
            in_pos: 0,
            in_len: 0,
            out: Vec::new(),
            out_pos: 0,
            max_out: 0,
            failed: None,
            eof: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The most rewritten bytes this adapter has held at once for the server; never more than
    /// [`MAX_BUFFERED_OUTPUT`], whatever the client sends.
    pub fn max_buffered_output(&self) -> usize {
        self.max_out
    }

    /// Rewrites buffered client bytes into `out` (which is empty), as far as the pending bound
    /// allows. On a violation, the connection-error frame follows what was rewritten and
    /// reads fail from then on.
    fn rewrite_buffered(&mut self) {
        let input = self.chunk.get(self.in_pos..self.in_len).unwrap_or_default();
        match self.rewriter.feed(input, &mut self.out) {
            Ok(consumed) => self.in_pos += consumed,
            Err(e) => {
                tracing::debug!(error = %e, "closing a workload api connection");
                if let Some(frame) = self.rewriter.connection_error_frame() {
                    self.out.extend_from_slice(&frame);
                }
                self.failed = Some(e);
                self.in_pos = self.in_len;
            }
        }
        self.max_out = self.max_out.max(self.out.len());
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
            if this.in_pos < this.in_len {
                this.rewrite_buffered();
                continue;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Only now, with every earlier byte rewritten and handed on, is the client read
            // again: the server's pace bounds how much rewritten output can pile up.
            let mut chunk = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            let filled = chunk.filled().len();
            if filled == 0 {
                this.eof = true;
                continue;
            }
            this.in_pos = 0;
            this.in_len = filled;
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

    /// Preface, then a block adding a ~4 KiB entry to the client's dynamic table.
    fn table_with_a_large_entry() -> Vec<u8> {
        let big = "a".repeat(4000);
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&headers_frame(&encode(&[(
            Repr::Incremental { huffman: false },
            "x-a",
            &big,
        )])));
        input
    }

    /// Index 62 (the newest dynamic entry) as a one-byte indexed field.
    const NEWEST_ENTRY: u8 = 0x80 | 62;

    /// Reads until end of stream or error, `step` bytes at a time; returns the bytes and how
    /// the stream ended.
    async fn read_to_end<S: AsyncRead + Unpin>(
        server: &mut AuthorityRewrite<S>,
        step: usize,
    ) -> (Vec<u8>, io::Result<()>) {
        let mut got = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            match server.read(&mut buf).await {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Err(e)),
            }
        }
    }

    #[tokio::test]
    async fn small_blocks_of_references_to_a_large_entry_expand_only_as_fast_as_they_are_read() {
        // Each 12-byte frame holds three one-byte references to the 4 KiB entry: ~12 KiB
        // decoded, under the list limit, so nothing is refused; one 16 KiB read of them would
        // expand to ~16 MB if it were rewritten at once.
        let mut input = table_with_a_large_entry();
        let frames = 1400;
        for _ in 0..frames {
            input.extend_from_slice(&headers_frame(&[NEWEST_ENTRY; 3]));
        }
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            client.write_all(&input).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut server = AuthorityRewrite::new(server);
        let (got, end) = read_to_end(&mut server, 1024).await;
        end.unwrap();
        writer.await.unwrap();
        assert!(
            got.len() > frames * 12_000,
            "every block was rewritten: {} bytes",
            got.len()
        );
        assert!(
            server.max_buffered_output() <= MAX_BUFFERED_OUTPUT,
            "held {} rewritten bytes at once, bound {MAX_BUFFERED_OUTPUT}",
            server.max_buffered_output()
        );
        assert!(
            got.len() > 100 * MAX_BUFFERED_OUTPUT,
            "the bound was exercised"
        );
    }

    #[tokio::test]
    async fn a_header_list_over_the_limit_ends_the_connection_with_an_http2_connection_error() {
        // Three references (~12 KiB decoded) pass; five (~20 KiB) exceed the 16 KiB limit.
        let mut input = table_with_a_large_entry();
        input.extend_from_slice(&headers_frame(&[NEWEST_ENTRY; 3]));
        input.extend_from_slice(&headers_frame(&[NEWEST_ENTRY; 5]));
        input.extend_from_slice(&headers_frame(&[NEWEST_ENTRY; 3]));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&input).await.unwrap();
        let mut server = AuthorityRewrite::new(server);
        let (got, end) = read_to_end(&mut server, 4096).await;
        let err = end.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            err.get_ref()
                .and_then(|e| e.downcast_ref::<HeaderRewriteError>()),
            Some(&HeaderRewriteError::HeaderListTooLarge)
        );
        // Two blocks were passed on (the entry, then three references), then the frame that
        // makes h2 answer with GOAWAY: a HEADERS block holding only the invalid index 0.
        let poison = [0, 0, 1, 0x1, 0x5, 0, 0, 0, 1, 0x80];
        assert!(got.ends_with(&poison), "{:?}", &got[got.len() - 10..]);
        assert!(got.len() > PREFACE.len() + 4000 + 3 * 4000);
        assert!(got.len() < PREFACE.len() + 2 * 4100 + 3 * 4100);
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
