//! The audit log: every admin change, attestation, issuance (one record per RPC batch),
//! exchange, policy decision (as configured), revocation, policy reload and federation refresh
//! is appended to the datastore's hash chain by one writer task, with checkpoints signed by this
//! replica's audit key, and copied to the configured external sinks (which never block serving).

pub mod sinks;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sigil_audit::record::{MAX_DETAILS_BYTES, MAX_FIELD_BYTES};
use sigil_audit::{
    AuditEvent, AuditKey, Break, ChainVerifier, Checkpoint, Outcome, Summary, TrustedKeys,
};
use sigil_keys::{KeyManager, PrivateKey};
use sigil_spiffe::Clock;
use sigil_store::{AuditFilter, Datastore};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;

/// Which policy decisions are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecisionAudit {
    /// None.
    None,
    /// Denials only (the default: allows are the common case and are in the issuance records).
    #[default]
    Deny,
    /// Every decision.
    All,
}

/// `[audit]` of the server configuration.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// On by default; off only when the operator says so.
    pub enabled: bool,
    pub policy_decisions: DecisionAudit,
    /// How often the writer signs a checkpoint of the chain's head (when records were added).
    pub checkpoint_interval: Duration,
    /// Where a copy of every record goes besides the datastore.
    pub sinks: Vec<sinks::SinkConfig>,
    /// Records each sink may hold while it is failing; beyond that the oldest are dropped
    /// (and counted): a sink never blocks serving.
    pub spool_records: usize,
    /// Where this replica keeps its newest checkpoint outside the datastore, so a chain cut
    /// below it is detected; `None`: in memory only.
    pub head_file: Option<PathBuf>,
}

/// Default [`AuditConfig::checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Default [`AuditConfig::spool_records`].
pub const DEFAULT_SPOOL_RECORDS: usize = 10_000;

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            policy_decisions: DecisionAudit::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            sinks: Vec::new(),
            spool_records: DEFAULT_SPOOL_RECORDS,
            head_file: None,
        }
    }
}

/// The key id of this replica's audit signing key in the key manager.
pub const AUDIT_KEY_ID: &str = "audit";
/// Events that may wait for the writer before detached events are dropped (and counted).
const QUEUE: usize = 16 * 1024;
/// Most events in one append.
const MAX_GROUP: usize = 512;
/// Longest pause between two attempts of a failing append.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Attempts of one append before its events are given up.
const APPEND_ATTEMPTS: u32 = 5;

/// Why an audited change could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditFailure {
    #[error("the audit log cannot be written: {0}")]
    Store(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// What the audit log is doing: for `/readyz` and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditStatus {
    pub enabled: bool,
    /// The last append failed (the datastore is unreachable, say).
    pub failing: bool,
    /// Events dropped since start (detached events the writer could not take or store).
    pub dropped: u64,
    /// The newest checkpoint this replica signed.
    pub last_checkpoint: Option<Checkpoint>,
    /// External sinks, with their spools.
    pub sinks: Vec<sinks::SinkHealth>,
    /// Problems an operator should look at (a failing sink, a chain shorter than this
    /// replica's last checkpoint).
    pub warnings: Vec<String>,
}

/// An event on its way to the writer: those of audited changes wait for their commit.
enum Pending {
    Wait(AuditEvent, oneshot::Sender<Result<(), AuditFailure>>),
    Detached(AuditEvent),
    /// Merged by the writer with the others of the same actor, action, target and outcome
    /// queued with it into one record (see [`AuditLog::record_aggregated`]).
    Aggregate(AuditEvent, serde_json::Map<String, serde_json::Value>),
}

/// The handle everything audits through; cheap to clone. A disabled log accepts and drops
/// every event.
#[derive(Clone)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: mpsc::Sender<Pending>,
    clock: Arc<dyn Clock>,
    replica: String,
    decisions: DecisionAudit,
    key: Arc<PrivateKey>,
    store: Arc<dyn Datastore>,
    sinks: sinks::Sinks,
    state: Mutex<WriterState>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct WriterState {
    failing: bool,
    dropped: u64,
    last_checkpoint: Option<Checkpoint>,
    /// The checkpoint read from the head file at start: the chain must reach it.
    recorded_head: Option<Checkpoint>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

/// Everything [`AuditLog::start`] needs.
pub struct AuditSetup {
    pub config: AuditConfig,
    pub store: Arc<dyn Datastore>,
    pub keys: Arc<dyn KeyManager>,
    pub clock: Arc<dyn Clock>,
    pub replica: String,
    pub metrics: Arc<Metrics>,
}

/// The writer and sink tasks a started log needs spawned; each runs until shutdown.
pub type AuditTasks = Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

impl AuditLog {
    /// A log that records nothing (auditing switched off, and tests that do not look).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts the log: loads or creates this replica's audit key, registers its public half in
    /// the store, reads the head file, and returns the handle with the tasks to spawn (the
    /// writer and the sinks). Fails when the key cannot be loaded or created or the store
    /// refuses the key.
    pub async fn start(
        setup: AuditSetup,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, AuditTasks), crate::ServerError> {
        let AuditSetup {
            config,
            store,
            keys,
            clock,
            replica,
            metrics,
        } = setup;
        if !config.enabled {
            return Ok((Self::disabled(), Vec::new()));
        }
        let key = match keys.load(AUDIT_KEY_ID)? {
            Some(key) => key,
            None => keys.generate(AUDIT_KEY_ID)?,
        };
        store
            .register_audit_key(AuditKey::for_key(
                &key,
                &replica,
                unix_millis(clock.as_ref()),
            ))
            .await?;
        let recorded_head = config.head_file.as_deref().and_then(read_head_file);
        let (sinks, sink_tasks) = sinks::Sinks::start(
            config.sinks.clone(),
            config.spool_records,
            metrics.clone(),
            shutdown.clone(),
        );
        let (queue, rx) = mpsc::channel(QUEUE);
        let inner = Arc::new(Inner {
            queue,
            clock,
            replica,
            decisions: config.policy_decisions,
            key,
            store,
            sinks,
            state: Mutex::new(WriterState {
                recorded_head: recorded_head.clone(),
                last_checkpoint: recorded_head,
                ..WriterState::default()
            }),
            metrics,
        });
        let log = Self {
            inner: Some(inner.clone()),
        };
        log.check_recorded_head().await;
        let mut tasks: AuditTasks = vec![Box::pin(write(
            inner,
            rx,
            config.checkpoint_interval,
            config.head_file,
            shutdown,
        ))];
        tasks.extend(sink_tasks.into_iter().map(
            |t| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> { Box::pin(t) },
        ));
        Ok((log, tasks))
    }

    /// Whether events are recorded at all.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Which policy decisions are to be recorded.
    pub fn decisions(&self) -> DecisionAudit {
        self.inner
            .as_ref()
            .map_or(DecisionAudit::None, |inner| inner.decisions)
    }

    /// An event stamped with the current time and this replica.
    pub fn event(&self, actor: &str, action: &str, target: &str, outcome: Outcome) -> EventDraft {
        EventDraft {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome,
            details: serde_json::Map::new(),
        }
    }

    /// Records `draft` and returns once it is committed to the chain: for changes that must
    /// not be acknowledged unrecorded (admin writes).
    pub async fn record(&self, draft: EventDraft) -> Result<(), AuditFailure> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        inner
            .queue
            .send(Pending::Wait(inner.stamp(draft), reply))
            .await
            .map_err(|_| AuditFailure::Stopped)?;
        answer.await.map_err(|_| AuditFailure::Stopped)?
    }

    /// Records `draft` without waiting (issuance, decisions, refreshes): never blocks the
    /// caller; when the writer is too far behind, the event is dropped and counted.
    pub fn record_detached(&self, draft: EventDraft) {
        let Some(inner) = &self.inner else {
            return;
        };
        if inner
            .queue
            .try_send(Pending::Detached(inner.stamp(draft)))
            .is_err()
        {
            inner.dropped(1);
        }
    }

    /// Records `draft` like [`AuditLog::record_detached`], merged with the other aggregated
    /// events of the same actor, action, target and outcome that are queued with it when the
    /// writer takes them: one record whose numeric details are summed, whose list details are
    /// concatenated (up to [`MAX_MERGED_ITEMS`] items) and whose `events` detail counts them.
    /// For issuance: under load one record stands for the calls of one agent that arrived
    /// while the previous append ran, instead of one record per call.
    pub fn record_aggregated(&self, draft: EventDraft) {
        let Some(inner) = &self.inner else {
            return;
        };
        let details = draft.details.clone();
        let event = inner.stamp(EventDraft {
            details: serde_json::Map::new(),
            ..draft
        });
        if inner
            .queue
            .try_send(Pending::Aggregate(event, details))
            .is_err()
        {
            inner.dropped(1);
        }
    }

    /// The log's state, for `/readyz` and `GET /api/v1/audit/status`.
    pub fn status(&self) -> AuditStatus {
        let Some(inner) = &self.inner else {
            return AuditStatus {
                enabled: false,
                failing: false,
                dropped: 0,
                last_checkpoint: None,
                sinks: Vec::new(),
                warnings: Vec::new(),
            };
        };
        let sinks = inner.sinks.health();
        let state = inner.lock();
        let mut warnings = state.warnings.clone();
        if state.failing {
            warnings.push("audit records cannot be written to the datastore".to_owned());
        }
        for sink in sinks.iter().filter(|s| !s.healthy) {
            warnings.push(format!(
                "audit sink {} is failing ({} records spooled, {} dropped): {}",
                sink.name,
                sink.spooled,
                sink.dropped,
                sink.last_error.as_deref().unwrap_or("unknown error")
            ));
        }
        AuditStatus {
            enabled: true,
            failing: state.failing,
            dropped: state.dropped,
            last_checkpoint: state.last_checkpoint.clone(),
            sinks,
            warnings,
        }
    }

    /// The keys a verifier of this store should trust: every registered key, and this
    /// replica's own (even if its registration was removed from the store).
    pub async fn trusted_keys(&self) -> Result<(Vec<AuditKey>, TrustedKeys), AuditFailure> {
        let Some(inner) = &self.inner else {
            return Ok((Vec::new(), TrustedKeys::default()));
        };
        let mut keys = inner
            .store
            .list_audit_keys()
            .await
            .map_err(|e| AuditFailure::Store(e.to_string()))?;
        let own = AuditKey::for_key(&inner.key, &inner.replica, 0);
        if !keys.iter().any(|k| k.key_id == own.key_id) {
            keys.push(own);
        }
        let trusted =
            TrustedKeys::from_keys(&keys).map_err(|e| AuditFailure::Store(e.to_string()))?;
        Ok((keys, trusted))
    }

    /// Verifies the chain in the store from its first record: checkpoints in the store and
    /// this replica's newest one (kept outside the store, so a chain cut together with its
    /// checkpoints is still caught). `Ok(Err(break))` names where the chain breaks.
    pub async fn verify(&self) -> Result<Result<Summary, Break>, AuditFailure> {
        let Some(inner) = &self.inner else {
            return Err(AuditFailure::Store("auditing is switched off".to_owned()));
        };
        let (_, keys) = self.trusted_keys().await?;
        let mut checkpoints = inner
            .store
            .list_audit_checkpoints()
            .await
            .map_err(|e| AuditFailure::Store(e.to_string()))?;
        if let Some(own) = inner.lock().last_checkpoint.clone()
            && !checkpoints.contains(&own)
        {
            checkpoints.push(own);
        }
        let mut verifier = match ChainVerifier::new(checkpoints, &keys) {
            Ok(v) => v,
            Err(b) => return Ok(Err(b)),
        };
        let mut after = 0;
        loop {
            let page = inner
                .store
                .list_audit(&AuditFilter::default(), after, VERIFY_PAGE)
                .await
                .map_err(|e| AuditFailure::Store(e.to_string()))?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                if let Err(b) = verifier.push(record) {
                    return Ok(Err(b));
                }
            }
        }
        Ok(verifier.finish())
    }

    /// A checkpoint of the chain's record `seq` with `hash`, signed now by this replica (the
    /// closing line of an export).
    pub fn sign_checkpoint(&self, seq: u64, hash: &str) -> Result<Checkpoint, AuditFailure> {
        let Some(inner) = &self.inner else {
            return Err(AuditFailure::Store("auditing is switched off".to_owned()));
        };
        Checkpoint::sign(
            &inner.key,
            &inner.replica,
            seq,
            hash,
            unix_millis(inner.clock.as_ref()),
        )
        .map_err(|e| AuditFailure::Store(e.to_string()))
    }

    /// Warns (log and status) when the store's chain does not reach the checkpoint this
    /// replica wrote to its head file: records were cut from the store.
    async fn check_recorded_head(&self) {
        let Some(inner) = &self.inner else { return };
        let Some(recorded) = inner.lock().recorded_head.clone() else {
            return;
        };
        match inner.store.audit_head().await {
            Ok(head) => {
                let seq = head.map_or(0, |(seq, _)| seq);
                if seq < recorded.seq {
                    let warning = format!(
                        "the audit chain ends at seq {seq} but this replica signed a checkpoint at seq {}: records were removed from the datastore",
                        recorded.seq
                    );
                    tracing::error!("{warning}");
                    inner.lock().warnings.push(warning);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the audit chain's head"),
        }
    }
}

/// Records read per page when verifying.
const VERIFY_PAGE: u32 = 1000;

/// An event being described: add details, then hand it to [`AuditLog::record`] or
/// [`AuditLog::record_detached`].
#[derive(Debug, Clone)]
pub struct EventDraft {
    actor: String,
    action: String,
    target: String,
    outcome: Outcome,
    details: serde_json::Map<String, serde_json::Value>,
}

impl EventDraft {
    /// Adds `key: value` to the details.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        // Plain fields set whole; a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dropped(&self, n: u64) {
        self.lock().dropped += n;
        self.metrics.audit_dropped.inc_by(n);
    }

    /// The event of `draft`, cut to the record's bounds (a field too long is shortened, and
    /// details too long are replaced by a note), so a valid draft always makes a valid record.
    fn stamp(&self, draft: EventDraft) -> AuditEvent {
        let details = bounded_details(draft.details);
        AuditEvent {
            time: unix_millis(self.clock.as_ref()),
            replica: self.replica.clone(),
            actor: bounded(draft.actor),
            action: bounded(draft.action),
            target: bounded(draft.target),
            outcome: draft.outcome,
            details,
        }
    }
}

/// `text` cut (at a character boundary) to [`MAX_FIELD_BYTES`].
fn bounded(mut text: String) -> String {
    if text.len() > MAX_FIELD_BYTES {
        let mut end = MAX_FIELD_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Milliseconds since the Unix epoch on `clock`.
pub fn unix_millis(clock: &dyn Clock) -> i64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The writer: appends whatever has queued (up to [`MAX_GROUP`]) as one append, answers the
/// waiting callers, hands the records to the sinks, and signs a checkpoint of the newest record
/// every `interval` when it appended something since the last one (and at shutdown).
async fn write(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Pending>,
    interval: Duration,
    head_file: Option<PathBuf>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_GROUP);
    let mut unsigned: Option<(u64, String)> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_GROUP) => {
                if n == 0 {
                    break;
                }
                linger(&mut rx, &mut batch).await;
                if let Some(head) = append(&inner, &mut batch).await {
                    unsigned = Some(head);
                }
            }
            _ = tick.tick() => {
                if let Some((seq, hash)) = unsigned.take() {
                    checkpoint(&inner, seq, &hash, head_file.as_deref()).await;
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Take what is still queued, then close the chain's last stretch with a checkpoint.
    rx.close();
    while rx.recv_many(&mut batch, MAX_GROUP).await > 0 {
        if let Some(head) = append(&inner, &mut batch).await {
            unsigned = Some(head);
        }
    }
    if let Some((seq, hash)) = unsigned {
        checkpoint(&inner, seq, &hash, head_file.as_deref()).await;
    }
}

/// Longest a batch of detached events waits for more before it is appended. Each append is one
/// transaction on the datastore, which issuance's own inventory writes queue behind (one writer
/// connection on SQLite); fewer, larger appends (and more issuance events merged) leave it
/// free. A batch holding an event someone waits for (an admin change) is appended at once.
const DETACHED_LINGER: Duration = Duration::from_millis(50);

/// Lets a batch of detached events gather more for up to [`DETACHED_LINGER`], until it is full
/// or an event someone waits for arrives.
async fn linger(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    let waited_on = |batch: &[Pending]| batch.iter().any(|p| matches!(p, Pending::Wait(..)));
    if waited_on(batch) {
        return;
    }
    let deadline = tokio::time::Instant::now() + DETACHED_LINGER;
    while batch.len() < MAX_GROUP {
        let before = batch.len();
        tokio::select! {
            n = rx.recv_many(batch, MAX_GROUP - before) => {
                if n == 0 || batch.get(before..).is_some_and(waited_on) {
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Appends the events of `batch` (emptying it); returns the newest record's sequence and hash.
/// A failed append is retried with back-off, [`APPEND_ATTEMPTS`] times in all (the callers
/// waiting for their record wait with it); then the waiting callers are answered with the
/// failure and the detached events are dropped and counted.
async fn append(inner: &Inner, batch: &mut Vec<Pending>) -> Option<(u64, String)> {
    let mut events = Vec::with_capacity(batch.len());
    let mut waiting = Vec::new();
    let mut merged = Merged::default();
    for pending in batch.drain(..) {
        match pending {
            Pending::Wait(event, reply) => {
                events.push(event);
                waiting.push(reply);
            }
            Pending::Detached(event) => events.push(event),
            Pending::Aggregate(event, details) => merged.add(&mut events, event, details),
        }
    }
    merged.finish(&mut events);
    let mut backoff = Duration::from_millis(50);
    let mut last_error = String::new();
    for attempt in 1..=APPEND_ATTEMPTS {
        match inner.store.append_audit(events.clone()).await {
            Ok(records) => {
                inner.lock().failing = false;
                inner.metrics.audit_records.inc_by(records.len() as u64);
                for reply in waiting {
                    let _ = reply.send(Ok(()));
                }
                inner.sinks.push(&records);
                return records.last().map(|r| (r.seq, r.hash.clone()));
            }
            Err(e) => {
                inner.lock().failing = true;
                inner.metrics.audit_append_failures.inc();
                tracing::warn!(error = %e, attempt, events = events.len(), "cannot append to the audit log");
                last_error = e.to_string();
                if attempt < APPEND_ATTEMPTS {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    let failure = AuditFailure::Store(last_error);
    let detached = events.len() - waiting.len();
    for reply in waiting {
        let _ = reply.send(Err(failure.clone()));
    }
    inner.dropped(detached as u64);
    None
}

/// Most items a list detail keeps when aggregated events are merged.
pub const MAX_MERGED_ITEMS: usize = 32;

/// Actor, action, target and outcome.
type GroupKey = (String, String, String, &'static str);
/// Index in the batch's events, merged details, events merged.
type Group = (usize, serde_json::Map<String, serde_json::Value>, u64);

/// Aggregated events of one writer batch, merged by actor, action, target and outcome: each
/// group's record takes the place (and time) of its first event.
#[derive(Default)]
struct Merged {
    groups: std::collections::HashMap<GroupKey, Group>,
}

impl Merged {
    fn add(
        &mut self,
        events: &mut Vec<AuditEvent>,
        event: AuditEvent,
        details: serde_json::Map<String, serde_json::Value>,
    ) {
        let key = (
            event.actor.clone(),
            event.action.clone(),
            event.target.clone(),
            event.outcome.as_str(),
        );
        match self.groups.get_mut(&key) {
            Some((_, into, count)) => {
                *count += 1;
                merge_details(into, details);
            }
            None => {
                self.groups.insert(key, (events.len(), details, 1));
                events.push(event);
            }
        }
    }

    /// Writes each group's merged details into its event.
    fn finish(self, events: &mut [AuditEvent]) {
        for (_, (index, mut details, count)) in self.groups {
            if count > 1 {
                details.insert("events".to_owned(), count.into());
            }
            if let Some(event) = events.get_mut(index) {
                event.details = bounded_details(details);
            }
        }
    }
}

/// Sums numbers and concatenates lists (up to [`MAX_MERGED_ITEMS`]) of `from` into `into`;
/// any other value keeps the first event's.
fn merge_details(
    into: &mut serde_json::Map<String, serde_json::Value>,
    from: serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::Value;
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (None, value) => {
                into.insert(key, value);
            }
            (Some(Value::Number(a)), Value::Number(b)) => {
                if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                    *a = x.saturating_add(y).into();
                }
            }
            (Some(Value::Array(a)), Value::Array(b)) => {
                let room = MAX_MERGED_ITEMS.saturating_sub(a.len());
                a.extend(b.into_iter().take(room));
            }
            _ => {}
        }
    }
}

/// `details` as a record's details text, replaced by a note when too long.
fn bounded_details(details: serde_json::Map<String, serde_json::Value>) -> String {
    if details.is_empty() {
        return String::new();
    }
    let text = serde_json::Value::Object(details).to_string();
    if text.len() > MAX_DETAILS_BYTES {
        serde_json::json!({"truncated": true, "bytes": text.len()}).to_string()
    } else {
        text
    }
}

/// Signs and stores a checkpoint of record `seq` and writes it to the head file.
async fn checkpoint(inner: &Inner, seq: u64, hash: &str, head_file: Option<&std::path::Path>) {
    let checkpoint = match Checkpoint::sign(
        &inner.key,
        &inner.replica,
        seq,
        hash,
        unix_millis(inner.clock.as_ref()),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign an audit checkpoint");
            return;
        }
    };
    if let Err(e) = inner.store.put_audit_checkpoint(checkpoint.clone()).await {
        tracing::warn!(error = %e, seq, "cannot store an audit checkpoint");
        return;
    }
    inner.metrics.audit_checkpoints.inc();
    if let Some(path) = head_file {
        match serde_json::to_vec(&checkpoint) {
            Ok(bytes) => {
                if let Err(e) = sigil_keys::files::write_private_file(path, &bytes) {
                    tracing::warn!(error = %e, path = %path.display(), "cannot write the audit head file");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode an audit checkpoint"),
        }
    }
    inner.lock().last_checkpoint = Some(checkpoint);
}

/// The checkpoint in the head file at `path`; `None` when there is none or it does not parse
/// (logged).
fn read_head_file(path: &std::path::Path) -> Option<Checkpoint> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot read the audit head file");
            return None;
        }
    };
    if bytes.len() > 16 * 1024 {
        tracing::warn!(path = %path.display(), "the audit head file is too large; ignored");
        return None;
    }
    match serde_json::from_slice(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "the audit head file does not parse; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(actor: &str, outcome: Outcome, time: i64) -> AuditEvent {
        AuditEvent {
            time,
            replica: String::new(),
            actor: actor.to_owned(),
            action: "x509_svid.issue".to_owned(),
            target: actor.to_owned(),
            outcome,
            details: String::new(),
        }
    }

    fn details(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match value {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn aggregated_events_merge_by_actor_action_target_and_outcome_in_place() {
        let mut events = vec![event("waited", Outcome::Success, 1)];
        let mut merged = Merged::default();
        for (actor, outcome, time, ids) in [
            ("a", Outcome::Success, 2, vec!["x"]),
            ("b", Outcome::Success, 3, vec!["y"]),
            ("a", Outcome::Success, 4, vec!["z"]),
            ("a", Outcome::Denied, 5, vec![]),
        ] {
            merged.add(
                &mut events,
                event(actor, outcome, time),
                details(json!({"issued": ids.len(), "spiffe_ids": ids, "kind": actor})),
            );
        }
        merged.finish(&mut events);
        let summary: Vec<(&str, &str, i64)> = events
            .iter()
            .map(|e| (e.actor.as_str(), e.outcome.as_str(), e.time))
            .collect();
        assert_eq!(
            summary,
            [
                ("waited", "success", 1),
                ("a", "success", 2),
                ("b", "success", 3),
                ("a", "denied", 5)
            ]
        );
        let a: serde_json::Value = serde_json::from_str(&events[1].details).unwrap();
        assert_eq!(
            a,
            json!({"issued": 2, "spiffe_ids": ["x", "z"], "kind": "a", "events": 2})
        );
        // A group of one is recorded as it came, without a count.
        let b: serde_json::Value = serde_json::from_str(&events[2].details).unwrap();
        assert_eq!(b, json!({"issued": 1, "spiffe_ids": ["y"], "kind": "b"}));
    }

    #[test]
    fn merged_lists_stop_at_their_bound() {
        let mut into = details(json!({"ids": (0..30).collect::<Vec<_>>()}));
        merge_details(
            &mut into,
            details(json!({"ids": (30..40).collect::<Vec<_>>()})),
        );
        assert_eq!(into["ids"].as_array().unwrap().len(), MAX_MERGED_ITEMS);
    }
}
