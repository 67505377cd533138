//! Decision latency (p50/p99, in process) for 10, 100 and 1,000 generated policies; prints a
//! table. Run: `cargo bench -p sigil-policy --bench decide` (`SIGIL_DECIDE_ONLY=scoped` or `worst`:
//! only that shape's rows).
//!
//! The deployment shape ("scoped"): the policies spread over 10 operator actions; 90 % are one
//! workload's or one service's rules (`principal == Sigil::Workload::"…"` or
//! `resource == Sigil::Resource::"…"`, with a `when` condition), drawn from `n / 20` workloads
//! and `n / 20` resources; 10 % have no entity scope and only a `when` condition (they apply to
//! every caller and are always evaluated). The decided request is one workload calling one
//! resource; "evaluated" counts the policies whose scope can match it (its action, and
//! unscoped or naming its principal or resource), which is what a decision evaluates.
//!
//! The extra row "worst case" is the old benchmark's shape: every policy on the decided action,
//! scoped only by `principal is Sigil::Workload`, so every one of them is evaluated. It measures
//! cedar's cost per evaluated policy, not a deployment.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "benchmark: a broken assumption must stop it loudly"
)]

use std::time::{Duration, Instant};

use sigil_policy::{ContextInput, DecisionRequest, PolicyEngine, Principal, ResourceRef, load_dir};
use sigil_spiffe::SpiffeId;

const ACTIONS: usize = 10;
/// The action of the decided request.
const DECIDED_ACTION: usize = 4;
const WARMUP: usize = 2_000;
const SAMPLES: usize = 20_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Scoped,
    WorstCase,
}

/// A `when` condition over the workload's attributes and the context, different for each `i`.
fn condition(i: usize) -> String {
    match i % 3 {
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
    }
}

/// A generated set of `n` policies of `shape`, with the number of them the decided request's
/// scope can match.
fn policies(n: usize, shape: Shape) -> (String, usize) {
    let mut text = String::new();
    let mut evaluated = 0;
    let principals = (n / 20).max(1);
    let resources = (n / 20).max(1);
    // A fixed pseudo-random sequence (an LCG), so the three scopes are not correlated.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut draw = |below: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % below as u64) as usize
    };
    for i in 0..n {
        let effect = if i % 4 == 3 { "forbid" } else { "permit" };
        let (action, principal, resource, matches) = match shape {
            Shape::WorstCase => (
                DECIDED_ACTION,
                "principal is Sigil::Workload".to_owned(),
                "resource".to_owned(),
                true,
            ),
            Shape::Scoped => {
                let action = draw(ACTIONS);
                let on_decided = action == DECIDED_ACTION;
                match draw(10) {
                    0 => (action, "principal".into(), "resource".into(), on_decided),
                    1..=5 => {
                        let w = draw(principals);
                        let principal = format!(
                            "principal == Sigil::Workload::\"spiffe://acme.org/ns/prod/svc-{w}\""
                        );
                        (action, principal, "resource".into(), on_decided && w == 0)
                    }
                    _ => {
                        let r = draw(resources);
                        let resource = format!("resource == Sigil::Resource::\"db-{r}\"");
                        let principal = "principal is Sigil::Workload".to_owned();
                        (action, principal, resource, on_decided && r == 0)
                    }
                }
            }
        };
        evaluated += usize::from(matches);
        text.push_str(&format!(
            "{effect} ({principal}, action == Sigil::Action::\"app:op{action}\", {resource})\nwhen {{ {} }};\n",
            condition(i)
        ));
    }
    // The rule that allows the decided request: its workload's own permit.
    if shape == Shape::Scoped {
        text.push_str(
            "permit (principal == Sigil::Workload::\"spiffe://acme.org/ns/prod/svc-0\", action == Sigil::Action::\"app:op4\", resource)\nwhen { context has intent && context.intent == \"op-4\" };\n",
        );
        evaluated += 1;
    }
    (text, evaluated)
}

fn policy_dir(text: &str) -> tempfile::TempDir {
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
    std::fs::write(dir.path().join("generated.cedar"), text).unwrap();
    dir
}

/// svc-0 (owner team-7, selector unix:uid:4) calls db-0 with intent op-4 on app:op4.
fn request() -> DecisionRequest {
    DecisionRequest {
        principal: Principal::Workload {
            spiffe_id: SpiffeId::parse("spiffe://acme.org/ns/prod/svc-0").unwrap(),
            selectors: vec![
                "unix:uid:4".into(),
                "unix:sha256:ab".into(),
                "k8s:ns:prod".into(),
            ],
            owner: "team-7".into(),
            labels: vec!["tier:web".into()],
            agent: None,
        },
        action: format!("app:op{DECIDED_ACTION}"),
        resource: ResourceRef {
            id: "db-0".into(),
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

/// `req` with one more selector, `unix:pid:<i>`: the same policies apply, but the principal is
/// another one for the entity cache.
fn distinct_request(req: &DecisionRequest, i: usize) -> DecisionRequest {
    let mut req = req.clone();
    if let Principal::Workload { selectors, .. } = &mut req.principal {
        selectors.push(format!("unix:pid:{i}"));
    }
    req
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
    println!(
        "scoped: 10 actions; 90 % of policies name one workload or one resource, 10 % only a `when`"
    );
    println!("worst case: every policy on the decided action, none naming an entity");
    println!("| policies | shape            | evaluated | p50 (µs) | p99 (µs) | allowed |");
    println!("|---------:|------------------|----------:|---------:|---------:|---------|");
    // `false`: the same request every time (its entity store is built once and then taken from
    // the set's cache, as for a workload renewing its SVIDs); `true`: every decision's principal
    // differs from the last 8,192 (one more selector each), so every store is built anew.
    let rows = [
        (10, Shape::Scoped, false),
        (100, Shape::Scoped, false),
        (1_000, Shape::Scoped, false),
        (1_000, Shape::Scoped, true),
        (1_000, Shape::WorstCase, false),
    ];
    // `SIGIL_DECIDE_ONLY=scoped` (or `worst`) runs one shape's rows, e.g. to profile them.
    let only = std::env::var("SIGIL_DECIDE_ONLY").ok();
    for (n, shape, distinct) in rows {
        let name = match shape {
            Shape::Scoped => "scoped",
            Shape::WorstCase => "worst",
        };
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (text, evaluated) = policies(n, shape);
        let dir = policy_dir(&text);
        let loaded = load_dir(dir.path()).unwrap();
        let engine = PolicyEngine::new(loaded);
        let first = engine.decide(&req, now);
        assert!(first.errors.is_empty(), "{first:?}");
        let requests: Vec<DecisionRequest> = if distinct {
            (0..8_192).map(|i| distinct_request(&req, i)).collect()
        } else {
            vec![req.clone()]
        };
        for i in 0..WARMUP {
            std::hint::black_box(engine.decide(&requests[i % requests.len()], now));
        }
        let mut samples = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES {
            let req = &requests[i % requests.len()];
            let start = Instant::now();
            let d = engine.decide(std::hint::black_box(req), now);
            samples.push(start.elapsed());
            std::hint::black_box(d);
        }
        samples.sort_unstable();
        println!(
            "| {:>8} | {:<16} | {evaluated:>9} | {:>8.1} | {:>8.1} | {:<7} |",
            engine.current().len(),
            match (shape, distinct) {
                (Shape::Scoped, false) => "scoped",
                (Shape::Scoped, true) => "scoped, distinct",
                (Shape::WorstCase, _) => "worst case",
            },
            percentile(&samples, 0.50).as_nanos() as f64 / 1_000.0,
            percentile(&samples, 0.99).as_nanos() as f64 / 1_000.0,
            first.allowed,
        );
    }
}
