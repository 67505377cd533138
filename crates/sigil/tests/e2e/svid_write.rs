//! `sigil svid fetch --write DIR` against names another user planted in DIR: a symlink at
//! `svid.pem` (and `svid.key`) pointing at a file of the caller's, and a `bundle.pem` pre-created
//! and owned by another uid. Each output is a new regular file of the caller's, renamed into
//! place; nothing is written through the link or into the other user's file.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::harness::*;

/// The uid that owns the planted names (`nobody`).
const OTHER_UID: u32 = 65534;

#[test]
fn svid_fetch_write_replaces_planted_symlinks_and_other_users_files() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    let spiffe_id = "spiffe://example.org/e2e/svid-write";
    create_uid_entry(&server, spiffe_id, &agent_id);

    // Positive first: into a clean directory, the three files are written.
    let clean = tmp.path().join("clean");
    fetch_svid_files(&paths.socket, &clean);
    let clean_bundle = std::fs::read(clean.join("bundle.pem")).unwrap();
    assert!(String::from_utf8_lossy(&clean_bundle).contains("BEGIN CERTIFICATE"));

    // Another user plants names in the output directory.
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"the caller's file: must stay untouched\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("svid.pem")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("svid.key")).unwrap();
    std::fs::write(out.join("bundle.pem"), b"attacker's trust bundle\n").unwrap();
    std::fs::set_permissions(
        out.join("bundle.pem"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    if nix::unistd::getuid().is_root() {
        for name in ["svid.pem", "svid.key", "bundle.pem"] {
            chown_no_follow(&out.join(name), OTHER_UID);
        }
        assert_eq!(owner(&out.join("bundle.pem")), OTHER_UID);
    } else {
        missing_prerequisite("giving the planted files to another uid needs root");
    }
    // The link is live: a write that follows it would land in the victim.
    assert_eq!(
        std::fs::read(out.join("svid.pem")).unwrap(),
        std::fs::read(&victim).unwrap()
    );

    let o = workload(
        &paths.socket,
        &["svid", "fetch", "--write", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "svid fetch --write: {}", stderr(&o));

    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"the caller's file: must stay untouched\n",
        "the symlink's target was written through"
    );
    assert_eq!(
        std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let me = my_uid();
    for (name, mode) in [
        ("svid.pem", 0o644),
        ("bundle.pem", 0o644),
        ("svid.key", 0o600),
    ] {
        let meta = std::fs::symlink_metadata(out.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is not a regular file");
        assert_eq!(meta.uid(), me, "{name} is not owned by the caller");
        assert_eq!(meta.mode() & 0o777, mode, "{name} mode");
    }
    assert_eq!(
        std::fs::read(out.join("bundle.pem")).unwrap(),
        clean_bundle,
        "bundle.pem holds the trust bundle"
    );
    let svid_pem = std::fs::read_to_string(out.join("svid.pem")).unwrap();
    let leaf = x509_parser::pem::Pem::iter_from_buffer(svid_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let leaf = leaf.parse_x509().unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(
        san.value.general_names.iter().any(|n| matches!(
            n,
            x509_parser::extensions::GeneralName::URI(u) if *u == spiffe_id
        )),
        "svid.pem holds the workload's SVID"
    );
    let key = std::fs::read_to_string(out.join("svid.key")).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"));
    // No temporary files are left behind.
    let names: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["bundle.pem", "svid.key", "svid.pem"].map(String::from))
    );
}

fn chown_no_follow(path: &Path, uid: u32) {
    nix::unistd::fchownat(
        None,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn owner(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().uid()
}
