//! Entry labels: the bounds of the `key=value` pairs an operator attaches to a registration
//! entry, which policy reads as the workload's `labels`.

use std::collections::BTreeMap;

use crate::{StoreError, StoreResult};

/// Most labels one entry may have.
pub const MAX_ENTRY_LABELS: usize = 32;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 128;

/// Why `key` cannot be a label key, or `None` when it can: 1 to [`MAX_LABEL_KEY_BYTES`] bytes of
/// lowercase letters, digits, `.`, `_`, `/` and `-`, starting and ending with a letter or digit
/// (so never `=`, and `key=value` splits at its first `=`).
pub fn label_key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("a label key is not empty".to_owned());
    }
    if key.len() > MAX_LABEL_KEY_BYTES {
        return Some(format!(
            "a label key is at most {MAX_LABEL_KEY_BYTES} bytes"
        ));
    }
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if let Some(bad) = key
        .bytes()
        .find(|&b| !(is_alnum(b) || matches!(b, b'.' | b'_' | b'/' | b'-')))
    {
        return Some(format!(
            "a label key holds only `a-z`, `0-9`, `.`, `_`, `/` and `-`, not `{}`",
            bad.escape_ascii()
        ));
    }
    let ends_ok =
        key.bytes().next().is_some_and(is_alnum) && key.bytes().last().is_some_and(is_alnum);
    if !ends_ok {
        return Some("a label key starts and ends with a letter or digit".to_owned());
    }
    None
}

/// Why `value` cannot be a label value, or `None` when it can: 0 to [`MAX_LABEL_VALUE_BYTES`]
/// bytes of printable ASCII (space to `~`, `=` included).
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.len() > MAX_LABEL_VALUE_BYTES {
        return Some(format!(
            "a label value is at most {MAX_LABEL_VALUE_BYTES} bytes"
        ));
    }
    if let Some(bad) = value.chars().find(|c| !matches!(c, ' '..='~')) {
        return Some(format!(
            "a label value holds only printable ASCII, not `{}`",
            bad.escape_default()
        ));
    }
    None
}

/// Checks a whole label set: at most [`MAX_ENTRY_LABELS`], each key and value as
/// [`label_key_problem`] and [`label_value_problem`] accept. Fails with [`StoreError::Invalid`]
/// (field `labels`) naming the first bad key.
pub fn check_labels(labels: &BTreeMap<String, String>) -> StoreResult<()> {
    let invalid = |reason: String| StoreError::Invalid {
        field: "labels",
        reason,
    };
    if labels.len() > MAX_ENTRY_LABELS {
        return Err(invalid(format!(
            "an entry has at most {MAX_ENTRY_LABELS} labels, not {}",
            labels.len()
        )));
    }
    for (key, value) in labels {
        let shown: String = key.chars().take(MAX_LABEL_KEY_BYTES + 1).collect();
        if let Some(problem) = label_key_problem(key) {
            return Err(invalid(format!(
                "key `{}`: {problem}",
                shown.escape_default()
            )));
        }
        if let Some(problem) = label_value_problem(value) {
            return Err(invalid(format!("value of `{shown}`: {problem}")));
        }
    }
    Ok(())
}

/// The labels as policy sees them: one `key=value` string each, in key order.
pub fn label_strings(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn reason_of(pairs: &[(&str, &str)]) -> String {
        match check_labels(&labels(pairs)) {
            Err(StoreError::Invalid {
                field: "labels",
                reason,
            }) => reason,
            other => panic!("expected an invalid labels error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_keys_and_values_at_their_limits() {
        let key = "k".repeat(MAX_LABEL_KEY_BYTES);
        let value = "v=".repeat(MAX_LABEL_VALUE_BYTES / 2);
        for (k, v) in [
            ("tier", "web"),
            ("a", ""),
            ("app.kubernetes.io/name", "x y=z ~"),
            ("0-9_a", "1"),
            (key.as_str(), value.as_str()),
        ] {
            let checked = check_labels(&labels(&[(k, v)]));
            assert!(checked.is_ok(), "{k}={v}: {checked:?}");
        }
        assert!(check_labels(&BTreeMap::new()).is_ok());
    }

    #[test]
    fn refuses_bad_keys_naming_them() {
        let long = "k".repeat(MAX_LABEL_KEY_BYTES + 1);
        for bad in [
            "",
            "Tier",
            "a=b",
            "-a",
            "a-",
            ".a",
            "a b",
            "é",
            long.as_str(),
        ] {
            let reason = reason_of(&[("ok", "v"), (bad, "v")]);
            assert!(reason.starts_with("key `"), "{bad}: {reason}");
            assert!(
                reason.contains(&bad.escape_default().to_string()),
                "{reason}"
            );
        }
    }

    #[test]
    fn refuses_bad_values() {
        let long = "v".repeat(MAX_LABEL_VALUE_BYTES + 1);
        for bad in ["a\nb", "tab\t", "é", long.as_str()] {
            let reason = reason_of(&[("tier", bad)]);
            assert!(reason.starts_with("value of `tier`: "), "{reason}");
        }
    }

    #[test]
    fn refuses_more_than_the_maximum_count() {
        let keys: Vec<String> = (0..=MAX_ENTRY_LABELS).map(|i| format!("k{i}")).collect();
        let mut many: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        assert!(reason_of(&many).contains("at most 32 labels"));
        many.pop();
        assert!(check_labels(&labels(&many)).is_ok());
    }

    #[test]
    fn policy_strings_join_key_and_value() {
        assert_eq!(
            label_strings(&labels(&[("tier", "web"), ("a", "x=y")])),
            vec!["a=x=y".to_owned(), "tier=web".to_owned()]
        );
    }
}
