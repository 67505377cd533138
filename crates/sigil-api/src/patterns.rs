//! The regular expressions the OpenAPI document states for SPIFFE IDs, selectors, TTLs, DNS names
//! and free text. Each one matches exactly the strings the server's parsers accept (the tests
//! below check them against `sigil-spiffe`), and is written in the subset shared by ECMA-262
//! (JSON Schema), Python `re` and Rust `regex`: no lookaround, no `\d`/`\s`, `\uXXXX` escapes.

use crate::entries::MAX_LABEL_KEY_CHARS;
use crate::revocations::MAX_JTI_CHARS;
use sigil_spiffe::{
    MAX_AUTHORITY_ID_CHARS, MAX_SELECTOR_TYPE_BYTES, MAX_SELECTOR_VALUE_CHARS, UNIX_SELECTOR_TYPE,
};

/// Characters `char::is_control` reports (Unicode `Cc`), as the inside of a character class.
pub(crate) const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";
/// Characters `char::is_whitespace` reports that are not control characters.
pub(crate) const WHITESPACE: &str =
    r"\u0020\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// One SPIFFE ID path segment: letters, digits, `.`, `-`, `_`, but not `.` or `..`.
const SEGMENT: &str =
    r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)";
/// A trust domain name as `sigil-spiffe` accepts it.
const TRUST_DOMAIN: &str = "[a-z0-9._-]{1,255}";

/// `s` with the regex metacharacters a trust domain can hold (`.`) escaped.
fn escape(s: &str) -> String {
    s.replace('.', r"\.")
}

/// A page token: unpadded base64url, so never a length of 4n+1 (pair it with `maxLength`).
/// Empty is allowed and reads the first page.
pub(crate) fn page_token() -> &'static str {
    "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
}

/// Any SPIFFE ID, in any trust domain, with or without a path (pair it with `maxLength`).
pub(crate) fn any_spiffe_id() -> String {
    format!("^spiffe://{TRUST_DOMAIN}(?:/{SEGMENT})*$")
}

/// A SPIFFE ID with a non-empty path in trust domain `td`.
pub(crate) fn member_id(td: &str) -> String {
    format!("^spiffe://{}(?:/{SEGMENT})+$", escape(td))
}

/// IDs of `td` inside the path Sigil reserves for itself (`/sigil` and below).
pub(crate) fn reserved_id(td: &str) -> String {
    format!("^spiffe://{}/sigil(?:/|$)", escape(td))
}

/// Agent IDs of `td`: `/sigil/agent/<attestor>/<id>`, possibly with more segments.
pub(crate) fn agent_id(td: &str) -> String {
    format!(
        "^spiffe://{}/sigil/agent/{SEGMENT}(?:/{SEGMENT})+$",
        escape(td)
    )
}

/// A trust domain name, bare or as its ID (`spiffe://<name>`).
pub(crate) fn trust_domain() -> String {
    format!("^(?:spiffe://)?{TRUST_DOMAIN}$")
}

/// A bundle endpoint URL: `https://`, then a host (not `/`, `?` or `#` first), all printable
/// ASCII without spaces, `[` or `]` (pair it with `maxLength`).
pub(crate) fn bundle_endpoint_url() -> &'static str {
    r"^https://[\u0021\u0022\u0024-\u002E\u0030-\u003E\u0040-\u005A\u005C\u005E-\u007E][\u0021-\u005A\u005C\u005E-\u007E]*$"
}

/// The `unix` selectors the attestor emits, one pattern per value shape.
pub(crate) fn unix_selectors() -> Vec<String> {
    let budget = |key: &str| MAX_SELECTOR_VALUE_CHARS - key.len() - 1;
    let value_char = format!("[^{CONTROL}{WHITESPACE}]");
    let name_char = format!("[^:{CONTROL}{WHITESPACE}]");
    let ids = ["uid", "gid", "supplementary_gid"]
        .map(|key| format!("^{UNIX_SELECTOR_TYPE}:{key}:{}$", u32_decimal()));
    let names = ["user", "group", "supplementary_group"].map(|key| {
        format!(
            "^{UNIX_SELECTOR_TYPE}:{key}:{name_char}{{1,{}}}$",
            budget(key)
        )
    });
    let path = format!(
        "^{UNIX_SELECTOR_TYPE}:path:/{value_char}{{0,{}}}$",
        budget("path") - 1
    );
    let sha = format!("^{UNIX_SELECTOR_TYPE}:sha256:[0-9a-f]{{64}}$");
    ids.into_iter().chain(names).chain([path, sha]).collect()
}

/// A selector of any type; pair it with `not` [`unix_type`] so `unix` values are checked by
/// [`unix_selectors`].
pub(crate) fn any_selector() -> String {
    format!(
        "^[a-z0-9_-]{{1,{MAX_SELECTOR_TYPE_BYTES}}}:[^{CONTROL}{WHITESPACE}]{{1,{MAX_SELECTOR_VALUE_CHARS}}}$"
    )
}

/// Selectors of the `unix` type.
pub(crate) fn unix_type() -> String {
    format!("^{UNIX_SELECTOR_TYPE}:")
}

/// An authority id: a hex subject key id or a JWT `kid`.
pub(crate) fn authority_id() -> String {
    format!("^[A-Za-z0-9_-]{{1,{MAX_AUTHORITY_ID_CHARS}}}$")
}

/// An X509-SVID serial as the admin API reads it: hex digits in any case, `:` anywhere (openssl
/// prints `4a:1b:…`), and at least one digit that is not `0` (a serial is positive). Pair it
/// with `maxLength`.
pub(crate) fn serial_text() -> String {
    "^[0-9A-Fa-f:]*[1-9A-Fa-f][0-9A-Fa-f:]*$".to_owned()
}

/// A JWT `jti` as the admin API reads it: 1 to [`MAX_JTI_CHARS`] printable ASCII characters
/// other than space.
pub(crate) fn jti() -> String {
    format!(r"^[\u0021-\u007E]{{1,{MAX_JTI_CHARS}}}$")
}

/// A TTL written as text: whole units from 1 up to `max_secs` in all, without sign, space or
/// leading zero: `90`, `90s`, `15m`, `1h`, `2d`.
pub(crate) fn ttl_text(max_secs: u64) -> String {
    let seconds = decimal_1_to(max_secs);
    let per_unit: Vec<String> = [("m", 60), ("h", 3600), ("d", 86_400)]
        .into_iter()
        .filter(|(_, secs)| max_secs >= *secs)
        .map(|(unit, secs)| format!("|(?:{}){unit}", decimal_1_to(max_secs / secs)))
        .collect();
    format!("^(?:(?:{seconds})s?{})$", per_unit.concat())
}

/// A DNS name: labels of letters, digits and inner `-`, 1 to 63 each, the first possibly `*`
/// (pair it with `maxLength: 253`).
pub(crate) fn dns_name() -> String {
    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    format!(r"^(?:\*\.)?{label}(?:\.{label})*$")
}

/// Text without control characters (pair it with `maxLength`).
pub(crate) fn single_line() -> String {
    format!("^[^{CONTROL}]*$")
}

/// Text without control characters that is not blank.
pub(crate) fn single_line_not_blank() -> String {
    format!("^[^{CONTROL}]*[^{CONTROL}{WHITESPACE}][^{CONTROL}]*$")
}

/// An entry label key: lowercase ASCII letters, digits, `.`, `_`, `/` and `-`, starting and
/// ending with a letter or digit, at most `MAX_LABEL_KEY_CHARS` long (the datastore's rule).
pub(crate) fn label_key() -> String {
    format!(
        "^[a-z0-9](?:[a-z0-9._/-]{{0,{}}}[a-z0-9])?$",
        MAX_LABEL_KEY_CHARS - 2
    )
}

/// An entry label value: printable ASCII, `=` included (pair it with `maxLength`).
pub(crate) fn label_value() -> &'static str {
    r"^[\u0020-\u007E]*$"
}

/// A `u32` in canonical decimal: `0`, or no leading zero and at most 4294967295.
pub(crate) fn u32_decimal() -> String {
    format!("(?:0|{})", decimal_1_to(u64::from(u32::MAX)))
}

/// Decimal numbers from 1 to `hi` (at least 1) without leading zeros, as one alternation.
fn decimal_1_to(hi: u64) -> String {
    let digits: Vec<u8> = hi.to_string().bytes().map(|b| b - b'0').collect();
    let n = digits.len();
    let mut alternatives = Vec::new();
    if n > 1 {
        // Every number with fewer digits than `hi`.
        alternatives.push(format!("[1-9][0-9]{{0,{}}}", n - 2));
    }
    for (i, &d) in digits.iter().enumerate() {
        let low = u8::from(i == 0);
        if d > low {
            let prefix: String = digits
                .iter()
                .take(i)
                .map(|d| char::from(b'0' + d))
                .collect();
            let class = if d - 1 == low {
                format!("{low}")
            } else {
                format!("[{low}-{}]", d - 1)
            };
            let rest = n - i - 1;
            let tail = if rest == 0 {
                String::new()
            } else {
                format!("[0-9]{{{rest}}}")
            };
            alternatives.push(format!("{prefix}{class}{tail}"));
        }
    }
    alternatives.push(hi.to_string());
    alternatives.join("|")
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use regex::Regex;
    use sigil_spiffe::{Selector, SpiffeId, TrustDomain, Ttl};

    use super::*;

    fn full(pattern: &str) -> Regex {
        Regex::new(pattern).unwrap()
    }

    fn decimal(hi: u64) -> Regex {
        full(&format!("^(?:{})$", decimal_1_to(hi)))
    }

    #[test]
    fn decimal_ranges_are_exact_for_small_bounds() {
        for hi in [
            1, 7, 9, 10, 11, 19, 20, 99, 100, 101, 168, 366, 999, 1000, 10_080,
        ] {
            let re = decimal(hi);
            for n in 0..=hi + 1100 {
                assert_eq!(
                    re.is_match(&n.to_string()),
                    (1..=hi).contains(&n),
                    "{n} vs {hi}"
                );
            }
            assert!(!re.is_match(&format!("0{hi}")), "leading zero");
        }
    }

    #[test]
    fn u32_pattern_is_exact_at_the_edges() {
        let re = full(&format!("^{}$", u32_decimal()));
        for ok in [
            "0",
            "1",
            "4294967295",
            "4294967289",
            "3999999999",
            "429496729",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in [
            "4294967296",
            "4294967300",
            "5000000000",
            "00",
            "01",
            "-1",
            "",
            "99999999999",
        ] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    /// The selector patterns, compiled once: (unix shapes, any selector, the unix type).
    fn selector_regexes() -> &'static (Vec<Regex>, Regex, Regex) {
        static COMPILED: OnceLock<(Vec<Regex>, Regex, Regex)> = OnceLock::new();
        COMPILED.get_or_init(|| {
            (
                unix_selectors().iter().map(|p| full(p)).collect(),
                full(&any_selector()),
                full(&unix_type()),
            )
        })
    }

    fn selector_pattern_accepts(s: &str) -> bool {
        let (unix, any, unix_type) = selector_regexes();
        unix.iter().any(|re| re.is_match(s)) || (any.is_match(s) && !unix_type.is_match(s))
    }

    fn spiffe_id_pattern_accepts(s: &str) -> bool {
        static COMPILED: OnceLock<Regex> = OnceLock::new();
        COMPILED.get_or_init(|| full(&any_spiffe_id())).is_match(s)
            && s.len() <= sigil_spiffe::id::MAX_SPIFFE_ID_BYTES
    }

    #[test]
    fn selector_patterns_agree_with_the_parser_on_edge_cases() {
        let hash = "ab".repeat(32);
        let long_value = "v".repeat(MAX_SELECTOR_VALUE_CHARS);
        let long_name = format!("unix:user:{}", "n".repeat(MAX_SELECTOR_VALUE_CHARS - 5));
        for s in [
            "unix:uid:0",
            "unix:uid:abc",
            "unix:uid:-1",
            "unix:uid:4294967296",
            "unix:gid:01",
            "unix:user:",
            "unix:user:a:b",
            "unix:group:ñandú",
            "unix:path:/bin/sh",
            "unix:path:/",
            "unix:path:bin",
            &format!("unix:sha256:{hash}"),
            &format!("unix:sha256:{}", hash.to_uppercase()),
            "unix:pid:1",
            "unix:uid",
            "unix",
            "docker:label:a",
            "docker:",
            ":x",
            "Docker:x",
            "k8s:ns:a b",
            "k8s:ns:a\u{a0}b",
            "k8s:ns:a\u{feff}b",
            "k8s:ns:a\u{85}b",
            &format!("t:{long_value}"),
            &format!("t:{long_value}v"),
            &long_name,
            &format!("{long_name}n"),
            &format!("{}:v", "t".repeat(MAX_SELECTOR_TYPE_BYTES + 1)),
        ] {
            assert_eq!(
                selector_pattern_accepts(s),
                Selector::parse(s).is_ok(),
                "{s}: {:?}",
                Selector::parse(s)
            );
        }
    }

    #[test]
    fn spiffe_id_patterns_agree_with_the_parser_on_edge_cases() {
        for s in [
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe://example.org/a",
            "spiffe://example.org/.",
            "spiffe://example.org/..",
            "spiffe://example.org/...",
            "spiffe://example.org/.a/b.",
            "spiffe://example.org/a//b",
            "spiffe://example.org/a/",
            "spiffe://Example.org/a",
            "spiffe://ex ample.org/a",
            "spiffe://example.org/a%20",
            "spiffe://example.org:8443/a",
            "spiffe:///a",
            "SPIFFE://example.org/a",
            "spiffe://example.org/a\n",
        ] {
            assert_eq!(
                spiffe_id_pattern_accepts(s),
                SpiffeId::parse(s).is_ok(),
                "{s}"
            );
        }
        let td = TrustDomain::parse("example.org").unwrap();
        let member = full(&member_id(td.as_str()));
        assert!(member.is_match("spiffe://example.org/web"));
        assert!(!member.is_match("spiffe://example.org"));
        assert!(
            !member.is_match("spiffe://exampleXorg/web"),
            "the dot is escaped"
        );
        assert!(!member.is_match("spiffe://other.org/web"));
        let reserved = full(&reserved_id(td.as_str()));
        assert!(reserved.is_match("spiffe://example.org/sigil"));
        assert!(reserved.is_match("spiffe://example.org/sigil/x"));
        assert!(!reserved.is_match("spiffe://example.org/sigilx"));
        let agent = full(&agent_id(td.as_str()));
        assert!(agent.is_match("spiffe://example.org/sigil/agent/join_token/abc"));
        assert!(!agent.is_match("spiffe://example.org/sigil/agent/join_token"));
        assert!(!agent.is_match("spiffe://example.org/sigil/agents/join_token/abc"));
    }

    #[test]
    fn ttl_text_pattern_agrees_with_the_parser() {
        let max = sigil_spiffe::ttl::MAX_TTL_SECS;
        let re = full(&ttl_text(max));
        for s in [
            "1", "1s", "90", "90s", "15m", "1h", "2d", "366d", "367d", "8784h", "8785h", "527040m",
            "527041m", "31622400", "31622401", "0", "0s", "01h", " 1h", "1h ", "1w", "h", "", "-1",
            "+1",
        ] {
            let parsed = !s.starts_with('0') && s.trim() == s && Ttl::parse(s).is_ok();
            assert_eq!(re.is_match(s), parsed, "{s}");
        }
        let week = full(&ttl_text(7 * 86_400));
        assert!(week.is_match("7d") && week.is_match("168h") && week.is_match("604800s"));
        assert!(!week.is_match("8d") && !week.is_match("169h") && !week.is_match("604801"));
    }

    #[test]
    fn text_patterns_match_rusts_control_and_whitespace_classes() {
        let line = full(&single_line());
        let not_blank = full(&single_line_not_blank());
        for c in (0u32..0x3100).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(line.is_match(&s), !c.is_control(), "{c:?}");
            assert_eq!(
                not_blank.is_match(&s),
                !c.is_control() && !c.is_whitespace(),
                "{c:?}"
            );
        }
        assert!(not_blank.is_match(" team "));
        assert!(!not_blank.is_match("   "));
        assert!(!not_blank.is_match(""));
    }

    #[test]
    fn label_patterns_hold_their_edges() {
        let key = full(&label_key());
        let longest = "a".repeat(MAX_LABEL_KEY_CHARS);
        for ok in [
            "a",
            "0",
            "tier",
            "app.kubernetes.io/name",
            "a-b_c",
            longest.as_str(),
        ] {
            assert!(key.is_match(ok), "{ok}");
        }
        let too_long = "a".repeat(MAX_LABEL_KEY_CHARS + 1);
        for bad in [
            "",
            "A",
            "a=b",
            "-a",
            "a/",
            ".",
            "a b",
            "é",
            too_long.as_str(),
        ] {
            assert!(!key.is_match(bad), "{bad}");
        }
        let value = full(label_value());
        for ok in ["", "web", "a=b ~!"] {
            assert!(value.is_match(ok), "{ok}");
        }
        for bad in ["a\nb", "\t", "é", "\u{7f}"] {
            assert!(!value.is_match(bad), "{bad:?}");
        }
    }

    #[test]
    fn trust_domain_and_dns_patterns_hold_their_edges() {
        let td = full(&trust_domain());
        for (s, ok) in [
            ("partner.org", true),
            ("spiffe://partner.org", true),
            ("Partner.org", false),
            ("spiffe://partner.org/x", false),
            ("", false),
        ] {
            assert_eq!(td.is_match(s), ok, "{s}");
            assert_eq!(TrustDomain::parse(s).is_ok(), ok, "{s}");
        }
        let dns = full(&dns_name());
        for (s, ok) in [
            ("a.example", true),
            ("*.example.org", true),
            ("*", false),
            ("a..b", false),
            ("-a.b", false),
            ("a-.b", false),
            ("a_b.c", false),
            ("a.*.c", false),
        ] {
            assert_eq!(dns.is_match(s), ok, "{s}");
        }
    }

    #[test]
    fn bundle_endpoint_url_pattern_holds_its_edges() {
        let re = full(bundle_endpoint_url());
        for (s, ok) in [
            ("https://partner.org/bundle", true),
            ("https://127.0.0.1:8443", true),
            ("https://a?b#c", true),
            ("https://", false),
            ("https:///x", false),
            ("https://?x", false),
            ("https://#x", false),
            ("http://partner.org", false),
            ("https://partner.org/a b", false),
            ("https://partner.org/\u{e9}", false),
            ("https://partner.org/\u{7f}", false),
            ("https://[::1]:8443/bundle", false),
            ("https://a/]", false),
            ("https://a/\\^_`{|}~", true),
        ] {
            assert_eq!(re.is_match(s), ok, "{s}");
        }
    }

    #[test]
    fn authority_id_pattern_agrees_with_the_parser() {
        let re = full(&authority_id());
        for s in [
            "",
            "a",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
            "Xy_-09azAZ",
            "a/b",
            "a.b",
            "a b",
            "a\n",
            "é",
            &"k".repeat(MAX_AUTHORITY_ID_CHARS),
            &"k".repeat(MAX_AUTHORITY_ID_CHARS + 1),
        ] {
            assert_eq!(re.is_match(s), sigil_spiffe::is_authority_id(s), "{s:?}");
        }
    }

    #[test]
    fn serial_and_jti_patterns_hold_their_edges() {
        let serial = full(&serial_text());
        for (s, ok) in [
            ("1", true),
            ("4A:1B:00", true),
            ("4a1bff", true),
            ("00:4a", true),
            (":4a:", true),
            ("0", false),
            ("00:00", false),
            (":", false),
            ("", false),
            ("4g", false),
            ("0x4a", false),
            ("4a 1b", false),
            ("serial=4A", false),
        ] {
            assert_eq!(serial.is_match(s), ok, "{s:?}");
        }
        let jti = full(&jti());
        for (s, ok) in [
            ("a", true),
            ("Zm9v-YmFy_", true),
            ("!~", true),
            (&"j".repeat(MAX_JTI_CHARS), true),
            (&"j".repeat(MAX_JTI_CHARS + 1), false),
            ("", false),
            ("a b", false),
            ("a\n", false),
            ("é", false),
        ] {
            assert_eq!(jti.is_match(s), ok, "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn selector_pattern_agrees_with_the_parser(
            kind in prop_oneof![Just("unix".to_owned()), "[a-z_]{1,6}", "[ -~]{0,4}"],
            key in prop_oneof![
                Just("uid"), Just("gid"), Just("user"), Just("path"), Just("sha256"), Just("x")
            ],
            value in prop_oneof!["[0-9]{0,11}", "-?[0-9a-f]{0,66}", "/?[ -~]{0,12}", "\\PC{0,6}"],
        ) {
            let s = format!("{kind}:{key}:{value}");
            prop_assert_eq!(selector_pattern_accepts(&s), Selector::parse(&s).is_ok(), "{}", s);
        }

        #[test]
        fn authority_id_pattern_agrees_with_the_parser_on_any_text(id in "\\PC{0,4}|[ -~]{0,130}") {
            static COMPILED: OnceLock<Regex> = OnceLock::new();
            let re = COMPILED.get_or_init(|| full(&authority_id()));
            prop_assert_eq!(re.is_match(&id), sigil_spiffe::is_authority_id(&id), "{:?}", id);
        }

        #[test]
        fn spiffe_id_pattern_agrees_with_the_parser(
            td in "[a-zA-Z0-9._:@-]{0,8}",
            path in "(/[a-zA-Z0-9._%-]{0,4}){0,4}/?",
        ) {
            let s = format!("spiffe://{td}{path}");
            prop_assert_eq!(spiffe_id_pattern_accepts(&s), SpiffeId::parse(&s).is_ok(), "{}", s);
        }
    }
}
