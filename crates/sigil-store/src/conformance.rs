//! The backend-agnostic conformance suite: every [`Datastore`] must pass it unchanged.
//!
//! A backend's test file expands [`datastore_conformance_tests!`](crate::datastore_conformance_tests)
//! with an async expression that yields `(store, guard)` (the guard lives until the case ends, e.g.
//! a temporary directory), and gets one named `#[tokio::test]` per case:
//!
//! ```ignore
//! mod on_disk {
//!     sigil_store::datastore_conformance_tests!(async {
//!         let dir = tempfile::tempdir().unwrap();
//!         let store = sigil_store::SqliteStore::open(&dir.path().join("db")).unwrap();
//!         (store, dir)
//!     });
//! }
//! ```
//!
//! Every case takes a fresh, empty store. Each case is also a public async function here, so a
//! backend can run one by hand.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "a conformance case reports a broken expectation by failing the test"
)]

mod agent_writes;
mod authorities;
mod change_feed;
mod crls;
mod entries;
mod entry_batches;
mod federations;
mod governance;
mod leases;
mod paging;
mod records;
mod revocations;

use sigil_spiffe::{Selector, SpiffeId, TrustDomain};

use crate::{
    AttestedAgent, AuthorityKind, AuthorityRecord, AuthorityState, BundleEndpointProfile,
    CredentialKind, Datastore, IssuedCredential, JoinToken, NewEntry, NewFederationRelationship,
    StoredBundle,
};

pub use agent_writes::{
    activating_a_serial_is_a_compare_and_swap,
    interleaved_renewals_heartbeats_and_ban_lose_nothing,
    last_seen_moves_forward_only_and_appends_no_event,
};
pub use authorities::{
    authorities_are_created_once_and_listed_in_order,
    authority_state_moves_only_from_the_expected_state,
    concurrent_transitions_of_one_authority_one_wins, deleted_authority_is_gone_with_one_event,
};
pub use change_feed::{
    changes_since_paginates_with_limit, concurrent_consumers_of_one_join_token_one_wins,
    concurrent_creates_of_one_entry_one_wins, each_mutation_appends_one_event_in_order,
    failed_mutations_append_no_event, watch_changes_sees_each_new_sequence,
};
pub use crls::{
    a_crl_goes_with_its_authority, concurrent_crl_writes_keep_the_highest_number,
    crls_are_replaced_only_by_higher_numbers, invalid_crls_are_refused_and_nothing_stored,
};
pub use entries::{
    duplicate_entry_is_rejected_and_nothing_stored, entry_crud_round_trips,
    entry_is_stored_normalised, entry_labels_round_trip_and_bad_keys_are_refused,
    invalid_entry_is_rejected_and_nothing_stored, list_entries_applies_every_filter,
    missing_entry_is_not_found, stale_revision_is_rejected_and_entry_unchanged,
    update_bumps_revision_and_replaces_selectors, update_into_existing_identity_is_rejected,
};
pub use entry_batches::{
    concurrent_entry_batches_keep_the_feed_gap_free, entry_batch_lands_whole_with_events_in_order,
    entry_batch_with_one_refused_entry_stores_nothing, oversized_entry_batch_is_refused,
};
pub use federations::{
    concurrent_updates_of_different_columns_lose_nothing, deleting_a_federation_deletes_its_bundle,
    duplicate_federation_is_rejected_and_nothing_changes, federation_crud_round_trips,
    federation_update_breaking_the_profile_rule_is_refused,
    federation_update_changes_only_the_named_columns, federation_writes_append_keyed_events,
    invalid_federation_is_refused_and_nothing_stored,
};
pub use governance::{
    audit_appends_continue_one_chain_across_calls, audit_checkpoints_and_keys_round_trip,
    audit_event, entry_reviews_keep_the_latest_and_go_with_the_entry,
    list_audit_applies_every_filter, workload_usage_merges_sums_and_prunes,
};
pub use leases::{
    claim_is_a_compare_and_swap, concurrent_claims_of_one_lease_one_wins,
    credential_targets_crud_with_revision_cas, due_leases_next_due_and_prune, lease,
    lease_create_get_and_duplicate, lease_pages_are_capped, list_leases_filters_and_pages,
    renewal_stays_within_bounds_and_state,
};
pub use paging::{
    agent_pages_cover_everything_once_in_id_order, entry_page_filters_combine,
    entry_pages_cover_everything_once_in_id_order, entry_prefix_is_literal,
    zero_page_limit_is_invalid,
};
pub use records::{
    agent_lifecycle, attestation_consumes_the_token_and_stores_the_agent_atomically,
    bundles_put_get_list_delete, concurrent_bundle_writes_keep_the_highest_sequence,
    duplicate_join_token_is_rejected, expired_join_token_is_rejected_and_stays_unused,
    invalid_join_token_is_rejected, join_token_is_consumed_once,
    prune_removes_only_tokens_expired_before_cutoff,
    put_bundle_if_newer_writes_only_higher_sequences, unknown_join_token_is_not_found,
};
pub use revocations::{
    duplicate_issued_credential_rejects_the_whole_batch, expired_credential_is_not_revoked,
    invalid_credential_id_rejects_the_whole_batch, issued_credentials_round_trip_without_events,
    over_long_revocation_reason_is_invalid_and_changes_nothing,
    prune_forgets_only_credentials_expired_before_cutoff, revocation_appends_one_keyed_event,
    revocations_are_listed_by_time_kind_and_id, revoking_twice_is_already_exists_with_one_event,
    unknown_credential_is_not_found_and_nothing_is_revoked,
};

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh store made by
/// `$fixture`: an expression of type `impl Future<Output = (S, G)>` where `S: Datastore` and `G`
/// is dropped after the case. The caller's crate needs `tokio` with `macros` and
/// `rt-multi-thread`. Expand it once per module.
///
/// For a backend that needs a server which may be missing (PostgreSQL), write
/// `datastore_conformance_tests!(optional: $fixture)` with a fixture yielding
/// `Option<(S, G)>`: on `None` the case returns without running. The fixture decides whether
/// skipping is allowed (it must not be under CI) and says why it skips.
#[macro_export]
macro_rules! datastore_conformance_tests {
    (optional: $fixture:expr) => {
        $crate::datastore_conformance_tests!(@list optional $fixture);
    };
    ($fixture:expr) => {
        $crate::datastore_conformance_tests!(@list required $fixture);
    };
    (@list $mode:ident $fixture:expr) => {
        $crate::datastore_conformance_tests!(@cases $mode $fixture;
            entry_crud_round_trips,
            entry_is_stored_normalised,
            duplicate_entry_is_rejected_and_nothing_stored,
            invalid_entry_is_rejected_and_nothing_stored,
            entry_labels_round_trip_and_bad_keys_are_refused,
            list_entries_applies_every_filter,
            entry_pages_cover_everything_once_in_id_order,
            entry_page_filters_combine,
            entry_prefix_is_literal,
            zero_page_limit_is_invalid,
            agent_pages_cover_everything_once_in_id_order,
            update_bumps_revision_and_replaces_selectors,
            stale_revision_is_rejected_and_entry_unchanged,
            update_into_existing_identity_is_rejected,
            missing_entry_is_not_found,
            entry_batch_lands_whole_with_events_in_order,
            entry_batch_with_one_refused_entry_stores_nothing,
            oversized_entry_batch_is_refused,
            concurrent_entry_batches_keep_the_feed_gap_free,
            join_token_is_consumed_once,
            attestation_consumes_the_token_and_stores_the_agent_atomically,
            expired_join_token_is_rejected_and_stays_unused,
            unknown_join_token_is_not_found,
            duplicate_join_token_is_rejected,
            invalid_join_token_is_rejected,
            prune_removes_only_tokens_expired_before_cutoff,
            agent_lifecycle,
            activating_a_serial_is_a_compare_and_swap,
            last_seen_moves_forward_only_and_appends_no_event,
            interleaved_renewals_heartbeats_and_ban_lose_nothing,
            authorities_are_created_once_and_listed_in_order,
            authority_state_moves_only_from_the_expected_state,
            concurrent_transitions_of_one_authority_one_wins,
            deleted_authority_is_gone_with_one_event,
            bundles_put_get_list_delete,
            federation_crud_round_trips,
            duplicate_federation_is_rejected_and_nothing_changes,
            federation_update_changes_only_the_named_columns,
            federation_update_breaking_the_profile_rule_is_refused,
            deleting_a_federation_deletes_its_bundle,
            federation_writes_append_keyed_events,
            invalid_federation_is_refused_and_nothing_stored,
            put_bundle_if_newer_writes_only_higher_sequences,
            concurrent_bundle_writes_keep_the_highest_sequence,
            crls_are_replaced_only_by_higher_numbers,
            invalid_crls_are_refused_and_nothing_stored,
            a_crl_goes_with_its_authority,
            concurrent_crl_writes_keep_the_highest_number,
            concurrent_updates_of_different_columns_lose_nothing,
            issued_credentials_round_trip_without_events,
            duplicate_issued_credential_rejects_the_whole_batch,
            invalid_credential_id_rejects_the_whole_batch,
            unknown_credential_is_not_found_and_nothing_is_revoked,
            expired_credential_is_not_revoked,
            revoking_twice_is_already_exists_with_one_event,
            over_long_revocation_reason_is_invalid_and_changes_nothing,
            revocation_appends_one_keyed_event,
            revocations_are_listed_by_time_kind_and_id,
            prune_forgets_only_credentials_expired_before_cutoff,
            each_mutation_appends_one_event_in_order,
            failed_mutations_append_no_event,
            changes_since_paginates_with_limit,
            watch_changes_sees_each_new_sequence,
            concurrent_consumers_of_one_join_token_one_wins,
            concurrent_creates_of_one_entry_one_wins,
            audit_appends_continue_one_chain_across_calls,
            list_audit_applies_every_filter,
            audit_checkpoints_and_keys_round_trip,
            workload_usage_merges_sums_and_prunes,
            entry_reviews_keep_the_latest_and_go_with_the_entry,
            lease_create_get_and_duplicate,
            list_leases_filters_and_pages,
            lease_pages_are_capped,
            renewal_stays_within_bounds_and_state,
            claim_is_a_compare_and_swap,
            concurrent_claims_of_one_lease_one_wins,
            due_leases_next_due_and_prune,
            credential_targets_crud_with_revision_cas,
        );
    };
    (@cases required $fixture:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fixture.await;
                $crate::conformance::$case(store).await;
            }
        )+
    };
    (@cases optional $fixture:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _guard)) = $fixture.await else {
                    return;
                };
                $crate::conformance::$case(store).await;
            }
        )+
    };
}

/// The `now` the cases pass to the store (2023-11-14T22:13:20Z).
pub const NOW: i64 = 1_700_000_000;

/// A valid entry spec owned by `team-test`, with no TTLs or extras.
pub fn new_entry(spiffe_id: &str, parent_id: &str, selectors: &[&str]) -> NewEntry {
    NewEntry::new(
        spiffe_id_of(spiffe_id),
        spiffe_id_of(parent_id),
        selectors.iter().map(|s| selector(s)).collect(),
        "team-test",
    )
}

/// An unused join token `id` expiring at `expires_at`; its hash is derived from `id`.
pub fn join_token(id: &str, expires_at: i64) -> JoinToken {
    JoinToken {
        id: id.to_owned(),
        token_hash: token_hash(id),
        expires_at,
        used_at: None,
        created_at: NOW - 60,
    }
}

/// A 64-hex-digit stand-in for the SHA-256 of token `id`'s secret (distinct per id).
pub fn token_hash(id: &str) -> String {
    let mut digits: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    digits.truncate(64);
    format!("{digits:0>64}")
}

/// A freshly attested, unbanned agent.
pub fn agent(spiffe_id: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: spiffe_id_of(spiffe_id),
        attestation_type: "join_token".to_owned(),
        selectors: vec![selector("join_token:abc")],
        serial: "01".to_owned(),
        new_serial: None,
        expires_at: NOW + 3600,
        banned: false,
        can_reattest: false,
        created_at: NOW,
        last_seen: NOW,
    }
}

/// An authority record of `kind` created at `created_at`.
pub fn authority(id: &str, kind: AuthorityKind, created_at: i64) -> AuthorityRecord {
    AuthorityRecord {
        id: id.to_owned(),
        kind,
        state: AuthorityState::Active,
        cert_der: (kind != AuthorityKind::Jwt).then(|| vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        public_key_der: vec![0x30, 0x00],
        key_id: format!("key-{id}"),
        issuer_id: None,
        not_before: created_at,
        not_after: created_at + 86_400,
        created_at,
        replica: String::new(),
    }
}

/// A bundle for `trust_domain` with `sequence`.
pub fn bundle(trust_domain: &str, sequence: u64) -> StoredBundle {
    StoredBundle {
        trust_domain: trust_domain_of(trust_domain),
        document: format!(r#"{{"keys":[],"spiffe_sequence":{sequence}}}"#).into_bytes(),
        sequence,
        updated_at: NOW,
    }
}

/// A credential of `kind` named `id`, issued at `NOW - 60` to an agent for `spiffe://example.org/web`
/// by authority `int-1`, expiring at `expires_at`.
pub fn issued_credential(kind: CredentialKind, id: &str, expires_at: i64) -> IssuedCredential {
    IssuedCredential {
        kind,
        id: id.to_owned(),
        spiffe_id: spiffe_id_of("spiffe://example.org/web"),
        authority_id: "int-1".to_owned(),
        issued_to: spiffe_id_of("spiffe://example.org/sigil/agent/join_token/a"),
        issued_at: NOW - 60,
        expires_at,
    }
}

/// The owner of the relationships [`spiffe_federation`] and [`web_federation`] make.
pub const FEDERATION_OWNER: &str = "team-federation";

/// An `https_spiffe` relationship with `trust_domain`, its endpoint at
/// `https://<trust_domain>/bundle` presenting `spiffe://<trust_domain>/sigil/server`, owned by
/// [`FEDERATION_OWNER`].
pub fn spiffe_federation(trust_domain: &str) -> NewFederationRelationship {
    NewFederationRelationship {
        trust_domain: trust_domain_of(trust_domain),
        bundle_endpoint_url: format!("https://{trust_domain}/bundle"),
        profile: BundleEndpointProfile::HttpsSpiffe,
        endpoint_spiffe_id: Some(spiffe_id_of(&format!(
            "spiffe://{trust_domain}/sigil/server"
        ))),
        owner: FEDERATION_OWNER.to_owned(),
    }
}

/// An `https_web` relationship with `trust_domain` whose bundle is at `url`, owned by
/// [`FEDERATION_OWNER`].
pub fn web_federation(trust_domain: &str, url: &str) -> NewFederationRelationship {
    NewFederationRelationship {
        trust_domain: trust_domain_of(trust_domain),
        bundle_endpoint_url: url.to_owned(),
        profile: BundleEndpointProfile::HttpsWeb,
        endpoint_spiffe_id: None,
        owner: FEDERATION_OWNER.to_owned(),
    }
}

fn trust_domain_of(trust_domain: &str) -> TrustDomain {
    TrustDomain::parse(trust_domain).expect("fixture trust domain parses")
}

fn spiffe_id_of(id: &str) -> SpiffeId {
    SpiffeId::parse(id).expect("fixture SPIFFE ID parses")
}

fn selector(s: &str) -> Selector {
    Selector::parse(s).expect("fixture selector parses")
}

/// The newest sequence, read through the trait.
async fn latest<S: Datastore>(store: &S) -> u64 {
    store.latest_change().await.expect("latest_change")
}
