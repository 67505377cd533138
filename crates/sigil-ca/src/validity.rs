//! Validity windows, serial numbers and the subject every certificate Sigil issues starts from.

use rcgen::{CertificateParams, DnType, SerialNumber};
use time::OffsetDateTime;

use crate::CaError;

/// Organization (O) of every certificate Sigil issues.
pub(crate) const ORGANIZATION: &str = "Sigil";
/// Longest common name X.509 allows (ub-common-name).
pub(crate) const MAX_COMMON_NAME_LEN: usize = 64;

/// Parameters every issued certificate starts from: NotBefore back-dated by [`BACKDATE_SECS`]
/// from `now`, NotAfter `not_after`, a fresh random serial, and subject `O=Sigil`.
pub(crate) fn base_params(now: i64, not_after: i64) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.not_before = to_datetime(now.saturating_sub(BACKDATE_SECS))?;
    params.not_after = to_datetime(not_after)?;
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION);
    Ok(params)
}

/// Seconds NotBefore is set before the issuing time, to absorb clock skew between peers.
pub const BACKDATE_SECS: i64 = 10;
/// Bytes of a certificate serial number (127 significant bits: top bit clear, next bit set).
pub(crate) const SERIAL_BYTES: usize = 16;

/// `now + ttl_secs`, saturating; fails with [`CaError::ZeroTtl`] for a zero TTL.
pub(crate) fn end_of_ttl(now: i64, ttl_secs: u64) -> Result<i64, CaError> {
    if ttl_secs == 0 {
        return Err(CaError::ZeroTtl);
    }
    Ok(now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)))
}

/// The certificate time for Unix seconds `secs`.
pub(crate) fn to_datetime(secs: i64) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| CaError::TimeOutOfRange { secs })
}

/// A random positive serial of exactly 16 bytes: 126 random bits, the top bit cleared (positive)
/// and the next one set (so the DER INTEGER never shrinks below 127 bits).
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = sigil_keys::random_bytes(SERIAL_BYTES)?;
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x40;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_is_positive_and_full_length() {
        for _ in 0..64 {
            let serial = random_serial().unwrap().to_bytes();
            assert_eq!(serial.len(), SERIAL_BYTES);
            assert_eq!(serial[0] & 0xc0, 0x40);
        }
    }

    #[test]
    fn ttl_end_saturates_and_refuses_zero() {
        assert_eq!(end_of_ttl(100, 50).unwrap(), 150);
        assert_eq!(end_of_ttl(100, u64::MAX).unwrap(), i64::MAX);
        assert!(matches!(end_of_ttl(100, 0), Err(CaError::ZeroTtl)));
    }

    #[test]
    fn far_times_are_out_of_range() {
        assert!(to_datetime(i64::MAX).is_err());
        assert!(to_datetime(1_700_000_000).is_ok());
    }
}
