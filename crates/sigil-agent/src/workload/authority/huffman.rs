//! HPACK Huffman code (RFC 7541 §5.2, Appendix B): decoding string literals a client compressed,
//! with the padding and EOS rules of §5.2 enforced, so malformed input is an error and never a
//! panic.

use std::sync::OnceLock;

/// RFC 7541 Appendix B, one `(code, bit length)` pair per symbol, symbols 0..=255 then EOS (256).
/// Transcribed from the "code as hex" and "len" columns; the tests check that it is a complete
/// canonical prefix code and decodes the RFC's Appendix C examples.
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

/// The EOS symbol, which must never appear inside a string (§5.2).
const EOS: u16 = 256;

/// Why a Huffman-coded string cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HuffmanError {
    /// The EOS symbol appeared in the data.
    EosInString,
    /// The string ends with more than 7 bits of padding, or padding that is not all ones.
    BadPadding,
    /// The decoded string would exceed the caller's limit.
    TooLong,
}

/// One edge of the decoding tree.
#[derive(Debug, Clone, Copy)]
enum Edge {
    Missing,
    Node(u16),
    Symbol(u16),
}

/// The decoding tree: node 0 is the root, `[zero, one]` edges per node.
struct Tree {
    nodes: Vec<[Edge; 2]>,
}

impl Tree {
    fn build() -> Self {
        let mut nodes = vec![[Edge::Missing; 2]];
        for (symbol, &(code, len)) in (0u16..).zip(CODES.iter()) {
            let mut at = 0usize;
            for bit_index in (0..len).rev() {
                let bit = usize::from((code >> bit_index) & 1 == 1);
                let last = bit_index == 0;
                let next_free = u16::try_from(nodes.len()).unwrap_or(u16::MAX);
                let Some(edge) = nodes.get_mut(at).and_then(|n| n.get_mut(bit)) else {
                    break;
                };
                match *edge {
                    Edge::Node(next) => at = usize::from(next),
                    _ if last => *edge = Edge::Symbol(symbol),
                    _ => {
                        *edge = Edge::Node(next_free);
                        nodes.push([Edge::Missing; 2]);
                        at = usize::from(next_free);
                    }
                }
            }
        }
        Self { nodes }
    }

    fn edge(&self, node: u16, bit: u8) -> Edge {
        self.nodes
            .get(usize::from(node))
            .and_then(|n| n.get(usize::from(bit)))
            .copied()
            .unwrap_or(Edge::Missing)
    }
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(Tree::build)
}

/// Decodes a Huffman-coded string literal, refusing to produce more than `max_len` bytes.
pub(crate) fn decode(input: &[u8], max_len: usize) -> Result<Vec<u8>, HuffmanError> {
    let tree = tree();
    let mut out = Vec::with_capacity(input.len().saturating_mul(8) / 5);
    let mut node = 0u16;
    // Bits read since the last complete symbol, and whether they were all ones: what is left at
    // the end is padding, which must be a prefix of EOS (all ones) shorter than a byte.
    let mut pending_bits = 0u32;
    let mut pending_all_ones = true;
    for &byte in input {
        for shift in (0..8).rev() {
            let bit = (byte >> shift) & 1;
            pending_bits += 1;
            pending_all_ones &= bit == 1;
            match tree.edge(node, bit) {
                Edge::Node(next) => node = next,
                Edge::Symbol(EOS) => return Err(HuffmanError::EosInString),
                Edge::Symbol(symbol) => {
                    if out.len() >= max_len {
                        return Err(HuffmanError::TooLong);
                    }
                    out.push(u8::try_from(symbol).map_err(|_| HuffmanError::EosInString)?);
                    node = 0;
                    pending_bits = 0;
                    pending_all_ones = true;
                }
                // The code is complete, so every path ends in a symbol; a missing edge can only
                // mean a broken table, reported as bad input rather than a panic.
                Edge::Missing => return Err(HuffmanError::BadPadding),
            }
        }
    }
    if pending_bits > 7 || !pending_all_ones {
        return Err(HuffmanError::BadPadding);
    }
    Ok(out)
}

/// Huffman-codes `input` (used by tests to build client-style header blocks).
#[cfg(test)]
pub(crate) fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc: u64 = 0;
    let mut acc_bits = 0u32;
    for &b in input {
        let (code, len) = CODES.get(usize::from(b)).copied().unwrap_or((0, 0));
        acc = acc << len | u64::from(code);
        acc_bits += u32::from(len);
        while acc_bits >= 8 {
            acc_bits -= 8;
            out.push((acc >> acc_bits & 0xff) as u8);
        }
    }
    if acc_bits > 0 {
        let pad = 8 - acc_bits;
        out.push(((acc << pad | ((1 << pad) - 1)) & 0xff) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn table_is_a_complete_canonical_prefix_code() {
        // Kraft equality: a complete prefix code has sum(2^-len) == 1 (scaled by 2^30).
        let kraft: u64 = CODES.iter().map(|&(_, len)| 1u64 << (30 - len)).sum();
        assert_eq!(kraft, 1 << 30);
        // Canonical: ordered by (length, symbol), each code is the previous plus one, shifted.
        let mut order: Vec<usize> = (0..CODES.len()).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        let mut expected: u32 = 0;
        let mut prev_len = CODES[order[0]].1;
        for (i, &s) in order.iter().enumerate() {
            let (code, len) = CODES[s];
            if i > 0 {
                expected = (expected + 1) << (len - prev_len);
            }
            assert_eq!(code, expected, "symbol {s}");
            prev_len = len;
        }
        assert_eq!(CODES[256], (0x3fff_ffff, 30));
    }

    #[test]
    fn decodes_rfc7541_appendix_c4_examples() {
        assert_eq!(
            decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"), 100).unwrap(),
            b"www.example.com"
        );
        assert_eq!(decode(&hex("a8eb 1064 9cbf"), 100).unwrap(), b"no-cache");
        assert_eq!(
            decode(&hex("25a8 49e9 5ba9 7d7f"), 100).unwrap(),
            b"custom-key"
        );
        assert_eq!(
            decode(&hex("25a8 49e9 5bb8 e8b4 bf"), 100).unwrap(),
            b"custom-value"
        );
    }

    #[test]
    fn encodes_rfc7541_appendix_c4_examples() {
        assert_eq!(
            encode(b"www.example.com"),
            hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")
        );
        assert_eq!(encode(b"no-cache"), hex("a8eb 1064 9cbf"));
    }

    #[test]
    fn rejects_padding_longer_than_seven_bits() {
        // "0" is 00000; a whole extra byte of ones is too much padding.
        assert_eq!(
            decode(&[0b0000_0111, 0xff], 10),
            Err(HuffmanError::BadPadding)
        );
    }

    #[test]
    fn rejects_padding_that_is_not_all_ones() {
        assert_eq!(decode(&[0b0000_0110], 10), Err(HuffmanError::BadPadding));
    }

    #[test]
    fn rejects_eos_inside_a_string() {
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], 10),
            Err(HuffmanError::EosInString)
        );
    }

    #[test]
    fn refuses_to_exceed_the_length_limit() {
        assert_eq!(decode(&encode(b"abcdef"), 5), Err(HuffmanError::TooLong));
    }

    proptest! {
        #[test]
        fn round_trips_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decode(&encode(&bytes), 1000).unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, 1000);
        }
    }
}
