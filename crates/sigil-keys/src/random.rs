//! Cryptographically secure random bytes and tokens from the system generator (AWS-LC).

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::KeyError;

/// Bytes of entropy in a [`random_token`].
pub const TOKEN_BYTES: usize = 32;

/// `n` random bytes. Fails with [`KeyError::Random`] only if the system generator fails.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, KeyError> {
    let mut out = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| KeyError::Random)?;
    Ok(out)
}

/// A bearer token: 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> Result<String, KeyError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(TOKEN_BYTES)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_have_the_requested_length_and_differ() {
        assert_eq!(random_bytes(0).unwrap().len(), 0);
        let a = random_bytes(16).unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, random_bytes(16).unwrap());
    }

    #[test]
    fn tokens_are_43_url_safe_characters() {
        let t = random_token().unwrap();
        assert_eq!(t.len(), 43);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(t, random_token().unwrap());
    }
}
