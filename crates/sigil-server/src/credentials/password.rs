//! Passwords and user names for brokered database users: a policy (length and alphabet) whose
//! characters are safe inside quoted SQL, uniform generation from the system random number
//! generator, and the `v_<role>_<random>` user name shape.

use sigil_keys::KeyError;
use sigil_keys::random::random_bytes;
use zeroize::Zeroizing;

/// Shortest password a policy may ask for.
pub const MIN_PASSWORD_LENGTH: usize = 16;
/// Longest password a policy may ask for.
pub const MAX_PASSWORD_LENGTH: usize = 128;
/// Fewest distinct characters a password alphabet must have.
pub const MIN_ALPHABET_SIZE: usize = 16;
/// Characters no password may contain: they would end or escape the quoted literals that
/// statement templates put passwords in (`'`, `"`, `\`, `` ` ``), start a dollar-quoted string
/// (`$`), or split a statement (space, `;`).
pub const FORBIDDEN_CHARACTERS: &[char] = &['\'', '"', '\\', '`', '$', ' ', ';'];
/// The alphabet of [`PasswordPolicy::default`].
pub const DEFAULT_ALPHABET: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!#%^*+=";
/// The length of [`PasswordPolicy::default`].
pub const DEFAULT_PASSWORD_LENGTH: usize = 32;
/// Longest user name [`generate_username`] returns (MySQL's limit; MariaDB allows 80,
/// PostgreSQL 63).
pub const MAX_USERNAME_LENGTH: usize = 32;
/// How many characters of the role [`generate_username`] keeps.
const USERNAME_ROLE_CHARS: usize = 12;
/// Random characters at the end of a generated user name (80 bits).
const USERNAME_RANDOM_CHARS: usize = 16;
/// The lowercase base32 alphabet of the random part of user names.
const USERNAME_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a password policy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    /// The length is outside [`MIN_PASSWORD_LENGTH`]..=[`MAX_PASSWORD_LENGTH`].
    #[error(
        "password length {length} is outside {min}..={max}",
        min = MIN_PASSWORD_LENGTH,
        max = MAX_PASSWORD_LENGTH
    )]
    Length {
        /// The rejected length.
        length: usize,
    },
    /// The alphabet has a character outside printable ASCII (`!` to `~`).
    #[error("password alphabet character {character:?} is not printable ASCII")]
    NotPrintableAscii {
        /// The offending character.
        character: char,
    },
    /// The alphabet has a character that would break quoting in statements.
    #[error(
        "password alphabet character `{character}` is not allowed: it would break quoting in statements"
    )]
    ForbiddenCharacter {
        /// The offending character, one of [`FORBIDDEN_CHARACTERS`].
        character: char,
    },
    /// The alphabet has fewer than [`MIN_ALPHABET_SIZE`] distinct characters.
    #[error(
        "password alphabet has {distinct} distinct characters, fewer than {min}",
        min = MIN_ALPHABET_SIZE
    )]
    AlphabetTooSmall {
        /// How many distinct characters it has.
        distinct: usize,
    },
}

/// How generated passwords look: a length and an alphabet of printable ASCII characters, none of
/// [`FORBIDDEN_CHARACTERS`], so a password can be put between quotes in any statement template
/// without escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    length: usize,
    /// Distinct characters, in the order first given.
    alphabet: Vec<u8>,
}

impl PasswordPolicy {
    /// A policy of `length` characters (16 to 128) drawn uniformly from `alphabet` (at least 16
    /// distinct printable ASCII characters, none of [`FORBIDDEN_CHARACTERS`]; repeated
    /// characters count once).
    pub fn new(length: usize, alphabet: &str) -> Result<Self, PasswordPolicyError> {
        if !(MIN_PASSWORD_LENGTH..=MAX_PASSWORD_LENGTH).contains(&length) {
            return Err(PasswordPolicyError::Length { length });
        }
        let mut distinct = Vec::new();
        for character in alphabet.chars() {
            check_character(character)?;
            // check_character admits ASCII only, so the character is one byte.
            let byte = u8::try_from(character)
                .map_err(|_| PasswordPolicyError::NotPrintableAscii { character })?;
            if !distinct.contains(&byte) {
                distinct.push(byte);
            }
        }
        if distinct.len() < MIN_ALPHABET_SIZE {
            return Err(PasswordPolicyError::AlphabetTooSmall {
                distinct: distinct.len(),
            });
        }
        Ok(Self {
            length,
            alphabet: distinct,
        })
    }

    /// The password length.
    pub fn length(&self) -> usize {
        self.length
    }

    /// The distinct characters of the alphabet.
    pub fn alphabet(&self) -> &str {
        // Every byte is printable ASCII, checked in `new`.
        std::str::from_utf8(&self.alphabet).unwrap_or_default()
    }

    /// A new password: each character drawn uniformly from the alphabet with the system random
    /// number generator (rejection sampling, so no modulo bias).
    pub fn generate(&self) -> Result<Zeroizing<String>, KeyError> {
        Ok(Zeroizing::new(uniform_string(&self.alphabet, self.length)?))
    }
}

impl Default for PasswordPolicy {
    /// 32 characters from A-Z, a-z, 0-9 and `-_.~!#%^*+=` (about 196 bits).
    fn default() -> Self {
        Self {
            length: DEFAULT_PASSWORD_LENGTH,
            alphabet: DEFAULT_ALPHABET.as_bytes().to_vec(),
        }
    }
}

/// Checks that every character of `password` could have come from a valid policy: printable
/// ASCII and none of [`FORBIDDEN_CHARACTERS`]. A password that passes can be put between quotes
/// in a statement without escaping.
pub fn check_password_characters(password: &str) -> Result<(), PasswordPolicyError> {
    password.chars().try_for_each(check_character)
}

fn check_character(character: char) -> Result<(), PasswordPolicyError> {
    if FORBIDDEN_CHARACTERS.contains(&character) {
        return Err(PasswordPolicyError::ForbiddenCharacter { character });
    }
    if !character.is_ascii_graphic() {
        return Err(PasswordPolicyError::NotPrintableAscii { character });
    }
    Ok(())
}

/// A user name for a credential of `role`: `v_<role>_<16 random lowercase base32 characters>`,
/// where `<role>` is the role lowercased, every character outside `[a-z0-9_]` replaced by `_`,
/// runs of `_` collapsed, trimmed of `_`, and cut to 12 characters (`v_<random>` when nothing is
/// left). The result is at most [`MAX_USERNAME_LENGTH`] bytes of `[a-z0-9_]`, so it is a valid
/// unquoted PostgreSQL identifier and MySQL/MariaDB user name.
pub fn generate_username(role: &str) -> Result<String, KeyError> {
    let mut cleaned = String::with_capacity(USERNAME_ROLE_CHARS);
    for c in role.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        };
        if c == '_' && (cleaned.is_empty() || cleaned.ends_with('_')) {
            continue;
        }
        cleaned.push(c);
        if cleaned.len() == USERNAME_ROLE_CHARS {
            break;
        }
    }
    while cleaned.ends_with('_') {
        cleaned.pop();
    }
    let random = uniform_string(USERNAME_ALPHABET, USERNAME_RANDOM_CHARS)?;
    if cleaned.is_empty() {
        Ok(format!("v_{random}"))
    } else {
        Ok(format!("v_{cleaned}_{random}"))
    }
}

/// `length` characters drawn uniformly from `alphabet` (1 to 256 ASCII bytes): random bytes at
/// or above the largest multiple of the alphabet size are discarded, the rest taken modulo it.
fn uniform_string(alphabet: &[u8], length: usize) -> Result<String, KeyError> {
    let size = alphabet.len();
    // The largest multiple of `size` not above 256; bytes below it map uniformly.
    let limit = 256 - 256 % size.max(1);
    let mut out = String::with_capacity(length);
    while out.len() < length {
        // Draw a little more than needed; at most half of the bytes are rejected.
        let batch = Zeroizing::new(random_bytes((length - out.len()) * 2)?);
        for &byte in batch.iter() {
            let byte = usize::from(byte);
            if byte >= limit {
                continue;
            }
            if let Some(&c) = alphabet.get(byte % size) {
                out.push(char::from(c));
            }
            if out.len() == length {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn default_policy_is_valid_and_generates_from_its_alphabet() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            PasswordPolicy::new(DEFAULT_PASSWORD_LENGTH, DEFAULT_ALPHABET).unwrap(),
            policy
        );
        let password = policy.generate().unwrap();
        assert_eq!(password.len(), 32);
        assert!(password.chars().all(|c| DEFAULT_ALPHABET.contains(c)));
        assert!(check_password_characters(&password).is_ok());
        assert_ne!(*password, *policy.generate().unwrap());
    }

    #[test]
    fn rejects_length_out_of_range() {
        for length in [0, 15, 129] {
            assert_eq!(
                PasswordPolicy::new(length, DEFAULT_ALPHABET).unwrap_err(),
                PasswordPolicyError::Length { length }
            );
        }
        assert!(PasswordPolicy::new(16, DEFAULT_ALPHABET).is_ok());
        assert!(PasswordPolicy::new(128, DEFAULT_ALPHABET).is_ok());
    }

    #[test]
    fn rejects_each_forbidden_character_by_name() {
        for &character in FORBIDDEN_CHARACTERS {
            let alphabet = format!("abcdefghijklmnop{character}");
            let err = PasswordPolicy::new(32, &alphabet).unwrap_err();
            assert_eq!(err, PasswordPolicyError::ForbiddenCharacter { character });
            assert!(err.to_string().contains(&format!("`{character}`")));
        }
    }

    #[test]
    fn rejects_non_printable_and_non_ascii() {
        for character in ['\n', '\t', '\u{7f}', 'é', '\u{0}'] {
            let alphabet = format!("abcdefghijklmnop{character}");
            assert_eq!(
                PasswordPolicy::new(32, &alphabet).unwrap_err(),
                PasswordPolicyError::NotPrintableAscii { character }
            );
        }
    }

    #[test]
    fn rejects_small_alphabet_counting_distinct_characters() {
        assert_eq!(
            PasswordPolicy::new(32, "abcdefghijklmnoaaaaaaaa").unwrap_err(),
            PasswordPolicyError::AlphabetTooSmall { distinct: 15 }
        );
        let policy = PasswordPolicy::new(32, "abcdefghijklmnoppp").unwrap();
        assert_eq!(policy.alphabet(), "abcdefghijklmnop");
    }

    #[test]
    fn generation_is_roughly_uniform() {
        // 17 characters: 256 % 17 = 1, so a modulo without rejection would favour `a` slightly;
        // this only checks that every character turns up about equally often.
        let policy = PasswordPolicy::new(128, "abcdefghijklmnopq").unwrap();
        let mut counts: HashMap<char, usize> = HashMap::new();
        let rounds = 200;
        for _ in 0..rounds {
            for c in policy.generate().unwrap().chars() {
                *counts.entry(c).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 17);
        let expected = (rounds * 128) as f64 / 17.0;
        for (c, n) in counts {
            let deviation = (n as f64 - expected).abs() / expected;
            assert!(
                deviation < 0.15,
                "`{c}` drawn {n} times, expected about {expected}"
            );
        }
    }

    #[test]
    fn uniform_string_never_uses_rejected_bytes() {
        // With a 94-character alphabet, 256 - 256 % 94 = 188 bytes are usable.
        let alphabet: Vec<u8> = (b'!'..=b'~').collect();
        let s = uniform_string(&alphabet, 1000).unwrap();
        assert_eq!(s.len(), 1000);
        assert!(s.bytes().all(|b| alphabet.contains(&b)));
    }

    #[test]
    fn username_has_the_documented_shape() {
        let name = generate_username("orders-Reader").unwrap();
        let (prefix, random) = name.rsplit_once('_').unwrap();
        assert_eq!(prefix, "v_orders_reade");
        assert_eq!(random.len(), 16);
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
        assert_ne!(name, generate_username("orders-Reader").unwrap());
    }

    #[test]
    fn username_cleans_and_bounds_the_role() {
        let long_role = "a".repeat(200);
        let cases = [
            ("", "v_"),
            ("---", "v_"),
            ("a b", "v_a_b_"),
            ("__X__", "v_x_"),
            ("Ünïcode", "v_n_code_"),
            ("abcdefghijk_lmnop", "v_abcdefghijk_"),
            (long_role.as_str(), "v_aaaaaaaaaaaa_"),
        ];
        for (role, prefix) in cases {
            let name = generate_username(role).unwrap();
            assert!(name.starts_with(prefix), "{role:?} gave {name}");
            assert_eq!(name.len(), prefix.len() + 16, "{role:?} gave {name}");
            assert!(name.len() <= MAX_USERNAME_LENGTH);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
        }
    }
}
