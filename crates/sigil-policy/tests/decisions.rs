//! Decisions: the default set, reasons, unknown actions, schema mismatches and request bounds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

use serde_json::json;
use sigil_policy::{
    AgentRef, ContextInput, DecisionRequest, LoadedPolicies, PolicyEngine, PolicyError, Principal,
    ResourceRef, load_dir,
};
use sigil_spiffe::SpiffeId;

const NOW: i64 = 1_704_067_200 + 3_600 + 1_800; // 2024-01-01T01:30:00Z

fn workload(id: &str) -> Principal {
    Principal::Workload {
        spiffe_id: SpiffeId::parse(id).unwrap(),
        selectors: vec!["unix:uid:1000".into()],
        owner: "team-a".into(),
        labels: vec![],
        agent: Some(AgentRef {
            spiffe_id: SpiffeId::parse("spiffe://acme.org/sigil/agent/join_token/n1").unwrap(),
            attestation_type: "join_token".into(),
            node_selectors: vec!["join_token:n1".into()],
        }),
    }
}

fn request(principal: Principal, action: &str) -> DecisionRequest {
    DecisionRequest {
        principal,
        action: action.into(),
        resource: ResourceRef {
            id: "spiffe://acme.org/web".into(),
            kind: "svid".into(),
        },
        context: ContextInput::default(),
    }
}

fn default_engine() -> PolicyEngine {
    PolicyEngine::new(LoadedPolicies::builtin_default().unwrap())
}

fn engine_with(policy: &str) -> (PolicyEngine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.cedar"), policy).unwrap();
    (PolicyEngine::new(load_dir(dir.path()).unwrap()), dir)
}

#[test]
fn default_set_issues_and_exchanges() {
    let engine = default_engine();
    for action in ["IssueX509Svid", "IssueJwtSvid", "Exchange"] {
        let d = engine.decide(&request(workload("spiffe://acme.org/web"), action), NOW);
        assert!(d.allowed, "{action}: {d:?}");
        assert!(d.errors.is_empty());
        assert_eq!(d.policy_hash, "default");
    }
    let d = engine.decide(
        &request(workload("spiffe://acme.org/web"), "IssueX509Svid"),
        NOW,
    );
    assert_eq!(d.policies, ["default:issue"]);
}

#[test]
fn unknown_action_is_denied_with_an_error() {
    let d = default_engine().decide(&request(workload("spiffe://acme.org/web"), "db:drop"), NOW);
    assert!(!d.allowed);
    assert_eq!(d.errors, ["unknown action `db:drop`"]);
}

#[test]
fn principal_the_action_does_not_apply_to_is_denied_with_an_error() {
    // Positive twin: the same external subject may exchange.
    let external = Principal::External {
        issuer: "https://ci.example".into(),
        subject: "repo:acme/app".into(),
        spiffe_id: None,
        attributes: vec![("repository".into(), "acme/app".into())],
    };
    let engine = default_engine();
    assert!(
        engine
            .decide(&request(external.clone(), "Exchange"), NOW)
            .allowed
    );
    let d = engine.decide(&request(external, "IssueX509Svid"), NOW);
    assert!(!d.allowed);
    assert_eq!(d.errors.len(), 1);
    assert!(
        d.errors[0].starts_with("request does not match the schema"),
        "{:?}",
        d.errors
    );
}

#[test]
fn workload_attributes_and_its_agent_reach_the_policies() {
    let (engine, _dir) = engine_with(
        r#"@id("web-on-joined-nodes")
permit (principal is Sigil::Workload, action == Sigil::Action::"IssueX509Svid", resource)
when {
  principal.trust_domain == "acme.org" && principal.path.contains("web") &&
  principal in Sigil::Agent::"spiffe://acme.org/sigil/agent/join_token/n1" &&
  resource.kind == "svid" && context.weekday_utc == 1 && context.hour_utc == 1
};
@id("no-banned-owner")
forbid (principal is Sigil::Workload, action, resource) when { principal.owner == "banned" };"#,
    );
    let d = engine.decide(
        &request(workload("spiffe://acme.org/web"), "IssueX509Svid"),
        NOW,
    );
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policies, ["web-on-joined-nodes"]);
    // An hour later the window condition fails: default deny, no deciding policy.
    let d = engine.decide(
        &request(workload("spiffe://acme.org/web"), "IssueX509Svid"),
        NOW + 3_600,
    );
    assert!(!d.allowed);
    assert!(d.policies.is_empty());
    // A forbid names itself.
    let mut req = request(workload("spiffe://acme.org/web"), "IssueX509Svid");
    if let Principal::Workload { owner, .. } = &mut req.principal {
        *owner = "banned".into();
    }
    let d = engine.decide(&req, NOW);
    assert!(!d.allowed);
    assert_eq!(d.policies, ["no-banned-owner"]);
}

#[test]
fn over_bound_requests_are_denied_with_a_specific_error() {
    let engine = default_engine();
    let ok = request(workload("spiffe://acme.org/web"), "IssueX509Svid");
    assert!(engine.decide(&ok, NOW).allowed);

    let mut long_list = ok.clone();
    long_list.context.scopes = vec!["s".into(); 257];
    let d = engine.decide(&long_list, NOW);
    assert!(!d.allowed);
    assert_eq!(
        d.errors,
        ["`context.scopes` has 257 items, more than the limit of 256"]
    );

    let mut long_string = ok.clone();
    long_string.context.intent = Some("x".repeat(4 * 1024 + 1));
    let d = engine.decide(&long_string, NOW);
    assert_eq!(
        d.errors,
        ["a string in `context.intent` is 4097 bytes, more than the limit of 4096"]
    );

    let mut big = ok.clone();
    big.context.audience = vec!["a".repeat(4000); 20];
    let d = engine.decide(&big, NOW);
    assert!(!d.allowed);
    assert!(d.errors[0].starts_with("context is "), "{:?}", d.errors);
    assert!(d.errors[0].ends_with("bytes serialized, more than the limit of 65536"));

    let mut many_selectors = ok;
    if let Principal::Workload { selectors, .. } = &mut many_selectors.principal {
        *selectors = vec!["unix:uid:1".into(); 300];
    }
    let d = engine.decide(&many_selectors, NOW);
    assert_eq!(
        d.errors,
        ["`principal.selectors` has 300 items, more than the limit of 256"]
    );
}

#[test]
fn json_context_is_read_and_bounded() {
    let ctx = ContextInput::from_json(&json!({
        "audience": ["spiffe://acme.org/db"],
        "intent": "ledger:write",
        "actors": ["spiffe://acme.org/ai"],
        "claims": {"repository": "acme/app", "exp": 1, "nested": {"a": 1}},
    }))
    .unwrap();
    assert_eq!(ctx.intent.as_deref(), Some("ledger:write"));
    assert_eq!(
        ctx.claims,
        [("repository".to_owned(), "acme/app".to_owned())]
    );

    // Depth 8 (the context object plus 7 nested levels) is accepted, 9 refused.
    let nest = |levels: usize| {
        let mut v = json!("x");
        for _ in 0..levels {
            v = json!({ "k": v });
        }
        json!({ "claims": v })
    };
    assert!(ContextInput::from_json(&nest(7)).is_ok());
    let err = ContextInput::from_json(&nest(8)).unwrap_err();
    assert!(
        matches!(err, PolicyError::ContextTooDeep { max: 8 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "context nests deeper than 8 levels");
    // Built by hand: `json!` would serialize (recursively) the value it interpolates.
    let mut deep = serde_json::Value::from(1);
    for _ in 0..100_000 {
        deep = serde_json::Value::Array(vec![deep]);
    }
    let mut outer = serde_json::Map::new();
    outer.insert("scopes".to_owned(), deep);
    let deep = serde_json::Value::Object(outer);
    let err = ContextInput::from_json(&deep).unwrap_err();
    assert!(matches!(err, PolicyError::ContextTooDeep { .. }), "{err:?}");
    // serde_json drops 100,000 levels recursively; leak the value rather than drop it.
    std::mem::forget(deep);

    let err =
        ContextInput::from_json(&json!({ "scopes": vec!["x".repeat(1000); 70] })).unwrap_err();
    assert!(
        matches!(err, PolicyError::ContextTooLarge { .. }),
        "{err:?}"
    );
    let err = ContextInput::from_json(&json!({ "scopes": vec!["x"; 300] })).unwrap_err();
    assert!(matches!(err, PolicyError::ListTooLong { .. }), "{err:?}");
    let err = ContextInput::from_json(&json!({ "now": 5 })).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid context: unknown field `now`"),
        "{err}"
    );
    let err = ContextInput::from_json(&json!(["not", "an", "object"])).unwrap_err();
    assert!(matches!(err, PolicyError::InvalidJson { .. }), "{err:?}");
}

#[test]
fn request_json_round_trips() {
    let req = DecisionRequest {
        principal: Principal::External {
            issuer: "https://ci.example".into(),
            subject: "s".into(),
            spiffe_id: Some(SpiffeId::parse("spiffe://acme.org/ci").unwrap()),
            attributes: vec![("ref".into(), "refs/heads/main".into())],
        },
        action: "Exchange".into(),
        resource: ResourceRef {
            id: "aud".into(),
            kind: "audience".into(),
        },
        context: ContextInput {
            claims: vec![("a".into(), "b".into())],
            ..ContextInput::default()
        },
    };
    let value = serde_json::to_value(&req).unwrap();
    assert_eq!(value["principal"]["type"], "external");
    assert_eq!(
        value["principal"]["attributes"],
        json!({"ref": "refs/heads/main"})
    );
    let back: DecisionRequest = serde_json::from_value(value).unwrap();
    assert_eq!(back, req);
}
