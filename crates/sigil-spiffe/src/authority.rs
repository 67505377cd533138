//! The vocabulary of signing authorities shared by the CA, which decides their life cycle
//! (`sigil-ca`), and the datastore, which records it (`sigil-store`): what an authority signs and
//! which state of its life it is in. Names here are stored and shown; they never change.

use serde::{Deserialize, Serialize};

/// Longest authority id accepted from callers, in characters. Ids the CA makes are shorter: 40
/// hex digits for an X.509 subject key id, 32 base64url characters for a JWT `kid`.
pub const MAX_AUTHORITY_ID_CHARS: usize = 128;

/// What an authority signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityKind {
    /// Self-signed root: goes in the trust bundle.
    X509Root,
    /// Intermediate under a root: signs X509-SVIDs.
    X509Intermediate,
    /// JWT-SVID signing key: its public key goes in the trust bundle.
    Jwt,
}

/// Where an authority is in its life: prepared → active → old → tainted → revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityState {
    /// Published in the bundle, not yet signing.
    Prepared,
    /// Signing.
    Active,
    /// Replaced, still trusted until it expires.
    Old,
    /// Marked for early replacement; still trusted.
    Tainted,
    /// Removed from the bundle.
    Revoked,
}

impl AuthorityKind {
    /// Every kind, roots first (an intermediate needs its root).
    pub const ALL: [Self; 3] = [Self::X509Root, Self::X509Intermediate, Self::Jwt];

    /// The stable name stored and shown (`x509_root`, `x509_intermediate`, `jwt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X509Root => "x509_root",
            Self::X509Intermediate => "x509_intermediate",
            Self::Jwt => "jwt",
        }
    }

    /// The kind named `name` (as returned by [`AuthorityKind::as_str`]), or `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl AuthorityState {
    /// Every state, in life-cycle order.
    pub const ALL: [Self; 5] = [
        Self::Prepared,
        Self::Active,
        Self::Old,
        Self::Tainted,
        Self::Revoked,
    ];

    /// The stable name stored and shown (`prepared`, `active`, `old`, `tainted`, `revoked`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepared => "prepared",
            Self::Active => "active",
            Self::Old => "old",
            Self::Tainted => "tainted",
            Self::Revoked => "revoked",
        }
    }

    /// The state named `name` (as returned by [`AuthorityState::as_str`]), or `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Whether an authority in this state may move to `next`: each state only moves one step
    /// forward (prepared → active → old → tainted → revoked), never back.
    pub fn can_become(self, next: Self) -> bool {
        matches!(
            (self, next),
            (Self::Prepared, Self::Active)
                | (Self::Active, Self::Old)
                | (Self::Old, Self::Tainted)
                | (Self::Tainted, Self::Revoked)
        )
    }

    /// Whether relying parties trust an authority in this state while it has not expired
    /// (every state but `revoked`: a prepared one is trusted before it signs, an old or tainted
    /// one until what it signed has expired).
    pub fn is_trusted(self) -> bool {
        self != Self::Revoked
    }
}

/// Whether `id` has the shape of an authority id: the lowercase hex subject key id of an X.509
/// authority or the base64url `kid` of a JWT key, so 1 to [`MAX_AUTHORITY_ID_CHARS`] ASCII
/// letters, digits, `-` and `_`. Whether such an authority exists is the store's answer.
pub fn is_authority_id(id: &str) -> bool {
    (1..=MAX_AUTHORITY_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl std::fmt::Display for AuthorityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for AuthorityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in AuthorityKind::ALL {
            assert_eq!(AuthorityKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(kind.to_string(), kind.as_str());
        }
        for state in AuthorityState::ALL {
            assert_eq!(AuthorityState::from_name(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(AuthorityKind::from_name("X509Root"), None);
        assert_eq!(AuthorityState::from_name("Active"), None);
    }

    #[test]
    fn states_only_move_one_step_forward() {
        let allowed: Vec<(AuthorityState, AuthorityState)> = AuthorityState::ALL
            .into_iter()
            .flat_map(|from| AuthorityState::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            allowed,
            [
                (AuthorityState::Prepared, AuthorityState::Active),
                (AuthorityState::Active, AuthorityState::Old),
                (AuthorityState::Old, AuthorityState::Tainted),
                (AuthorityState::Tainted, AuthorityState::Revoked),
            ]
        );
    }

    #[test]
    fn authority_ids_are_base64url_characters_of_bounded_length() {
        for ok in [
            "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
            "Xy_-09azAZ",
            &"a".repeat(MAX_AUTHORITY_ID_CHARS),
        ] {
            assert!(is_authority_id(ok), "{ok}");
        }
        for bad in [
            "",
            &"a".repeat(MAX_AUTHORITY_ID_CHARS + 1),
            "a/b",
            "a b",
            "a.b",
            "a%2Fb",
            "é",
            "a\n",
        ] {
            assert!(!is_authority_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_revoked_authorities_are_distrusted() {
        let distrusted: Vec<AuthorityState> = AuthorityState::ALL
            .into_iter()
            .filter(|s| !s.is_trusted())
            .collect();
        assert_eq!(distrusted, [AuthorityState::Revoked]);
    }
}
