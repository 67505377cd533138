//! JWT-SVID claim rules (SPIFFE JWT-SVID spec §3): `sub` is the SPIFFE ID, `aud` one string or an
//! array, `exp` required; Sigil also issues `iat` and `jti`. Signature checking happens elsewhere;
//! this module decides whether already-authentic claims are acceptable for an audience at a time.

use serde::{Deserialize, Serialize};

use crate::SpiffeId;

/// Allowed clock skew when checking `exp`, in seconds.
pub const EXP_LEEWAY_SECS: i64 = 30;

/// Why claims are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtClaimError {
    #[error("token has no audience")]
    MissingAudience,
    #[error("audience mismatch: expected `{expected}`, token has {got:?}")]
    AudienceMismatch { expected: String, got: Vec<String> },
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("subject `{0}` is not a valid SPIFFE ID")]
    BadSubject(String),
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The audiences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(a) => vec![a.clone()],
            Self::Many(v) => v.clone(),
        }
    }

    /// Whether `aud` is among the audiences.
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Self::One(a) => a == aud,
            Self::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

/// The registered claims of a JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSvidClaims {
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl JwtSvidClaims {
    /// Checks subject, audience and expiry; returns the subject as a [`SpiffeId`].
    pub fn validate(&self, expected_audience: &str, now: i64) -> Result<SpiffeId, JwtClaimError> {
        let sub =
            SpiffeId::parse(&self.sub).map_err(|_| JwtClaimError::BadSubject(self.sub.clone()))?;
        let auds = self.aud.to_vec();
        if auds.is_empty() {
            return Err(JwtClaimError::MissingAudience);
        }
        if !self.aud.contains(expected_audience) {
            return Err(JwtClaimError::AudienceMismatch {
                expected: expected_audience.to_owned(),
                got: auds,
            });
        }
        if self.exp.saturating_add(EXP_LEEWAY_SECS) <= now {
            return Err(JwtClaimError::Expired { exp: self.exp, now });
        }
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> JwtSvidClaims {
        JwtSvidClaims {
            sub: "spiffe://example.org/w".into(),
            aud: Audience::Many(vec!["a".into(), "b".into()]),
            exp: 1000,
            iat: Some(900),
            jti: Some("j".into()),
        }
    }

    #[test]
    fn accepts_matching_audience_before_expiry() {
        assert_eq!(
            claims().validate("b", 950).unwrap().as_str(),
            "spiffe://example.org/w"
        );
    }

    #[test]
    fn rejects_wrong_audience() {
        assert!(matches!(
            claims().validate("c", 950),
            Err(JwtClaimError::AudienceMismatch { .. })
        ));
    }

    #[test]
    fn rejects_expired_beyond_leeway() {
        assert!(claims().validate("a", 1000 + EXP_LEEWAY_SECS - 1).is_ok());
        assert!(matches!(
            claims().validate("a", 1000 + EXP_LEEWAY_SECS),
            Err(JwtClaimError::Expired { .. })
        ));
    }

    #[test]
    fn audience_may_be_a_single_string() {
        let c: JwtSvidClaims =
            serde_json::from_str(r#"{"sub":"spiffe://td/x","aud":"one","exp":5}"#).unwrap();
        assert!(c.aud.contains("one"));
    }
}
