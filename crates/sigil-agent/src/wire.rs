//! Turning agent API messages into the agent's own types, refusing what does not parse.

use sigil_proto::agent::v1 as pb;
use sigil_spiffe::{JwtAuthorityKey, TrustBundle, TrustDomain};

use crate::error::AgentError;

/// Converts a wire bundle; a negative refresh hint means none.
pub(crate) fn bundle_from_pb(b: &pb::Bundle) -> Result<TrustBundle, AgentError> {
    Ok(TrustBundle {
        trust_domain: TrustDomain::parse(&b.trust_domain)
            .map_err(|_| AgentError::BadResponse("bundle trust domain"))?,
        x509_authorities: b.x509_authorities.clone(),
        jwt_authorities: b
            .jwt_authorities
            .iter()
            .map(|k| JwtAuthorityKey {
                kid: k.kid.clone(),
                public_key_der: k.public_key.clone(),
                expires_at: k.expires_at,
            })
            .collect(),
        sequence: b.sequence,
        refresh_hint: u64::try_from(b.refresh_hint).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bundles_are_checked_and_negative_refresh_hints_ignored() {
        let mut b = pb::Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![vec![1]],
            jwt_authorities: vec![pb::JwtKey {
                kid: "k1".into(),
                public_key: vec![2],
                expires_at: 5,
            }],
            sequence: 4,
            refresh_hint: -1,
        };
        let bundle = bundle_from_pb(&b).unwrap();
        assert_eq!(bundle.refresh_hint, 0);
        assert_eq!(bundle.sequence, 4);
        assert_eq!(bundle.jwt_authorities.first().unwrap().kid, "k1");
        b.trust_domain = "Not A Domain".into();
        assert!(matches!(
            bundle_from_pb(&b),
            Err(AgentError::BadResponse(_))
        ));
    }
}
