//! Tests of the credential target and lease admin routes, over the harness's in-memory store;
//! the revocation tests drop users in the local PostgreSQL (127.0.0.1:5432, user `postgres`).

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sigil_store::{Lease, LeaseState};

use crate::admin::test_support::{Harness, START, state_and_clock};

/// A target definition whose password is read from `password_file`.
fn spec(name: &str, password_file: &str) -> Value {
    json!({
        "name": name,
        "type": "postgresql",
        "url": "postgres://postgres@127.0.0.1:5432/test",
        "password_file": password_file,
        "owner": "team-data",
        "default_ttl": "1h",
        "roles": [{
            "name": "readonly",
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'"],
        }],
    })
}

/// An empty password file (the local PostgreSQL trusts local connections).
fn password_file() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().unwrap()
}

fn lease(id_byte: u8, target: &str, state: LeaseState) -> Lease {
    Lease {
        id: format!("lease_{}", format!("{id_byte:02x}").repeat(16)),
        target: target.to_owned(),
        role: "readonly".to_owned(),
        spiffe_id: "spiffe://example.org/web".to_owned(),
        entry_id: Some("e1".to_owned()),
        agent_id: None,
        username: format!("v_readonly_{id_byte:02x}_sigiltest"),
        created_at: START,
        expires_at: START + 3600,
        max_expires_at: START + 7200,
        renewed_at: None,
        state,
        claim_until: (state == LeaseState::Revoking).then_some(START + 60),
        revoked_at: (state == LeaseState::Revoked).then_some(START),
        revoke_reason: (state == LeaseState::Revoked).then(|| "expired".to_owned()),
        replica: String::new(),
    }
}

fn path_of(file: &tempfile::NamedTempFile) -> String {
    file.path().to_str().unwrap().to_owned()
}

#[tokio::test]
async fn targets_are_created_listed_updated_and_deleted() {
    let h = Harness::new().await;
    let file = password_file();
    let (status, created) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets",
            Some(spec("orders", &path_of(&file))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["source"], "api");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["owner"], "team-data");

    let (status, list) = h
        .call(Method::GET, "/api/v1/credential-targets", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["targets"].as_array().unwrap().len(), 1);
    assert_eq!(list["targets"][0]["name"], "orders");

    let (status, again) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets",
            Some(spec("orders", &path_of(&file))),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let mut changed = spec("orders", &path_of(&file));
    changed["owner"] = json!("team-orders");
    let (status, updated) = h
        .call(
            Method::PUT,
            "/api/v1/credential-targets/orders",
            Some(json!({"spec": changed, "revision": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["revision"], 2);
    assert_eq!(updated["owner"], "team-orders");

    let (status, stale) = h
        .call(
            Method::PUT,
            "/api/v1/credential-targets/orders",
            Some(json!({"spec": changed, "revision": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{stale}");

    let (status, renamed) = h
        .call(
            Method::PUT,
            "/api/v1/credential-targets/orders",
            Some(json!({"spec": spec("billing", &path_of(&file)), "revision": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        renamed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.name"),
        "{renamed}"
    );

    let (status, shown) = h
        .call(Method::GET, "/api/v1/credential-targets/orders", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, updated);

    let (status, deleted) = h
        .call(Method::DELETE, "/api/v1/credential-targets/orders", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted, updated);
    let (status, _) = h
        .call(Method::GET, "/api/v1/credential-targets/orders", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_target_is_refused_with_the_field_that_is_wrong() {
    let h = Harness::new().await;
    let file = password_file();
    // The positive path first.
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets",
            Some(spec("ok", &path_of(&file))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let cases = [
        (
            json!({"password_file": "/nonexistent/sigil/pw"}),
            "password_file",
        ),
        (json!({"name": "Bad"}), "name"),
        (json!({"type": "mysql"}), "type"),
        (json!({"owner": " "}), "owner"),
        (json!({"default_ttl": "01h"}), "default_ttl"),
        (json!({"roles": []}), "roles"),
        (json!({"url": "postgres://postgres:secret@h/d"}), "url"),
        (json!({"password_file": null}), "null"),
    ];
    for (i, (change, field)) in cases.into_iter().enumerate() {
        let mut body = spec(&format!("t{i}"), &path_of(&file));
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = h
            .call(Method::POST, "/api/v1/credential-targets", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {message}");
    }
    let (status, answer) = h
        .call(Method::GET, "/api/v1/credential-targets/Not-A-Name", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn a_target_with_active_leases_is_not_deleted() {
    let h = Harness::new().await;
    let file = password_file();
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets",
            Some(spec("orders", &path_of(&file))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    h.store
        .create_lease(lease(1, "orders", LeaseState::Active))
        .await
        .unwrap();
    let (status, answer) = h
        .call(Method::DELETE, "/api/v1/credential-targets/orders", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("active leases")
    );
}

#[tokio::test]
async fn rotate_root_needs_a_password_file() {
    let h = Harness::new().await;
    let mut body = spec("envtarget", "unused");
    body.as_object_mut().unwrap().remove("password_file");
    body["password_env"] = json!("PATH");
    let (status, created) = h
        .call(Method::POST, "/api/v1/credential-targets", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created.get("password_file").is_none());
    let (status, answer) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets/envtarget/rotate-root",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets/missing/rotate-root",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn leases_are_listed_by_page_and_filter_with_their_owner() {
    let h = Harness::new().await;
    let file = password_file();
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets",
            Some(spec("orders", &path_of(&file))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for (i, state) in [
        LeaseState::Active,
        LeaseState::Revoked,
        LeaseState::Active,
        LeaseState::Revoking,
    ]
    .into_iter()
    .enumerate()
    {
        let target = if i == 3 { "gone" } else { "orders" };
        h.store
            .create_lease(lease(u8::try_from(i).unwrap() + 1, target, state))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut uri = "/api/v1/leases?page_size=3".to_owned();
    loop {
        let (status, page) = h.call(Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for l in page["leases"].as_array().unwrap() {
            seen.push((l["target"].clone(), l["owner"].clone()));
        }
        match page["next_page_token"].as_str() {
            Some(token) => uri = format!("/api/v1/leases?page_size=3&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0], (json!("orders"), json!("team-data")));
    assert_eq!(seen[3], (json!("gone"), json!("")));

    let (status, active) = h
        .call(
            Method::GET,
            "/api/v1/leases?state=active&target=orders",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(active["leases"].as_array().unwrap().len(), 2);

    for bad in [
        "state=expired",
        "target=Orders",
        "spiffe_id=web",
        "owner=x",
        "state=active&state=revoked",
        "entry_id=",
        "page_size=0",
    ] {
        let (status, answer) = h
            .call(Method::GET, &format!("/api/v1/leases?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
}

#[tokio::test]
async fn a_full_page_at_the_store_cap_still_says_more_follow() {
    let h = Harness::new().await;
    for i in 0..=1000u32 {
        let mut l = lease(0, "orders", LeaseState::Active);
        l.id = format!("lease_{i:032x}");
        h.store.create_lease(l).await.unwrap();
    }
    let (status, page) = h
        .call(Method::GET, "/api/v1/leases?page_size=1000", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["leases"].as_array().unwrap().len(), 1000);
    let token = page["next_page_token"].as_str().unwrap();
    let (_, rest) = h
        .call(
            Method::GET,
            &format!("/api/v1/leases?page_size=1000&page_token={token}"),
            None,
        )
        .await;
    assert_eq!(rest["leases"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_page_token").is_none());
}

#[tokio::test]
async fn one_lease_is_shown_and_malformed_ids_are_refused() {
    let h = Harness::new().await;
    let stored = lease(7, "orders", LeaseState::Revoked);
    h.store.create_lease(stored.clone()).await.unwrap();
    let (status, shown) = h
        .call(Method::GET, &format!("/api/v1/leases/{}", stored.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["state"], "revoked");
    assert_eq!(shown["owner"], "");
    let unknown = format!("/api/v1/leases/lease_{}", "ab".repeat(16));
    assert_eq!(
        h.call(Method::GET, &unknown, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = h.call(Method::GET, "/api/v1/leases/lease_XYZ", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A revoked lease is not renewed.
    let (status, answer) = h
        .call(
            Method::POST,
            &format!("/api/v1/leases/{}/renew", stored.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // A body the renewal does not take.
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/api/v1/leases/{}/renew", stored.id),
            Some(json!({"increment": "1 h"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn leases_are_revoked_in_the_target_database() {
    let h = Harness::new().await;
    let file = password_file();
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets",
            Some(spec("orders", &path_of(&file))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let one = lease(0x21, "orders", LeaseState::Active);
    let two = lease(0x22, "orders", LeaseState::Active);
    h.store.create_lease(one.clone()).await.unwrap();
    h.store.create_lease(two.clone()).await.unwrap();

    let (status, revoked) = h
        .call(
            Method::POST,
            &format!("/api/v1/leases/{}/revoke", one.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revoke_reason"], "revoked by admin");
    assert_eq!(revoked["owner"], "team-data");

    let (status, answer) = h
        .call(Method::POST, "/api/v1/leases/revoke", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = h
        .call(
            Method::POST,
            "/api/v1/leases/revoke",
            Some(json!({"target": "orders"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"revoked": [two.id], "failed": []}));
    let after = h.store.get_lease(&two.id).await.unwrap().unwrap();
    assert_eq!(after.state, LeaseState::Revoked);
}

#[tokio::test]
async fn routes_answer_503_without_a_credentials_service() {
    let (mut state, clock) = state_and_clock().await;
    state.credentials = None;
    let h = Harness::with_state(state, clock);
    let (status, answer) = h.call(Method::GET, "/api/v1/leases", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "unavailable");
}

/// Waits (bounded) for the background revocation of `id` to finish.
async fn wait_revoked(h: &Harness, id: &str) -> Lease {
    for _ in 0..200 {
        let lease = h.store.get_lease(id).await.unwrap().unwrap();
        if lease.state == LeaseState::Revoked {
            return lease;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("lease {id} was not revoked");
}

#[tokio::test]
async fn banning_an_agent_or_deleting_an_entry_revokes_their_workloads_leases() {
    use sigil_spiffe::{Selector, SpiffeId};
    use sigil_store::AttestedAgent;

    let h = Harness::new().await;
    let file = password_file();
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/credential-targets",
            Some(spec("orders", &path_of(&file))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let agent_id = "spiffe://example.org/sigil/agent/join_token/leaseholder";
    h.store
        .create_agent(AttestedAgent {
            spiffe_id: SpiffeId::parse(agent_id).unwrap(),
            attestation_type: "join_token".into(),
            selectors: vec![Selector::parse("join_token:id:leaseholder").unwrap()],
            serial: "0a".into(),
            new_serial: None,
            expires_at: START + 3600,
            banned: false,
            can_reattest: false,
            created_at: START,
            last_seen: START,
        })
        .await
        .unwrap();
    let (status, entry) = h
        .call(
            Method::POST,
            "/api/v1/entries",
            Some(crate::admin::test_support::entry_body("holder")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let entry_id = entry["id"].as_str().unwrap().to_owned();

    let through_agent = Lease {
        agent_id: Some(agent_id.to_owned()),
        entry_id: None,
        ..lease(0x31, "orders", LeaseState::Active)
    };
    let of_entry = Lease {
        entry_id: Some(entry_id.clone()),
        ..lease(0x32, "orders", LeaseState::Active)
    };
    let bystander = Lease {
        entry_id: Some("another-entry".to_owned()),
        ..lease(0x33, "orders", LeaseState::Active)
    };
    for l in [&through_agent, &of_entry, &bystander] {
        h.store.create_lease(l.clone()).await.unwrap();
    }

    let (status, banned) = h
        .call(Method::POST, &sigil_api::paths::agent_ban(agent_id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{banned}");
    let revoked = wait_revoked(&h, &through_agent.id).await;
    assert_eq!(
        revoked.revoke_reason.as_deref(),
        Some(format!("agent {agent_id} banned").as_str())
    );

    let (status, _) = h
        .call(Method::DELETE, &sigil_api::paths::entry(&entry_id), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let revoked = wait_revoked(&h, &of_entry.id).await;
    assert_eq!(
        revoked.revoke_reason.as_deref(),
        Some(format!("entry {entry_id} deleted").as_str())
    );
    // A lease of neither stays.
    let untouched = h.store.get_lease(&bystander.id).await.unwrap().unwrap();
    assert_eq!(untouched.state, LeaseState::Active);
}
