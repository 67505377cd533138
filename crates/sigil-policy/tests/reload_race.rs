//! Reloads racing with decisions: every decision is made by one whole valid set, and an invalid
//! reload leaves the set in force untouched.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sigil_policy::{ContextInput, DecisionRequest, PolicyEngine, Principal, ResourceRef, load_dir};
use sigil_spiffe::SpiffeId;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn reload_racing_with_decisions_never_mixes_sets() {
    // Set A allows web, set B forbids it; each has many policies so a load takes a while.
    let filler: String = (0..200)
        .map(|i| {
            format!(
                "permit (principal is Sigil::Workload, action == Sigil::Action::\"IssueJwtSvid\", resource) when {{ principal.owner == \"team-{i}\" }};\n"
            )
        })
        .collect();
    let a = dir_with(&[
        (
            "a.cedar",
            "@id(\"allow-web\") permit (principal, action == Sigil::Action::\"IssueX509Svid\", resource);",
        ),
        ("filler.cedar", &filler),
    ]);
    let b = dir_with(&[
        (
            "a.cedar",
            "@id(\"deny-web\") forbid (principal, action == Sigil::Action::\"IssueX509Svid\", resource);",
        ),
        ("filler.cedar", &filler),
    ]);
    let bad = dir_with(&[
        (
            "a.cedar",
            "@id(\"allow-web\") permit (principal, action == Sigil::Action::\"IssueX509Svid\", resource);",
        ),
        ("filler.cedar", &filler),
        (
            "z.cedar",
            "permit (principal, action, resource) when { principal.nope };",
        ),
    ]);
    let hash_a = load_dir(a.path()).unwrap().hash().to_owned();
    let hash_b = load_dir(b.path()).unwrap().hash().to_owned();
    assert_ne!(hash_a, hash_b);

    let engine = Arc::new(PolicyEngine::new(load_dir(a.path()).unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let req = DecisionRequest {
        principal: Principal::Workload {
            spiffe_id: SpiffeId::parse("spiffe://acme.org/web").unwrap(),
            selectors: vec![],
            owner: "team-web".into(),
            labels: vec![],
            agent: None,
        },
        action: "IssueX509Svid".into(),
        resource: ResourceRef {
            id: "spiffe://acme.org/web".into(),
            kind: "svid".into(),
        },
        context: ContextInput::default(),
    };

    let deciders: Vec<_> = (0..3)
        .map(|_| {
            let (engine, stop, req) = (engine.clone(), stop.clone(), req.clone());
            let (hash_a, hash_b) = (hash_a.clone(), hash_b.clone());
            std::thread::spawn(move || {
                let (mut seen_a, mut seen_b) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let d = engine.decide(&req, 0);
                    // The decision and its hash come from the same set: A allows, B denies.
                    if d.policy_hash == hash_a {
                        assert!(d.allowed && d.policies == ["allow-web"], "{d:?}");
                        seen_a += 1;
                    } else if d.policy_hash == hash_b {
                        assert!(!d.allowed && d.policies == ["deny-web"], "{d:?}");
                        seen_b += 1;
                    } else {
                        panic!("decision from an unknown set: {d:?}");
                    }
                    assert!(d.errors.is_empty(), "{d:?}");
                }
                (seen_a, seen_b)
            })
        })
        .collect();

    for round in 0..30 {
        let (dir, hash) = if round % 2 == 0 {
            (&b, &hash_b)
        } else {
            (&a, &hash_a)
        };
        assert_eq!(&engine.reload_from(dir.path()).unwrap(), hash);
        let err = engine.reload_from(bad.path()).unwrap_err();
        assert!(err.to_string().contains("z.cedar:1:"), "{err}");
        assert_eq!(
            engine.current().hash(),
            hash,
            "an invalid reload changed the set"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (mut total_a, mut total_b) = (0, 0);
    for t in deciders {
        let (a, b) = t.join().unwrap();
        total_a += a;
        total_b += b;
    }
    assert!(
        total_a > 0 && total_b > 0,
        "decisions saw A {total_a} times, B {total_b} times"
    );
}
