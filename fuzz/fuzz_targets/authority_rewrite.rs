//! Fuzzes the Workload API's HTTP/2 `:authority` rewriter (`sigil_agent::workload::
//! AuthorityRewrite`), which parses every client-to-server byte on the workload socket (frames,
//! HPACK, Huffman) before h2 sees it. The stream is driven synchronously over an always-ready
//! reader with a no-op waker; the first two input bytes choose how the input is cut into reads,
//! whether the HTTP/2 preface is prepended, and how large each read by the server is.
//! No input may panic or stall, every failure must be an `InvalidData` I/O error, and the
//! rewritten bytes held for the server must stay within `MAX_BUFFERED_OUTPUT`.

#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use sigil_agent::workload::AuthorityRewrite;
use sigil_agent::workload::authority::MAX_BUFFERED_OUTPUT;
use tokio::io::{AsyncRead, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Hands out `data` at most `chunk` bytes per read, never pending.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let [cut, read_size, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(cut & 0x7f) * 128 + 1;
    let mut input = Vec::with_capacity(PREFACE.len() + rest.len());
    if cut & 0x80 == 0 {
        input.extend_from_slice(PREFACE);
    }
    input.extend_from_slice(rest);

    let mut stream = AuthorityRewrite::new(Chunked {
        data: &input,
        chunk,
    });
    let mut out = vec![0u8; usize::from(*read_size) * 64 + 1];
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let mut buf = ReadBuf::new(&mut out);
        match Pin::new(&mut stream).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                break;
            }
            Poll::Pending => panic!("pending on an always-ready reader"),
        }
    }
    assert!(stream.max_buffered_output() <= MAX_BUFFERED_OUTPUT);
});
