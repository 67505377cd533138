//! Conformance cases for the column-targeted agent writes: serial compare-and-swap, and
//! renewals, bans and heartbeats racing on one agent without losing each other's columns.

use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{NOW, agent, latest};
use crate::{AttestedAgent, Datastore};

const AGENT: &str = "spiffe://example.org/sigil/agent/join_token/a";
/// Renewals (each a record plus an activation) one racing task performs.
const RENEWALS: i64 = 40;
/// Heartbeats one racing task performs.
const HEARTBEATS: i64 = 120;

/// Activation is a compare-and-swap on `new_serial`: only the pending serial is promoted, a
/// repeat is harmless, and a serial that is neither current nor pending is refused.
pub async fn activating_a_serial_is_a_compare_and_swap<S: Datastore>(store: S) {
    store.create_agent(agent(AGENT)).await.expect("create");
    // Nothing pending: the current serial is current, anything else is not, and nothing moves.
    let before = latest(&store).await;
    assert!(
        store
            .activate_agent_serial(AGENT, "01", NOW)
            .await
            .expect("cas")
    );
    assert!(
        !store
            .activate_agent_serial(AGENT, "02", NOW)
            .await
            .expect("cas")
    );
    assert_eq!(
        latest(&store).await,
        before,
        "a no-op activation appends no event"
    );
    assert_eq!(
        store.get_agent(AGENT).await.expect("get"),
        Some(agent(AGENT))
    );

    store
        .record_agent_renewal(AGENT, "02")
        .await
        .expect("renew");
    // A second renewal before the first is used replaces the pending serial.
    store
        .record_agent_renewal(AGENT, "03")
        .await
        .expect("renew");
    assert!(
        !store
            .activate_agent_serial(AGENT, "02", NOW + 10)
            .await
            .expect("cas"),
        "a superseded renewal cannot be activated"
    );
    assert!(
        store
            .activate_agent_serial(AGENT, "03", NOW + 10)
            .await
            .expect("cas")
    );
    assert!(
        store
            .activate_agent_serial(AGENT, "03", NOW + 20)
            .await
            .expect("cas"),
        "activating the current serial again reports it current"
    );
    assert!(
        !store
            .activate_agent_serial(AGENT, "01", NOW)
            .await
            .expect("cas")
    );
    let stored = store.get_agent(AGENT).await.expect("get").expect("agent");
    assert_eq!(stored.serial, "03");
    assert_eq!(stored.new_serial, None);
    assert_eq!(stored.expires_at, NOW + 10, "the repeat changed nothing");
}

/// `last_seen` only moves forward, and never appends a change event.
pub async fn last_seen_moves_forward_only_and_appends_no_event<S: Datastore>(store: S) {
    store.create_agent(agent(AGENT)).await.expect("create");
    let before = latest(&store).await;
    let mut changes = store.watch_changes();
    changes.mark_unchanged();
    store
        .touch_agent_last_seen(AGENT, NOW + 60)
        .await
        .expect("touch");
    store
        .touch_agent_last_seen(AGENT, NOW + 30)
        .await
        .expect("touch");
    let stored = store.get_agent(AGENT).await.expect("get").expect("agent");
    assert_eq!(stored.last_seen, NOW + 60);
    assert_eq!(latest(&store).await, before);
    assert!(
        !changes.has_changed().expect("watch open"),
        "a heartbeat must not wake change-feed readers"
    );
}

/// Renewals (record, then activate), heartbeats and a ban hammer one agent from concurrent tasks
/// on a multi-threaded runtime, started together. Every intended column survives: the last
/// renewal's serial and expiry, the newest `last_seen`, the ban, and a renewal left pending at
/// the end; and the feed holds exactly one event per identity write and none per heartbeat.
pub async fn interleaved_renewals_heartbeats_and_ban_lose_nothing<S: Datastore>(store: S) {
    let store = Arc::new(store);
    store.create_agent(agent(AGENT)).await.expect("create");
    let before = latest(store.as_ref()).await;
    let start = Arc::new(Barrier::new(4));
    let mut tasks = JoinSet::new();

    let (s, go) = (Arc::clone(&store), Arc::clone(&start));
    tasks.spawn(async move {
        go.wait().await;
        for i in 1..=RENEWALS {
            let serial = serial(i);
            s.record_agent_renewal(AGENT, &serial).await.expect("renew");
            tokio::task::yield_now().await;
            assert!(
                s.activate_agent_serial(AGENT, &serial, NOW + 3600 + i)
                    .await
                    .expect("activate"),
                "renewal {i} was lost before it could be activated"
            );
        }
        // Left pending: a heartbeat must not clear it.
        s.record_agent_renewal(AGENT, "pending")
            .await
            .expect("renew");
    });
    for offset in [0, 1] {
        let (s, go) = (Arc::clone(&store), Arc::clone(&start));
        tasks.spawn(async move {
            go.wait().await;
            for i in 0..HEARTBEATS {
                s.touch_agent_last_seen(AGENT, NOW + 2 * i + offset)
                    .await
                    .expect("touch");
                tokio::task::yield_now().await;
            }
        });
    }
    let (s, go) = (Arc::clone(&store), Arc::clone(&start));
    tasks.spawn(async move {
        go.wait().await;
        // Ban once the renewals are under way, so later writes of every kind follow it.
        while s
            .get_agent(AGENT)
            .await
            .expect("get")
            .is_some_and(|a| a.serial == "01")
        {
            tokio::task::yield_now().await;
        }
        s.set_agent_banned(AGENT, true).await.expect("ban");
    });
    while let Some(joined) = tasks.join_next().await {
        joined.expect("racing task");
    }

    let stored = store.get_agent(AGENT).await.expect("get").expect("agent");
    let expected = AttestedAgent {
        serial: serial(RENEWALS),
        new_serial: Some("pending".to_owned()),
        expires_at: NOW + 3600 + RENEWALS,
        banned: true,
        last_seen: NOW + 2 * (HEARTBEATS - 1) + 1,
        ..agent(AGENT)
    };
    assert_eq!(stored, expected);
    let events = u64::try_from(2 * RENEWALS + 2).expect("small");
    assert_eq!(
        latest(store.as_ref()).await,
        before + events,
        "one event per renewal record, activation and ban; none per heartbeat"
    );
}

fn serial(i: i64) -> String {
    format!("{:04x}", i + 1)
}
