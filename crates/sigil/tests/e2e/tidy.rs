//! Repository tidiness that the conventions promise: every Rust file says what it owns in a
//! `//!` first line, and the agent never depends on server-side crates.

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".venv" | "node_modules")
                && !name.starts_with('.')
            {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["crates", "interop", "fuzz"] {
        if root.join(dir).exists() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    assert!(
        files.len() > 50,
        "found only {} files: wrong root?",
        files.len()
    );
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` first line: {missing:?}"
    );
}

#[test]
fn the_agent_depends_on_no_server_side_crate() {
    let manifest =
        std::fs::read_to_string(repo_root().join("crates/sigil-agent/Cargo.toml")).unwrap();
    let deps = manifest.split("[dev-dependencies]").next().unwrap();
    for banned in ["sigil-ca", "sigil-store", "sigil-server", "sigil-policy"] {
        assert!(
            !deps.contains(banned),
            "sigil-agent must not depend on {banned}"
        );
    }
    assert!(
        deps.contains("sigil-proto"),
        "the agent reaches the server through sigil-proto"
    );
}
