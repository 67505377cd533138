//! The client-to-server byte stream of one HTTP/2 connection, rewritten frame by frame (sans I/O):
//! the preface and every frame but HEADERS/CONTINUATION pass through untouched and unbuffered;
//! each header block is collected, decoded with the client's HPACK state, its `:authority` made
//! acceptable, and re-encoded without indexing.

use super::HeaderRewriteError;
use super::hpack::{Decoder, HeaderBlock, encode_literal_block};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest header block (all fragments of one HEADERS + CONTINUATION run) accepted, in bytes.
pub const MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;
/// Largest decoded header list (names + values + 32 per field) accepted, in bytes: h2's (and
/// hyper's) default `max_header_list_size`. Every re-encoded block is at most about this large,
/// so it also bounds what one header block, however small, can expand to.
pub const MAX_HEADER_LIST_BYTES: usize = 16 * 1024;
/// [`FrameRewriter::feed`] stops consuming input once this many rewritten bytes are waiting, so
/// the output of one read is bounded by this plus one step (one re-encoded header block or one
/// read's worth of pass-through bytes), however much the input would expand.
pub const MAX_PENDING_OUTPUT: usize = 32 * 1024;
/// The value that replaces an `:authority` that is not a URI authority.
pub const REPLACEMENT_AUTHORITY: &str = "localhost";

const FRAME_HEADER_LEN: usize = 9;
/// Frames written towards the server never exceed the protocol's default SETTINGS_MAX_FRAME_SIZE,
/// which every server accepts.
const MAX_OUT_PAYLOAD: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE the server advertises (the protocol default; tonic keeps it).
const HEADER_TABLE_SIZE: usize = 4096;
/// Largest HEADERS payload: a full block plus pad length, priority and 255 bytes of padding.
const MAX_IN_PAYLOAD: usize = MAX_HEADER_BLOCK_BYTES + 1 + 5 + 255;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_PUSH_PROMISE: u8 = 0x5;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Rewrites the client side of one connection; feed it bytes as they arrive.
#[derive(Debug)]
pub(crate) struct FrameRewriter {
    state: State,
    /// Bytes of a frame header or a header-carrying frame's payload, not yet complete.
    partial: Vec<u8>,
    decoder: Decoder,
    pending: Option<PendingBlock>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Preface { matched: usize },
    FrameHeader,
    PassThrough { remaining: usize },
    Collect(FrameHeader),
}

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    length: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

/// A header block whose END_HEADERS has not arrived yet.
#[derive(Debug)]
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

impl FrameRewriter {
    /// A rewriter expecting the connection preface.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Preface { matched: 0 },
            partial: Vec::new(),
            decoder: Decoder::new(HEADER_TABLE_SIZE),
            pending: None,
        }
    }

    /// Consumes a prefix of `input`, appending to `out` the bytes the server should see, and
    /// returns how many bytes it consumed: all of `input`, unless `out` reached
    /// [`MAX_PENDING_OUTPUT`] first (then feed the rest once `out` has been drained). An error
    /// is a connection error: the caller must stop feeding and close (see
    /// [`Self::connection_error_frame`]).
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, HeaderRewriteError> {
        let rest = self.feed_bounded(input, out)?;
        Ok(input.len() - rest.len())
    }

    /// A frame that makes the server's HTTP/2 stack end the connection with a GOAWAY, to be
    /// appended after everything already rewritten when [`Self::feed`] failed; `None` before
    /// the connection preface has been seen (then there is no HTTP/2 connection to end).
    ///
    /// The frame is a HEADERS frame whose block is the one-byte indexed reference to index 0,
    /// which RFC 7541 §6.1 makes a decoding error, which RFC 9113 §4.3 makes a connection error:
    /// the server answers it with GOAWAY and closes, so the client learns the connection ended
    /// on a protocol error rather than seeing the socket drop. The rewriter emits only complete
    /// frames and complete header blocks, so the frame lands on a frame boundary.
    pub(crate) fn connection_error_frame(&self) -> Option<Vec<u8>> {
        if matches!(self.state, State::Preface { .. }) {
            return None;
        }
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + 1);
        write_frame_header(
            1,
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            1,
            &mut out,
        );
        out.push(0x80);
        Some(out)
    }

    /// [`Self::feed`]; returns the input not consumed.
    fn feed_bounded<'a>(
        &mut self,
        mut input: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<&'a [u8], HeaderRewriteError> {
        loop {
            if out.len() >= MAX_PENDING_OUTPUT {
                return Ok(input);
            }
            match self.state {
                State::Preface { matched } => {
                    let expected = PREFACE.get(matched..).unwrap_or_default();
                    let (chunk, rest) = input.split_at(expected.len().min(input.len()));
                    if !expected.starts_with(chunk) {
                        return Err(HeaderRewriteError::PrefaceMismatch);
                    }
                    out.extend_from_slice(chunk);
                    input = rest;
                    let matched = matched + chunk.len();
                    self.state = if matched == PREFACE.len() {
                        State::FrameHeader
                    } else {
                        State::Preface { matched }
                    };
                    if input.is_empty() {
                        return Ok(input);
                    }
                }
                State::FrameHeader => {
                    input = fill(&mut self.partial, FRAME_HEADER_LEN, input);
                    if self.partial.len() < FRAME_HEADER_LEN {
                        return Ok(input);
                    }
                    let header = parse_frame_header(&self.partial)?;
                    self.state = self.on_frame_header(header, out)?;
                    self.partial.clear();
                }
                State::PassThrough { remaining: 0 } => self.state = State::FrameHeader,
                State::PassThrough { remaining } => {
                    if input.is_empty() {
                        return Ok(input);
                    }
                    let (chunk, rest) = input.split_at(remaining.min(input.len()));
                    out.extend_from_slice(chunk);
                    input = rest;
                    self.state = State::PassThrough {
                        remaining: remaining - chunk.len(),
                    };
                }
                State::Collect(header) => {
                    input = fill(&mut self.partial, header.length, input);
                    if self.partial.len() < header.length {
                        return Ok(input);
                    }
                    let payload = std::mem::take(&mut self.partial);
                    self.on_header_frame(header, &payload, out)?;
                    self.state = State::FrameHeader;
                }
            }
        }
    }

    fn on_frame_header(
        &mut self,
        header: FrameHeader,
        out: &mut Vec<u8>,
    ) -> Result<State, HeaderRewriteError> {
        match header.kind {
            TYPE_HEADERS | TYPE_CONTINUATION => {
                if header.length > MAX_IN_PAYLOAD {
                    return Err(HeaderRewriteError::HeaderBlockTooLarge);
                }
                Ok(State::Collect(header))
            }
            // Only servers push; a client that sends PUSH_PROMISE is broken, and passing its
            // header block on unread would desynchronise the HPACK state.
            TYPE_PUSH_PROMISE => Err(HeaderRewriteError::PushPromiseFromClient),
            kind => {
                if self.pending.is_some() {
                    return Err(HeaderRewriteError::InterleavedFrame(kind));
                }
                out.extend_from_slice(&self.partial);
                Ok(State::PassThrough {
                    remaining: header.length,
                })
            }
        }
    }

    fn on_header_frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), HeaderRewriteError> {
        if header.kind == TYPE_HEADERS {
            if self.pending.is_some() {
                return Err(HeaderRewriteError::InterleavedFrame(TYPE_HEADERS));
            }
            let (priority, fragment) = split_headers_payload(header.flags, payload)?;
            self.pending = Some(PendingBlock {
                stream_id: header.stream_id,
                end_stream: header.flags & FLAG_END_STREAM != 0,
                priority,
                fragment: Vec::new(),
            });
            self.append(fragment)?;
        } else {
            match &self.pending {
                Some(p) if p.stream_id == header.stream_id => self.append(payload)?,
                _ => return Err(HeaderRewriteError::UnexpectedContinuation(header.stream_id)),
            }
        }
        if header.flags & FLAG_END_HEADERS != 0
            && let Some(block) = self.pending.take()
        {
            self.finish(block, out)?;
        }
        Ok(())
    }

    fn append(&mut self, fragment: &[u8]) -> Result<(), HeaderRewriteError> {
        let pending = self
            .pending
            .as_mut()
            .ok_or(HeaderRewriteError::UnexpectedContinuation(0))?;
        if pending.fragment.len() + fragment.len() > MAX_HEADER_BLOCK_BYTES {
            return Err(HeaderRewriteError::HeaderBlockTooLarge);
        }
        pending.fragment.extend_from_slice(fragment);
        Ok(())
    }

    /// Decodes, rewrites and re-emits one complete header block.
    fn finish(&mut self, block: PendingBlock, out: &mut Vec<u8>) -> Result<(), HeaderRewriteError> {
        let mut decoded = self
            .decoder
            .decode(&block.fragment, MAX_HEADER_LIST_BYTES)?;
        replace_invalid_authority(&mut decoded);
        let mut encoded = Vec::with_capacity(block.fragment.len() * 2);
        encode_literal_block(&decoded, &mut encoded);
        write_header_frames(&block, &encoded, out);
        Ok(())
    }
}

/// Replaces every `:authority` that is not a valid URI authority (grpcio sends the
/// percent-encoded socket path) with [`REPLACEMENT_AUTHORITY`].
fn replace_invalid_authority(block: &mut HeaderBlock) {
    for field in &mut block.fields {
        if field.name == b":authority"
            && http::uri::Authority::try_from(field.value.as_slice()).is_err()
        {
            tracing::trace!(
                authority = %String::from_utf8_lossy(&field.value),
                "replacing an :authority that is not a URI authority"
            );
            field.value = REPLACEMENT_AUTHORITY.as_bytes().to_vec();
        }
    }
}

/// Writes `block` as one HEADERS frame and as many CONTINUATION frames as the frame size needs.
fn write_header_frames(pending: &PendingBlock, block: &[u8], out: &mut Vec<u8>) {
    let mut flags = 0;
    if pending.end_stream {
        flags |= FLAG_END_STREAM;
    }
    let priority: &[u8] = match &pending.priority {
        Some(p) => {
            flags |= FLAG_PRIORITY;
            p
        }
        None => &[],
    };
    let first_room = MAX_OUT_PAYLOAD - priority.len();
    let (first, mut rest) = block.split_at(first_room.min(block.len()));
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_header(
        priority.len() + first.len(),
        TYPE_HEADERS,
        flags,
        pending.stream_id,
        out,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(MAX_OUT_PAYLOAD.min(rest.len()));
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame_header(
            chunk.len(),
            TYPE_CONTINUATION,
            flags,
            pending.stream_id,
            out,
        );
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

fn write_frame_header(length: usize, kind: u8, flags: u8, stream_id: u32, out: &mut Vec<u8>) {
    let len = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(len.get(1..).unwrap_or_default());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

/// Appends to `buf` from `input` until `buf` holds `want` bytes; returns the unused input.
fn fill<'a>(buf: &mut Vec<u8>, want: usize, input: &'a [u8]) -> &'a [u8] {
    let (chunk, rest) = input.split_at(want.saturating_sub(buf.len()).min(input.len()));
    buf.extend_from_slice(chunk);
    rest
}

fn parse_frame_header(bytes: &[u8]) -> Result<FrameHeader, HeaderRewriteError> {
    let &[l0, l1, l2, kind, flags, s0, s1, s2, s3] = bytes else {
        return Err(HeaderRewriteError::Hpack("short frame header"));
    };
    Ok(FrameHeader {
        length: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
        kind,
        flags,
        stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
    })
}

/// Splits a HEADERS payload into its priority fields (if flagged) and the block fragment,
/// dropping the padding (RFC 9113 §6.2).
fn split_headers_payload(
    flags: u8,
    payload: &[u8],
) -> Result<(Option<[u8; 5]>, &[u8]), HeaderRewriteError> {
    let mut body = payload;
    let mut pad_len = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&first, rest) = body.split_first().ok_or(HeaderRewriteError::BadPadding)?;
        pad_len = usize::from(first);
        body = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (fields, rest) = body
            .split_first_chunk::<5>()
            .ok_or(HeaderRewriteError::BadPadding)?;
        priority = Some(*fields);
        body = rest;
    }
    let fragment_len = body
        .len()
        .checked_sub(pad_len)
        .ok_or(HeaderRewriteError::BadPadding)?;
    let (fragment, _padding) = body.split_at(fragment_len);
    Ok((priority, fragment))
}

#[cfg(test)]
mod tests {
    use super::super::hpack::client_encoder::{Repr, encode};
    use super::*;
    use proptest::prelude::*;

    const SETTINGS: [u8; 15] = [0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3, 0, 0, 0, 100];

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame_header(payload.len(), kind, flags, stream, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn rewrite_all(input: &[u8]) -> Result<Vec<u8>, HeaderRewriteError> {
        let mut r = FrameRewriter::new();
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let consumed = r.feed(rest, &mut out)?;
            rest = &rest[consumed..];
        }
        Ok(out)
    }

    /// Splits server-bound bytes into frames (after the preface) and decodes header blocks with
    /// a fresh server-side decoder, as h2 would.
    struct ServerView {
        frames: Vec<(u8, u8, u32, Vec<u8>)>,
    }

    fn server_view(bytes: &[u8]) -> ServerView {
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let h = parse_frame_header(&rest[..9]).unwrap();
            frames.push((h.kind, h.flags, h.stream_id, rest[9..9 + h.length].to_vec()));
            rest = &rest[9 + h.length..];
        }
        ServerView { frames }
    }

    impl ServerView {
        /// Header lists of every complete block, decoded by one server-side decoder, asserting
        /// its dynamic table stays empty.
        fn header_lists(&self) -> Vec<Vec<(String, String)>> {
            let mut decoder = Decoder::new(HEADER_TABLE_SIZE);
            let mut lists = Vec::new();
            let mut block = Vec::new();
            for (kind, flags, _, payload) in &self.frames {
                match *kind {
                    TYPE_HEADERS => {
                        let (_, fragment) = split_headers_payload(*flags, payload).unwrap();
                        block = fragment.to_vec();
                    }
                    TYPE_CONTINUATION => block.extend_from_slice(payload),
                    _ => continue,
                }
                if flags & FLAG_END_HEADERS != 0 {
                    let decoded = decoder.decode(&block, MAX_HEADER_LIST_BYTES).unwrap();
                    lists.push(
                        decoded
                            .fields
                            .iter()
                            .map(|f| {
                                (
                                    String::from_utf8(f.name.clone()).unwrap(),
                                    String::from_utf8(f.value.clone()).unwrap(),
                                )
                            })
                            .collect(),
                    );
                }
            }
            assert_eq!(decoder.size_for_tests(), 0, "server table must stay empty");
            lists
        }
    }

    fn grpc_request(authority_repr: Repr, huffman: bool) -> Vec<u8> {
        encode(&[
            (
                Repr::Incremental { huffman },
                ":path",
                "/SpiffeWorkloadAPI/FetchX509SVID",
            ),
            (authority_repr, ":authority", "tmp%2Fsigil%2Fagent.sock"),
            (Repr::Indexed(3), "", ""),
            (Repr::Indexed(6), "", ""),
            (
                Repr::Incremental { huffman },
                "content-type",
                "application/grpc",
            ),
            (Repr::Incremental { huffman }, "te", "trailers"),
            (
                Repr::WithoutIndexing { huffman },
                "workload.spiffe.io",
                "true",
            ),
        ])
    }

    fn expected_list(authority: &str) -> Vec<(String, String)> {
        [
            (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
            (":authority", authority),
            (":method", "POST"),
            (":scheme", "http"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("workload.spiffe.io", "true"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn preface_and_settings_pass_through_unchanged() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&SETTINGS);
        input.extend_from_slice(&frame(0x8, 0, 0, &[0, 0x3f, 0, 1])); // WINDOW_UPDATE
        input.extend_from_slice(&frame(0x0, 0x1, 1, b"\0\0\0\0\x05hello")); // DATA
        assert_eq!(rewrite_all(&input).unwrap(), input);
    }

    #[test]
    fn rejects_a_stream_without_the_preface() {
        assert_eq!(
            rewrite_all(b"GET / HTTP/1.1\r\n"),
            Err(HeaderRewriteError::PrefaceMismatch)
        );
    }

    #[test]
    fn percent_encoded_authority_becomes_localhost_across_dynamic_table_references() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&SETTINGS);
        // First request: Huffman literals added to the client's table (as grpcio does).
        let first = grpc_request(
            Repr::IncrementalNamed {
                index: 1,
                huffman: true,
            },
            true,
        );
        input.extend_from_slice(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &first));
        input.extend_from_slice(&frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0"));
        // Second request: everything by reference into the client's dynamic table.
        // Table (newest first): te, content-type, :authority, :path -> 62, 63, 64, 65.
        let second = encode(&[
            (Repr::Indexed(65), "", ""),
            (Repr::Indexed(64), "", ""),
            (Repr::Indexed(3), "", ""),
            (Repr::Indexed(6), "", ""),
            (Repr::Indexed(63), "", ""),
            (Repr::Indexed(62), "", ""),
            (
                Repr::WithoutIndexing { huffman: true },
                "workload.spiffe.io",
                "true",
            ),
        ]);
        input.extend_from_slice(&frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            3,
            &second,
        ));

        let out = rewrite_all(&input).unwrap();
        let view = server_view(&out);
        assert_eq!(
            view.header_lists(),
            vec![expected_list("localhost"), expected_list("localhost")]
        );
        // Non-header frames are byte-for-byte what the client sent, in order.
        assert_eq!(view.frames[0], (0x4, 0, 0, SETTINGS[9..].to_vec()));
        assert_eq!(
            view.frames[2],
            (0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0".to_vec())
        );
        assert_eq!(view.frames[3].1, FLAG_END_HEADERS | FLAG_END_STREAM);
        assert_eq!(view.frames[3].2, 3);
    }

    #[test]
    fn valid_authority_is_kept() {
        let mut input = PREFACE.to_vec();
        let block = encode(&[(
            Repr::IncrementalNamed {
                index: 1,
                huffman: false,
            },
            "",
            "localhost:8080",
        )]);
        input.extend_from_slice(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        let lists = server_view(&rewrite_all(&input).unwrap()).header_lists();
        assert_eq!(
            lists[0],
            vec![(":authority".to_string(), "localhost:8080".to_string())]
        );
    }

    #[test]
    fn padded_and_prioritised_headers_keep_priority_and_lose_padding() {
        let block = grpc_request(
            Repr::IncrementalNamed {
                index: 1,
                huffman: false,
            },
            false,
        );
        let mut payload = vec![7u8]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 1, 200]); // exclusive dependency on 1, weight 200
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0; 7]);
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            5,
            &payload,
        ));
        let view = server_view(&rewrite_all(&input).unwrap());
        let (kind, flags, stream, payload) = &view.frames[0];
        assert_eq!(
            (*kind, *flags, *stream),
            (TYPE_HEADERS, FLAG_END_HEADERS | FLAG_PRIORITY, 5)
        );
        assert_eq!(&payload[..5], &[0x80, 0, 0, 1, 200]);
        assert_eq!(view.header_lists(), vec![expected_list("localhost")]);
    }

    #[test]
    fn padding_longer_than_the_frame_is_an_error() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_PADDED,
            1,
            &[10, 0x82],
        ));
        assert_eq!(rewrite_all(&input), Err(HeaderRewriteError::BadPadding));
    }

    #[test]
    fn continuation_frames_are_joined() {
        let big = "x".repeat(16_000);
        let block = encode(&[
            (
                Repr::IncrementalNamed {
                    index: 1,
                    huffman: true,
                },
                "",
                "tmp%2Fa.sock",
            ),
            (Repr::WithoutIndexing { huffman: false }, "x-big", &big),
        ]);
        let (a, b) = block.split_at(10);
        let (b, c) = b.split_at(8_000);
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame(TYPE_HEADERS, FLAG_END_STREAM, 1, a));
        input.extend_from_slice(&frame(TYPE_CONTINUATION, 0, 1, b));
        input.extend_from_slice(&frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, c));
        let view = server_view(&rewrite_all(&input).unwrap());
        assert_eq!(
            view.frames.len(),
            1,
            "a block within the list limit fits one frame"
        );
        assert_eq!(
            (view.frames[0].0, view.frames[0].1),
            (TYPE_HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS)
        );
        let lists = view.header_lists();
        assert_eq!(lists[0][0].1, "localhost");
        assert_eq!(lists[0][1].1, big);
    }

    #[test]
    fn blocks_larger_than_a_frame_are_split_into_continuations() {
        let pending = PendingBlock {
            stream_id: 7,
            end_stream: true,
            priority: Some([0, 0, 0, 1, 16]),
            fragment: Vec::new(),
        };
        let block = vec![0x82; MAX_OUT_PAYLOAD + 100];
        let mut out = PREFACE.to_vec();
        write_header_frames(&pending, &block, &mut out);
        let view = server_view(&out);
        assert_eq!(view.frames.len(), 2);
        assert_eq!(
            (view.frames[0].0, view.frames[0].1, view.frames[0].2),
            (TYPE_HEADERS, FLAG_END_STREAM | FLAG_PRIORITY, 7)
        );
        assert_eq!(view.frames[0].3.len(), MAX_OUT_PAYLOAD);
        assert_eq!(
            (view.frames[1].0, view.frames[1].1),
            (TYPE_CONTINUATION, FLAG_END_HEADERS)
        );
        assert_eq!(view.frames[1].3.len(), 105);
    }

    #[test]
    fn frames_between_headers_and_continuation_are_an_error() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame(TYPE_HEADERS, 0, 1, &[0x82]));
        input.extend_from_slice(&frame(0x8, 0, 0, &[0, 0, 0, 1]));
        assert_eq!(
            rewrite_all(&input),
            Err(HeaderRewriteError::InterleavedFrame(0x8))
        );
    }

    #[test]
    fn continuation_without_headers_is_an_error() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]));
        assert_eq!(
            rewrite_all(&input),
            Err(HeaderRewriteError::UnexpectedContinuation(1))
        );
    }

    #[test]
    fn oversize_header_block_is_an_error() {
        let chunk = vec![0x82; 16_384];
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame(TYPE_HEADERS, 0, 1, &chunk));
        for _ in 0..4 {
            input.extend_from_slice(&frame(TYPE_CONTINUATION, 0, 1, &chunk));
        }
        assert_eq!(
            rewrite_all(&input),
            Err(HeaderRewriteError::HeaderBlockTooLarge)
        );
        let mut huge_frame = PREFACE.to_vec();
        write_frame_header(MAX_IN_PAYLOAD + 1, TYPE_HEADERS, 0, 1, &mut huge_frame);
        assert_eq!(
            rewrite_all(&huge_frame),
            Err(HeaderRewriteError::HeaderBlockTooLarge)
        );
    }

    #[test]
    fn byte_at_a_time_feeding_gives_the_same_output() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&SETTINGS);
        let block = grpc_request(
            Repr::IncrementalNamed {
                index: 1,
                huffman: true,
            },
            true,
        );
        input.extend_from_slice(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        input.extend_from_slice(&frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0"));
        let whole = rewrite_all(&input).unwrap();
        let mut r = FrameRewriter::new();
        let mut out = Vec::new();
        for b in &input {
            r.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, whole);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_after_the_preface_never_panic(
            frames in proptest::collection::vec(
                (any::<u8>(), any::<u8>(), 0u32..4, proptest::collection::vec(any::<u8>(), 0..64)),
                0..8,
            ),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut input = PREFACE.to_vec();
            for (kind, flags, stream, payload) in &frames {
                input.extend_from_slice(&frame(kind % 11, *flags, *stream, payload));
            }
            input.extend_from_slice(&tail);
            let _ = rewrite_all(&input);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = rewrite_all(&bytes);
        }
    }
}
