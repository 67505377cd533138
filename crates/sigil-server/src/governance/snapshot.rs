//! Reads a [`Snapshot`] for the findings from the store: every entry and agent (in pages, so no
//! single query returns the whole table), the usage summed per entry, the latest reviews, the
//! join tokens and the federation relationships, plus what the context holds (external issuers,
//! whether the policies in force restrict each, the refresher's status).

use sigil_store::{Datastore, EntryFilter, StoreResult};

use super::findings::Snapshot;
use super::{GovernanceContext, IssuerFacts};

/// Entries and agents read per store call.
const PAGE: u32 = 1000;

/// The snapshot of `ctx`'s store at `now` (Unix seconds). Fails with the first store error.
pub async fn load(ctx: &GovernanceContext, now: i64) -> StoreResult<Snapshot> {
    let store: &dyn Datastore = ctx.store.as_ref();
    let mut entries = Vec::new();
    let filter = EntryFilter::default();
    loop {
        let after = entries.last().map(|e: &sigil_store::Entry| e.id.clone());
        let page = store
            .list_entries_page(&filter, after.as_deref(), PAGE)
            .await?;
        let done = page.len() < PAGE as usize;
        entries.extend(page);
        if done {
            break;
        }
    }
    let mut agents = Vec::new();
    loop {
        let after = agents
            .last()
            .map(|a: &sigil_store::AttestedAgent| a.spiffe_id.to_string());
        let page = store.list_agents_page(after.as_deref(), PAGE).await?;
        let done = page.len() < PAGE as usize;
        agents.extend(page);
        if done {
            break;
        }
    }
    Ok(Snapshot {
        now,
        trust_domain: ctx.trust_domain.clone(),
        entries,
        agents,
        usage: store.usage_by_entry().await?,
        reviews: store.list_entry_reviews().await?,
        join_tokens: store.list_join_tokens().await?,
        federations: store.list_federations().await?,
        refresh: ctx
            .federation
            .as_ref()
            .map(|statuses| statuses.snapshot())
            .unwrap_or_default(),
        issuers: ctx
            .issuers
            .iter()
            .map(|facts| IssuerFacts {
                has_condition: match &ctx.policies {
                    Some(policies) => facts.restricted_by(policies, now),
                    None => facts.has_condition,
                },
                ..facts.clone()
            })
            .collect(),
    })
}
