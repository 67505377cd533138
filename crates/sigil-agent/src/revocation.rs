//! The deny-list and CRLs the server sends in every sync message, as the agent keeps them:
//! revoked credential ids ([`RevokedIds`], bounded, without entries that have expired) and the
//! DER CRLs handed to workloads ([`bounded_crls`]). The server always sends them whole, so each
//! message replaces what the agent held.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sigil_proto::agent::v1 as pb;

/// Most ids kept from one list of the deny-list; the rest are ignored (and logged).
pub const MAX_REVOKED_PER_LIST: usize = 100_000;
/// Longest id kept, in bytes (a serial is at most 42 hex digits, a Sigil `jti` far shorter); a
/// longer one cannot name anything the agent holds and is ignored.
pub const MAX_REVOKED_ID_BYTES: usize = 128;
/// How long an entry is kept past the expiry of the credential it names: the JWT-SVID expiry
/// leeway, so a revoked token that validation would still accept as "expired within the clock
/// skew" is refused as revoked rather than accepted.
pub const EXPIRY_MARGIN_SECS: i64 = sigil_spiffe::jwt::EXP_LEEWAY_SECS;
/// Most CRLs kept from one sync message (the server sends one per X.509 authority).
pub const MAX_CRLS: usize = 64;
/// Most CRL bytes kept in all: every `X509SVIDResponse` and `X509BundlesResponse` carries them,
/// and gRPC clients refuse messages larger than 4 MiB by default.
pub const MAX_CRL_BYTES: usize = 2 * 1024 * 1024;

/// The revoked JWT-SVID `jti`s as the server last sent them, shared by the session that receives
/// them and the JWT minter that must not serve a cached token that is listed.
pub type RevokedJwtSvids = Arc<ArcSwap<RevokedIds>>;

/// A set of revoked credential ids (X509-SVID serials or JWT-SVID `jti`s): sorted, without
/// duplicates, at most [`MAX_REVOKED_PER_LIST`] ids of at most [`MAX_REVOKED_ID_BYTES`] each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedIds {
    ids: Vec<String>,
}

impl RevokedIds {
    /// The X509-SVID serials of `list` still relevant at `now`. Serials are compared in
    /// lowercase (the server sends them so; an uppercase one must not slip through).
    pub fn x509_serials(list: Vec<pb::RevokedCredential>, now: i64) -> Self {
        Self::from_wire(list, now, "X509-SVID", |id| id.to_ascii_lowercase())
    }

    /// The JWT-SVID `jti`s of `list` still relevant at `now`, compared exactly (a `jti` is
    /// case-sensitive).
    pub fn jwt_ids(list: Vec<pb::RevokedCredential>, now: i64) -> Self {
        Self::from_wire(list, now, "JWT-SVID", |id| id)
    }

    /// Keeps the entries of `list` that have an id of at most [`MAX_REVOKED_ID_BYTES`] and whose
    /// credential expires after `now - EXPIRY_MARGIN_SECS`, up to [`MAX_REVOKED_PER_LIST`] of
    /// them in the server's order; what is ignored is logged.
    fn from_wire(
        list: Vec<pb::RevokedCredential>,
        now: i64,
        kind: &'static str,
        normalize: impl Fn(String) -> String,
    ) -> Self {
        let received = list.len();
        let mut too_long = 0usize;
        let mut ids = Vec::with_capacity(received.min(MAX_REVOKED_PER_LIST));
        for entry in list {
            if entry.expires_at.saturating_add(EXPIRY_MARGIN_SECS) <= now {
                continue;
            }
            if entry.id.is_empty() || entry.id.len() > MAX_REVOKED_ID_BYTES {
                too_long += 1;
                continue;
            }
            if ids.len() == MAX_REVOKED_PER_LIST {
                tracing::warn!(
                    kind,
                    received,
                    kept = MAX_REVOKED_PER_LIST,
                    "the server sent more revoked credentials than the agent keeps; ignoring the rest"
                );
                break;
            }
            ids.push(normalize(entry.id));
        }
        if too_long > 0 {
            tracing::warn!(
                kind,
                ignored = too_long,
                "ignoring revoked credential ids that are empty or longer than {MAX_REVOKED_ID_BYTES} bytes"
            );
        }
        ids.sort_unstable();
        ids.dedup();
        Self { ids }
    }

    /// Whether `id` is revoked.
    pub fn contains(&self, id: &str) -> bool {
        self.ids
            .binary_search_by(|probe| probe.as_str().cmp(id))
            .is_ok()
    }

    /// How many ids are revoked.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The CRLs of one sync message the agent serves: the first [`MAX_CRLS`] non-empty ones, in the
/// server's order, as long as they fit in [`MAX_CRL_BYTES`] together; the others are dropped
/// (and logged). They are handed to workloads as they are: each is signed by its authority, and
/// workloads verify them, not the agent.
pub(crate) fn bounded_crls(crls: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let received = crls.len();
    let mut total = 0usize;
    let mut dropped = 0usize;
    let mut kept = Vec::with_capacity(received.min(MAX_CRLS));
    for crl in crls {
        if crl.is_empty() {
            continue;
        }
        if kept.len() == MAX_CRLS || total.saturating_add(crl.len()) > MAX_CRL_BYTES {
            dropped += 1;
            continue;
        }
        total = total.saturating_add(crl.len());
        kept.push(crl);
    }
    if dropped > 0 {
        tracing::warn!(
            received,
            dropped,
            max_crls = MAX_CRLS,
            max_bytes = MAX_CRL_BYTES,
            "dropping CRLs beyond the agent's limits"
        );
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn revoked(id: &str, expires_at: i64) -> pb::RevokedCredential {
        pb::RevokedCredential {
            id: id.into(),
            expires_at,
        }
    }

    #[test]
    fn expired_entries_are_dropped_after_the_expiry_leeway() {
        let list = vec![
            revoked("live", NOW + 60),
            revoked("just-expired", NOW - 1),
            revoked("long-expired", NOW - EXPIRY_MARGIN_SECS),
            revoked("no-expiry-sent", 0),
        ];
        let ids = RevokedIds::jwt_ids(list, NOW);
        assert!(ids.contains("live"));
        // Validation still accepts a token this close to its expiry, so it stays revoked.
        assert!(ids.contains("just-expired"));
        assert!(!ids.contains("long-expired"));
        assert!(!ids.contains("no-expiry-sent"));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn empty_and_overlong_ids_are_ignored_and_duplicates_kept_once() {
        let long = "a".repeat(MAX_REVOKED_ID_BYTES + 1);
        let longest = "b".repeat(MAX_REVOKED_ID_BYTES);
        let list = vec![
            revoked(&long, NOW + 60),
            revoked("", NOW + 60),
            revoked(&longest, NOW + 60),
            revoked("j1", NOW + 60),
            revoked("j1", NOW + 90),
        ];
        let ids = RevokedIds::jwt_ids(list, NOW);
        assert!(!ids.contains(&long));
        assert!(!ids.contains(""));
        assert!(ids.contains(&longest));
        assert!(ids.contains("j1"));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn at_most_the_list_limit_is_kept() {
        let list = (0..MAX_REVOKED_PER_LIST + 10)
            .map(|i| revoked(&format!("{i:08x}"), NOW + 60))
            .collect();
        let ids = RevokedIds::x509_serials(list, NOW);
        assert_eq!(ids.len(), MAX_REVOKED_PER_LIST);
        assert!(ids.contains("00000000"));
        assert!(!ids.contains(&format!("{:08x}", MAX_REVOKED_PER_LIST)));
    }

    #[test]
    fn serials_are_compared_in_lowercase_but_jtis_exactly() {
        let serials = RevokedIds::x509_serials(vec![revoked("0ABCDEF1", NOW + 60)], NOW);
        assert!(serials.contains("0abcdef1"));
        let jtis = RevokedIds::jwt_ids(vec![revoked("AbC", NOW + 60)], NOW);
        assert!(jtis.contains("AbC"));
        assert!(!jtis.contains("abc"));
    }

    #[test]
    fn crls_are_bounded_in_number_and_bytes() {
        let many = (0..MAX_CRLS + 3).map(|i| vec![0x30, 1, 2, 3, u8::try_from(i % 256).unwrap()]);
        let kept = bounded_crls(many.collect());
        assert_eq!(kept.len(), MAX_CRLS);
        assert_eq!(kept.first().unwrap(), &vec![0x30, 1, 2, 3, 0]);

        let big = vec![0x30; MAX_CRL_BYTES - 10];
        let kept = bounded_crls(vec![
            Vec::new(),
            big.clone(),
            vec![0x30; 11],
            vec![0x30; 10],
        ]);
        assert_eq!(
            kept,
            vec![big, vec![0x30; 10]],
            "the empty and the overflowing one are dropped"
        );
    }
}
