//! Loading policy directories: ids, hashes, the default set, and errors located as
//! `file:line:column`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

use std::path::Path;

use sigil_policy::{DEFAULT_POLICY_HASH, PolicyError, load_dir};

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn load_err(files: &[(&str, &str)]) -> (PolicyError, String, tempfile::TempDir) {
    let dir = dir_with(files);
    let err = load_dir(dir.path()).unwrap_err();
    let shown = err.to_string();
    let prefix = format!("{}/", dir.path().display());
    let shown = shown
        .strip_prefix(&prefix)
        .map(str::to_owned)
        .unwrap_or(shown);
    (err, shown, dir)
}

const GOOD: &str = r#"permit (principal is Sigil::Workload, action == Sigil::Action::"IssueX509Svid", resource)
when { principal.owner == "team-a" };
"#;

#[test]
fn the_good_policy_loads() {
    // The positive twin of the error tests below: the same file without the mistake loads.
    let dir = dir_with(&[("a.cedar", GOOD)]);
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.ids(), ["a:0"]);
}

#[test]
fn empty_directory_gets_the_default_set() {
    let dir = dir_with(&[("README.md", "not a policy")]);
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.hash(), DEFAULT_POLICY_HASH);
    assert_eq!(loaded.ids(), ["default:exchange", "default:issue"]);
    assert_eq!(
        loaded.action_names(),
        [
            "Exchange",
            "IssueJwtSvid",
            "IssueX509Svid",
            "RequestCredential"
        ]
    );
}

#[test]
fn ids_come_from_annotations_or_file_stem_and_index() {
    let dir = dir_with(&[
        (
            "b.cedar",
            &format!("{GOOD}\n@id(\"named\")\n{GOOD}\n{GOOD}"),
        ),
        ("a.cedar", GOOD),
        ("ignored.txt", "garbage"),
    ]);
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.ids(), ["a:0", "b:0", "named", "b:2"]);
    assert_eq!(loaded.len(), 4);
}

#[test]
fn hash_covers_names_contents_and_schema_fragments() {
    let a = load_dir(dir_with(&[("a.cedar", GOOD)]).path()).unwrap();
    let same = load_dir(dir_with(&[("a.cedar", GOOD)]).path()).unwrap();
    let renamed = load_dir(dir_with(&[("b.cedar", GOOD)]).path()).unwrap();
    let edited = load_dir(dir_with(&[("a.cedar", &format!("{GOOD} "))]).path()).unwrap();
    let with_fragment = load_dir(
        dir_with(&[
            ("a.cedar", GOOD),
            ("x.cedarschema", "namespace Sigil { action \"x\" appliesTo { principal: Workload, resource: Resource, context: Context }; }"),
        ])
        .path(),
    )
    .unwrap();
    assert_eq!(a.hash().len(), 64);
    assert_eq!(a.hash(), same.hash());
    for other in [&renamed, &edited, &with_fragment] {
        assert_ne!(a.hash(), other.hash());
    }
}

#[test]
fn syntax_error_is_located() {
    let text =
        "// first line\npermit (principal, action, resource)\nwhen { principal.owner == };\n";
    let (err, shown, _dir) = load_err(&[("bad.cedar", text)]);
    assert!(matches!(err, PolicyError::Syntax { .. }), "{err:?}");
    assert!(shown.starts_with("bad.cedar:3:27: "), "{shown}");
}

#[test]
fn syntax_error_location_counts_characters_not_bytes() {
    let text = "// é€\npermit (principal, action, resource) when { ; };";
    let (_, shown, _dir) = load_err(&[("bad.cedar", text)]);
    assert!(shown.starts_with("bad.cedar:2:"), "{shown}");
    let text = "permit (principal, action, resource) when { \"é€\" == ; };";
    let (_, shown, _dir) = load_err(&[("bad.cedar", text)]);
    // The `;` is character 53 (byte 56).
    assert!(shown.starts_with("bad.cedar:1:53: "), "{shown}");
}

#[test]
fn attribute_not_in_the_schema_fails_strict_validation_with_location() {
    let text = GOOD.replace("principal.owner", "principal.team");
    let (err, shown, _dir) = load_err(&[("ok.cedar", GOOD), ("typo.cedar", &text)]);
    assert!(
        matches!(err, PolicyError::Validation { more: 0, .. }),
        "{err:?}"
    );
    assert!(shown.starts_with("typo.cedar:2:8: "), "{shown}");
    assert!(shown.contains("`team`"), "{shown}");
}

#[test]
fn type_error_fails_strict_validation() {
    // `hour_utc` is a Long: comparing it with a string is a strict-mode type error.
    let text = GOOD.replace("principal.owner == \"team-a\"", "context.hour_utc == \"1\"");
    let (err, shown, _dir) = load_err(&[("types.cedar", &text)]);
    assert!(matches!(err, PolicyError::Validation { .. }), "{err:?}");
    assert!(shown.starts_with("types.cedar:2:8: "), "{shown}");
}

#[test]
fn unknown_action_in_a_policy_is_refused() {
    let text = GOOD.replace("IssueX509Svid", "IssueX509SVID");
    let (err, shown, _dir) = load_err(&[("act.cedar", &text)]);
    assert!(matches!(err, PolicyError::Validation { .. }), "{err:?}");
    assert!(shown.starts_with("act.cedar:1:"), "{shown}");
    assert!(shown.contains("IssueX509SVID"), "{shown}");
}

#[test]
fn operator_actions_come_from_schema_fragments() {
    let policy = r#"permit (principal, action == Sigil::Action::"db:read", resource);"#;
    let (err, _, _dir) = load_err(&[("db.cedar", policy)]);
    assert!(matches!(err, PolicyError::Validation { .. }), "{err:?}");
    let dir = dir_with(&[
        ("db.cedar", policy),
        (
            "db.cedarschema",
            "namespace Sigil { action \"db:read\" appliesTo { principal: Workload, resource: Resource, context: Context }; }",
        ),
    ]);
    let loaded = load_dir(dir.path()).unwrap();
    assert!(loaded.action_names().contains(&"db:read"));
}

#[test]
fn schema_fragment_syntax_error_is_located() {
    let (err, shown, _dir) = load_err(&[
        ("a.cedar", GOOD),
        (
            "x.cedarschema",
            "namespace Sigil {\n  action \"x\" appliesTo { principal: };\n}",
        ),
    ]);
    assert!(matches!(err, PolicyError::SchemaSyntax { .. }), "{err:?}");
    assert!(shown.starts_with("x.cedarschema:2:"), "{shown}");
}

#[test]
fn fragment_that_does_not_merge_is_a_schema_error() {
    let (err, _, _dir) = load_err(&[
        ("a.cedar", GOOD),
        ("x.cedarschema", "namespace Sigil { entity Workload; }"),
    ]);
    assert!(matches!(err, PolicyError::Schema { .. }), "{err:?}");
}

#[test]
fn duplicate_ids_are_refused() {
    let text = format!("@id(\"same\")\n{GOOD}\n@id(\"same\")\n{GOOD}");
    let (err, shown, _dir) = load_err(&[("dup.cedar", &text)]);
    assert!(
        matches!(err, PolicyError::DuplicatePolicyId { .. }),
        "{err:?}"
    );
    assert_eq!(shown, "dup.cedar:1:5: duplicate policy id `same`");
}

#[test]
fn templates_are_refused() {
    let text = "permit (principal == ?principal, action, resource);";
    let (err, _, _dir) = load_err(&[("t.cedar", text)]);
    assert!(matches!(err, PolicyError::Template { .. }), "{err:?}");
}

#[test]
fn oversized_file_is_refused() {
    let big = format!("{GOOD}{}", " ".repeat(1024 * 1024));
    let (err, _, _dir) = load_err(&[("big.cedar", &big)]);
    assert!(matches!(err, PolicyError::FileTooLarge { .. }), "{err:?}");
}

#[test]
fn too_many_policies_are_refused() {
    // Two files, each under the size limit, 10,002 policies together.
    let text = GOOD.repeat(5_001);
    let (err, shown, _dir) = load_err(&[("many1.cedar", &text), ("many2.cedar", &text)]);
    assert!(
        matches!(err, PolicyError::TooManyPolicies { .. }),
        "{err:?}"
    );
    assert!(
        shown.starts_with("many2.cedar:1:1: more than 10000 policies"),
        "{shown}"
    );
}

#[test]
fn missing_directory_is_an_io_error() {
    let err = load_dir(Path::new("/nonexistent/sigil-policies")).unwrap_err();
    assert!(matches!(err, PolicyError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot read `/nonexistent/sigil-policies`: ")
    );
}
