//! HPACK (RFC 7541) as far as the authority rewrite needs it: a decoder that follows the client's
//! dynamic table, and an encoder that writes only literal fields that are never added to a table,
//! so the server's decoder keeps an empty dynamic table and stays in step with what it is sent.

use std::collections::VecDeque;

use super::HeaderRewriteError;
use super::huffman;

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Per-entry overhead counted in table and header list sizes (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Largest integer accepted in a header block; anything larger is an attack or a bug.
const MAX_INTEGER: u64 = u32::MAX as u64;

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderField {
    pub(crate) name: Vec<u8>,
    pub(crate) value: Vec<u8>,
    /// Sent as "never indexed" (§6.2.3): an intermediary must keep that representation.
    pub(crate) never_indexed: bool,
}

/// A decoded header block: the table size updates it opened with, then its fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HeaderBlock {
    pub(crate) size_updates: Vec<usize>,
    pub(crate) fields: Vec<HeaderField>,
}

/// Decodes header blocks with the dynamic table the client's encoder maintains.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Newest entry first, as HPACK indexes it.
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    /// The SETTINGS_HEADER_TABLE_SIZE in force: the ceiling for size updates.
    settings_max: usize,
}

impl Decoder {
    /// A decoder whose peer may use a dynamic table of up to `settings_max` bytes.
    pub(crate) fn new(settings_max: usize) -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: settings_max,
            settings_max,
        }
    }

    /// Decodes one complete header block, failing once the decoded list would exceed
    /// `max_list_size` (names + values + 32 per field), so a small block of references to large
    /// table entries cannot expand without bound.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
    ) -> Result<HeaderBlock, HeaderRewriteError> {
        let mut reader = Reader { buf: block, pos: 0 };
        let mut out = HeaderBlock::default();
        let mut list_size = 0usize;
        while let Some(first) = reader.peek() {
            if first & 0x80 != 0 {
                let index = reader.integer(7)?;
                let (name, value) = self.lookup(index)?;
                out.fields.push(HeaderField {
                    name,
                    value,
                    never_indexed: false,
                });
            } else if first & 0xc0 == 0x40 {
                let field =
                    self.literal(&mut reader, 6, max_list_size.saturating_sub(list_size))?;
                self.insert(field.name.clone(), field.value.clone());
                out.fields.push(field);
            } else if first & 0xe0 == 0x20 {
                if !out.fields.is_empty() {
                    return Err(HeaderRewriteError::Hpack("table size update after a field"));
                }
                // §4.2: a block opens with at most two updates (the smallest and the final
                // size); more would only let a block re-encode into a run of updates.
                if out.size_updates.len() >= 2 {
                    return Err(HeaderRewriteError::Hpack(
                        "more than two table size updates",
                    ));
                }
                let new_max = usize::try_from(reader.integer(5)?).unwrap_or(usize::MAX);
                if new_max > self.settings_max {
                    return Err(HeaderRewriteError::Hpack(
                        "table size update above the limit",
                    ));
                }
                self.max_size = new_max;
                self.evict_to(new_max);
                out.size_updates.push(new_max);
            } else {
                let never_indexed = first & 0xf0 == 0x10;
                let mut field =
                    self.literal(&mut reader, 4, max_list_size.saturating_sub(list_size))?;
                field.never_indexed = never_indexed;
                out.fields.push(field);
            }
            if let Some(field) = out.fields.last() {
                list_size = list_size
                    .saturating_add(field.name.len())
                    .saturating_add(field.value.len())
                    .saturating_add(ENTRY_OVERHEAD);
                if list_size > max_list_size {
                    return Err(HeaderRewriteError::HeaderListTooLarge);
                }
            }
        }
        Ok(out)
    }

    /// A literal field whose name index has a `prefix`-bit prefix.
    fn literal(
        &self,
        reader: &mut Reader<'_>,
        prefix: u8,
        budget: usize,
    ) -> Result<HeaderField, HeaderRewriteError> {
        let name_index = reader.integer(prefix)?;
        let name = if name_index == 0 {
            reader.string(budget)?
        } else {
            self.lookup(name_index)?.0
        };
        let value = reader.string(budget.saturating_sub(name.len()))?;
        Ok(HeaderField {
            name,
            value,
            never_indexed: false,
        })
    }

    fn lookup(&self, index: u64) -> Result<(Vec<u8>, Vec<u8>), HeaderRewriteError> {
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        if index == 0 {
            return Err(HeaderRewriteError::Hpack("index 0"));
        }
        if let Some((name, value)) = STATIC_TABLE.get(index - 1) {
            return Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        self.table
            .get(index - 1 - STATIC_TABLE.len())
            .cloned()
            .ok_or(HeaderRewriteError::Hpack("index beyond the dynamic table"))
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let entry_size = name.len() + value.len() + ENTRY_OVERHEAD;
        if entry_size > self.max_size {
            // §4.4: an entry larger than the table empties it and is not added.
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - entry_size);
        self.table.push_front((name, value));
        self.size += entry_size;
    }

    /// Bytes held in the dynamic table (tests check the server side stays at 0).
    #[cfg(test)]
    pub(crate) fn size_for_tests(&self) -> usize {
        self.size
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.table.pop_back() {
                Some((name, value)) => {
                    self.size = self
                        .size
                        .saturating_sub(name.len() + value.len() + ENTRY_OVERHEAD);
                }
                None => self.size = 0,
            }
        }
    }
}

/// Encodes `block` using only literal fields without indexing (never-indexed ones stay
/// never-indexed), names by static index where the static table has them, strings raw.
pub(crate) fn encode_literal_block(block: &HeaderBlock, out: &mut Vec<u8>) {
    for &size in &block.size_updates {
        encode_integer(0x20, 5, size as u64, out);
    }
    for field in &block.fields {
        let flags = if field.never_indexed { 0x10 } else { 0x00 };
        match static_name_index(&field.name) {
            Some(index) => encode_integer(flags, 4, index as u64, out),
            None => {
                encode_integer(flags, 4, 0, out);
                encode_raw_string(&field.name, out);
            }
        }
        encode_raw_string(&field.value, out);
    }
}

fn static_name_index(name: &[u8]) -> Option<usize> {
    STATIC_TABLE
        .iter()
        .position(|(n, _)| n.as_bytes() == name)
        .map(|i| i + 1)
}

/// §5.1 integer with a `prefix`-bit prefix, OR-ed into `flags` in the first byte.
pub(crate) fn encode_integer(flags: u8, prefix: u8, value: u64, out: &mut Vec<u8>) {
    let max_prefix = (1u64 << prefix) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// §5.2 string literal without Huffman coding.
pub(crate) fn encode_raw_string(bytes: &[u8], out: &mut Vec<u8>) {
    encode_integer(0x00, 7, bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A cursor over a header block.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn byte(&mut self) -> Result<u8, HeaderRewriteError> {
        let b = self
            .peek()
            .ok_or(HeaderRewriteError::Hpack("truncated header block"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], HeaderRewriteError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or(HeaderRewriteError::Hpack(
                "string longer than the header block",
            ))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(HeaderRewriteError::Hpack(
                "string longer than the header block",
            ))?;
        self.pos = end;
        Ok(bytes)
    }

    /// §5.1 integer with a `prefix`-bit prefix (the first byte's other bits are ignored).
    fn integer(&mut self, prefix: u8) -> Result<u64, HeaderRewriteError> {
        let max_prefix = u8::try_from((1u16 << prefix.min(8)) - 1).unwrap_or(u8::MAX);
        let first = self.byte()? & max_prefix;
        if first < max_prefix {
            return Ok(u64::from(first));
        }
        let mut value = u64::from(max_prefix);
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value += u64::from(b & 0x7f) << shift;
            if value > MAX_INTEGER {
                return Err(HeaderRewriteError::Hpack("integer too large"));
            }
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 28 {
                return Err(HeaderRewriteError::Hpack("integer too large"));
            }
        }
    }

    /// §5.2 string literal, Huffman-decoded if flagged, of at most `max_len` decoded bytes.
    fn string(&mut self, max_len: usize) -> Result<Vec<u8>, HeaderRewriteError> {
        let huffman = self.peek().is_some_and(|b| b & 0x80 != 0);
        let len = usize::try_from(self.integer(7)?).unwrap_or(usize::MAX);
        let bytes = self.take(len)?;
        if huffman {
            huffman::decode(bytes, max_len)
                .map_err(|_| HeaderRewriteError::Hpack("bad huffman string"))
        } else if bytes.len() > max_len {
            Err(HeaderRewriteError::HeaderListTooLarge)
        } else {
            Ok(bytes.to_vec())
        }
    }
}

/// A client-style HPACK encoder for tests: indexed fields, incremental indexing and Huffman, the
/// representations real clients (grpcio) use and the rewrite must undo.
#[cfg(test)]
pub(crate) mod client_encoder {
    use super::*;

    /// How to represent one field.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Repr {
        /// Indexed field (`index` in the combined table).
        Indexed(usize),
        /// Literal with incremental indexing, literal name.
        Incremental { huffman: bool },
        /// Literal with incremental indexing, name from `index`.
        IncrementalNamed { index: usize, huffman: bool },
        /// Literal without indexing, literal name.
        WithoutIndexing { huffman: bool },
        /// Literal never indexed, literal name.
        NeverIndexed { huffman: bool },
        /// A dynamic table size update.
        SizeUpdate(usize),
    }

    pub(crate) fn string(bytes: &[u8], huffman: bool, out: &mut Vec<u8>) {
        if huffman {
            let coded = super::huffman::encode(bytes);
            encode_integer(0x80, 7, coded.len() as u64, out);
            out.extend_from_slice(&coded);
        } else {
            encode_raw_string(bytes, out);
        }
    }

    /// Encodes `fields` as `reprs` say (one repr per field; size updates take no field).
    pub(crate) fn encode(items: &[(Repr, &str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(repr, name, value) in items {
            match repr {
                Repr::Indexed(index) => encode_integer(0x80, 7, index as u64, &mut out),
                Repr::Incremental { huffman } => {
                    out.push(0x40);
                    string(name.as_bytes(), huffman, &mut out);
                    string(value.as_bytes(), huffman, &mut out);
                }
                Repr::IncrementalNamed { index, huffman } => {
                    encode_integer(0x40, 6, index as u64, &mut out);
                    string(value.as_bytes(), huffman, &mut out);
                }
                Repr::WithoutIndexing { huffman } => {
                    out.push(0x00);
                    string(name.as_bytes(), huffman, &mut out);
                    string(value.as_bytes(), huffman, &mut out);
                }
                Repr::NeverIndexed { huffman } => {
                    out.push(0x10);
                    string(name.as_bytes(), huffman, &mut out);
                    string(value.as_bytes(), huffman, &mut out);
                }
                Repr::SizeUpdate(size) => encode_integer(0x20, 5, size as u64, &mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::client_encoder::{Repr, encode};
    use super::*;
    use proptest::prelude::*;

    fn fields(block: &HeaderBlock) -> Vec<(String, String)> {
        block
            .fields
            .iter()
            .map(|f| {
                (
                    String::from_utf8(f.name.clone()).unwrap(),
                    String::from_utf8(f.value.clone()).unwrap(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decodes_rfc7541_c4_request_sequence_with_dynamic_table() {
        let mut d = Decoder::new(4096);
        let b1 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let out = d.decode(&b1, 1 << 16).unwrap();
        assert_eq!(
            fields(&out),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let b2 = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let out = d.decode(&b2, 1 << 16).unwrap();
        assert_eq!(
            fields(&out),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        assert_eq!(d.size, 110);
    }

    #[test]
    fn literal_block_decodes_to_the_same_fields_and_leaves_no_table_entries() {
        let mut client = Decoder::new(4096);
        let block = client
            .decode(
                &encode(&[
                    (Repr::Indexed(2), "", ""),
                    (Repr::Incremental { huffman: true }, "x-custom", "v1"),
                    (Repr::NeverIndexed { huffman: false }, "secret", "s"),
                    (
                        Repr::IncrementalNamed {
                            index: 1,
                            huffman: true,
                        },
                        "",
                        "tmp%2Fa.sock",
                    ),
                ]),
                1 << 16,
            )
            .unwrap();
        let mut reencoded = Vec::new();
        encode_literal_block(&block, &mut reencoded);
        let mut server = Decoder::new(4096);
        let again = server.decode(&reencoded, 1 << 16).unwrap();
        assert_eq!(again, block);
        assert!(again.fields[2].never_indexed);
        assert_eq!(server.size, 0);
        assert!(server.table.is_empty());
    }

    #[test]
    fn size_update_evicts_and_is_kept_in_the_block() {
        let mut d = Decoder::new(4096);
        d.decode(
            &encode(&[(Repr::Incremental { huffman: false }, "a", "b")]),
            1 << 16,
        )
        .unwrap();
        assert_eq!(d.table.len(), 1);
        let block = d
            .decode(&encode(&[(Repr::SizeUpdate(0), "", "")]), 1 << 16)
            .unwrap();
        assert_eq!(block.size_updates, vec![0]);
        assert!(d.table.is_empty());
    }

    #[test]
    fn rejects_size_update_above_settings_and_after_fields() {
        let mut d = Decoder::new(4096);
        assert!(
            d.decode(&encode(&[(Repr::SizeUpdate(4097), "", "")]), 1 << 16)
                .is_err()
        );
        let late = encode(&[(Repr::Indexed(2), "", ""), (Repr::SizeUpdate(0), "", "")]);
        assert!(d.decode(&late, 1 << 16).is_err());
    }

    #[test]
    fn rejects_unknown_and_zero_indexes() {
        let mut d = Decoder::new(4096);
        assert!(d.decode(&[0x80], 1 << 16).is_err());
        assert!(
            d.decode(&encode(&[(Repr::Indexed(62), "", "")]), 1 << 16)
                .is_err()
        );
    }

    #[test]
    fn references_cannot_expand_beyond_the_list_limit() {
        let mut d = Decoder::new(4096);
        let big = "v".repeat(3000);
        d.decode(
            &encode(&[(Repr::Incremental { huffman: false }, "big", &big)]),
            1 << 16,
        )
        .unwrap();
        let refs = vec![0xbe; 100]; // 100 references to a 3 KB entry
        assert!(matches!(
            d.decode(&refs, 1 << 16),
            Err(HeaderRewriteError::HeaderListTooLarge)
        ));
    }

    #[test]
    fn integer_round_trips_rfc_examples() {
        let mut out = Vec::new();
        encode_integer(0, 5, 1337, &mut out);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        let mut r = Reader { buf: &out, pos: 0 };
        assert_eq!(r.integer(5).unwrap(), 1337);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = Decoder::new(4096);
            let _ = d.decode(&bytes, 1 << 16);
            let _ = d.decode(&bytes, 1 << 16);
        }

        #[test]
        fn integers_round_trip(value in 0u64..=MAX_INTEGER, prefix in 1u8..=7) {
            let mut out = Vec::new();
            encode_integer(0, prefix, value, &mut out);
            let mut r = Reader { buf: &out, pos: 0 };
            prop_assert_eq!(r.integer(prefix).unwrap(), value);
        }
    }
}
