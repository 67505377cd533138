//! Decision latency (p50/p99, in process) for 10, 100 and 1,000 generated policies; prints a
//! table. Run: `cargo bench -p sigil-policy --bench decide`.
//!
//! Two shapes per size: "spread", the policies spread over 10 operator actions (a decision
//! evaluates the action's share, as a real set of many services' rules does), and "one action",
//! every policy on the action decided (the worst case: every policy is evaluated).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "benchmark: a broken assumption must stop it loudly"
)]

use std::time::{Duration, Instant};

use sigil_policy::{ContextInput, DecisionRequest, PolicyEngine, Principal, ResourceRef, load_dir};
use sigil_spiffe::SpiffeId;

const ACTIONS: usize = 10;
const WARMUP: usize = 2_000;
const SAMPLES: usize = 20_000;

fn policy(i: usize, action: usize) -> String {
    let effect = if i % 4 == 3 { "forbid" } else { "permit" };
    let when = match i % 3 {
        0 => format!(
            "principal.owner == \"team-{i}\" && context.hour_utc >= {}",
            i % 24
        ),
        1 => format!(
            "principal.selectors.contains(\"unix:uid:{i}\") && context has intent && context.intent == \"op-{i}\""
        ),
        _ => format!(
            "principal.path.contains(\"svc-{i}\") && context has scopes && context.scopes.contains(\"scope-{i}\") && context.weekday_utc != 0"
        ),
    };
    format!(
        "{effect} (principal is Sigil::Workload, action == Sigil::Action::\"app:op{action}\", resource)\nwhen {{ {when} }};\n"
    )
}

fn policy_dir(n: usize, spread: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let actions: Vec<String> = (0..ACTIONS).map(|a| format!("\"app:op{a}\"")).collect();
    std::fs::write(
        dir.path().join("actions.cedarschema"),
        format!(
            "namespace Sigil {{ action {} appliesTo {{ principal: Workload, resource: Resource, context: Context }}; }}",
            actions.join(", ")
        ),
    )
    .unwrap();
    // The decided request matches policy 4 (a permit on app:op4: selector unix:uid:4, intent op-4).
    let mut text = String::new();
    for i in 0..n {
        let action = if spread { i % ACTIONS } else { 4 };
        text.push_str(&policy(i, action));
    }
    std::fs::write(dir.path().join("generated.cedar"), text).unwrap();
    dir
}

fn request() -> DecisionRequest {
    DecisionRequest {
        principal: Principal::Workload {
            spiffe_id: SpiffeId::parse("spiffe://acme.org/ns/prod/svc-7").unwrap(),
            selectors: vec![
                "unix:uid:4".into(),
                "unix:sha256:ab".into(),
                "k8s:ns:prod".into(),
            ],
            owner: "team-7".into(),
            labels: vec!["tier:web".into()],
            agent: None,
        },
        action: "app:op4".into(),
        resource: ResourceRef {
            id: "postgres://db/orders".into(),
            kind: "database".into(),
        },
        context: ContextInput {
            audience: vec!["spiffe://acme.org/db".into()],
            scopes: vec!["scope-7".into(), "read".into()],
            intent: Some("op-4".into()),
            actors: vec!["spiffe://acme.org/gateway".into()],
            ..ContextInput::default()
        },
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    // 2024-01-01T12:00:00Z
    let now = 1_704_110_400;
    let req = request();
    println!("decision latency, in process ({SAMPLES} decisions each)");
    println!("| policies | shape      | evaluated | p50 (µs) | p99 (µs) | allowed |");
    println!("|---------:|------------|----------:|---------:|---------:|---------|");
    for n in [10, 100, 1_000] {
        for spread in [true, false] {
            let dir = policy_dir(n, spread);
            let loaded = load_dir(dir.path()).unwrap();
            assert_eq!(loaded.len(), n);
            let engine = PolicyEngine::new(loaded);
            let first = engine.decide(&req, now);
            assert!(first.errors.is_empty(), "{first:?}");
            for _ in 0..WARMUP {
                std::hint::black_box(engine.decide(&req, now));
            }
            let mut samples = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                let start = Instant::now();
                let d = engine.decide(std::hint::black_box(&req), now);
                samples.push(start.elapsed());
                std::hint::black_box(d);
            }
            samples.sort_unstable();
            let evaluated = if spread { n.div_ceil(ACTIONS) } else { n };
            println!(
                "| {n:>8} | {:<10} | {evaluated:>9} | {:>8.1} | {:>8.1} | {:<7} |",
                if spread { "spread" } else { "one action" },
                percentile(&samples, 0.50).as_nanos() as f64 / 1_000.0,
                percentile(&samples, 0.99).as_nanos() as f64 / 1_000.0,
                first.allowed,
            );
        }
    }
}
