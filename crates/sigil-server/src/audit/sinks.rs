//! External audit sinks (file, syslog, HTTP): a copy of every record appended to the audit
//! chain, each sink fed through its own bounded spool and drained by its own task, so a slow or
//! failing sink never blocks serving. [`Sinks::push`] only queues; when a spool is full its
//! oldest records are dropped and counted.
//!
//! Delivery is at least once: a batch that fails part-way (a file write cut short, messages
//! sent before a syslog error, an HTTP request whose answer was lost) is sent again whole.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;
use sigil_audit::{AuditRecord, Outcome};
use sigil_tls::{HttpsServerAuth, ServerName, TlsConnector, TlsPolicy};
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};
use tokio::sync::{Notify, watch};

use crate::metrics::{Metrics, SinkLabel};

/// Longest one syslog message may be, in bytes; the record's JSON is cut to fit.
pub const SYSLOG_MAX_BYTES: usize = 8 * 1024;
/// How long one HTTP delivery may take, unless configured.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One external sink (`[[audit.sink]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// One JSON line per record appended to `path` (created with mode 0600 when missing). A
    /// symbolic link at `path` is refused; a file replaced at `path` (log rotation) is reopened.
    File { path: PathBuf },
    /// One RFC 5424 message per record (its MSG the record's JSON, cut to
    /// [`SYSLOG_MAX_BYTES`]), sent to `target` with `facility`; severity follows the outcome
    /// (success: info, denied: notice, failure: warning).
    Syslog {
        target: SyslogTarget,
        facility: SyslogFacility,
    },
    /// Batches of records POSTed to `url` as a JSON array, with `headers` (an `Authorization`
    /// token, say: build them with [`SinkConfig::http_header`] so they never print). An answer
    /// other than 2xx, or none within `timeout`, is a failure. `https` verifies the server
    /// against the system's trust anchors.
    Http {
        url: SinkUrl,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    },
}

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A syslog server over UDP: an IP address or a host name (resolved at each connect).
    Udp { host: String, port: u16 },
    /// A local Unix datagram socket (`/dev/log`).
    Unix(PathBuf),
}

/// The syslog facility of the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyslogFacility {
    Auth,
    /// Security messages kept private by most syslog setups: the default.
    #[default]
    Authpriv,
    Daemon,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

/// An `http://` or `https://` URL an HTTP sink posts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkUrl {
    tls: bool,
    /// A name or an IP address (IPv6 without brackets).
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

/// Why a sink's configuration is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("invalid audit sink URL `{0}`: expected http(s)://host[:port][/path][?query]")]
    Url(String),
    #[error("invalid syslog address `{0}`: expected HOST:PORT (UDP) or an absolute socket path")]
    SyslogAddress(String),
    #[error("unknown syslog facility `{0}`: expected auth, authpriv, daemon or local0 to local7")]
    Facility(String),
    #[error("invalid HTTP header `{0}`")]
    Header(String),
}

/// A sink's state, for `/readyz` and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkHealth {
    /// `file /path`, `syslog HOST:PORT`, `http URL` (without its query).
    pub name: String,
    /// The last delivery succeeded (or none failed yet).
    pub healthy: bool,
    /// Records waiting for delivery.
    pub spooled: u64,
    /// Records dropped since start because the spool was full.
    pub dropped: u64,
    /// Why the last delivery failed, while the sink is failing.
    pub last_error: Option<String>,
}

/// The running sinks; cheap to clone.
#[derive(Clone, Default)]
pub struct Sinks {
    sinks: Arc<Vec<Arc<Shared>>>,
}

/// A sink's task, to be spawned.
type SinkTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Most records in one delivery.
const MAX_BATCH_RECORDS: usize = 512;
/// Most JSON bytes in one delivery (at least one record is always sent).
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// First pause after a failed delivery; doubled at each further failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts of a failing sink.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest a file write or a round of syslog messages may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the last deliveries at shutdown may take in all.
const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// How long an empty spool waits at shutdown for the writer's last records.
const FINAL_GRACE: Duration = Duration::from_millis(250);
/// Longest error message kept in [`SinkHealth::last_error`], in characters.
const MAX_ERROR_CHARS: usize = 512;

impl SinkConfig {
    /// A header for [`SinkConfig::Http`], its value marked sensitive (shown as `Sensitive` in
    /// debug output). Fails when the name or the value is not a valid HTTP header's (the error
    /// names the header, never its value).
    pub fn http_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), SinkError> {
        let bad = || SinkError::Header(name.chars().take(100).collect());
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| bad())?;
        value.set_sensitive(true);
        Ok((name, value))
    }

    /// The sink's name in health reports, logs and metric labels: `file /path`,
    /// `syslog HOST:PORT`, `http URL` (without its query, which may hold a token).
    pub fn name(&self) -> String {
        match self {
            Self::File { path } => format!("file {}", path.display()),
            Self::Syslog { target, .. } => format!("syslog {target}"),
            Self::Http { url, .. } => format!("http {url}"),
        }
    }
}

impl SyslogTarget {
    /// Parses `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 one; UDP) or an
    /// absolute path (a Unix datagram socket); `udp://` and `unix://` prefixes are accepted.
    pub fn parse(address: &str) -> Result<Self, SinkError> {
        let bad = || SinkError::SyslogAddress(address.chars().take(200).collect());
        if address.chars().any(char::is_control) {
            return Err(bad());
        }
        let unix = address.strip_prefix("unix://").unwrap_or(address);
        if unix.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(unix)));
        }
        let udp = address.strip_prefix("udp://").unwrap_or(address);
        let (host, port) = host_port(udp, None).ok_or_else(bad)?;
        Ok(Self::Udp { host, port })
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Udp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Udp { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl SyslogFacility {
    /// The facility named `name` (`auth`, `authpriv`, `daemon`, `local0` ... `local7`).
    pub fn parse(name: &str) -> Result<Self, SinkError> {
        Ok(match name {
            "auth" => Self::Auth,
            "authpriv" => Self::Authpriv,
            "daemon" => Self::Daemon,
            "local0" => Self::Local0,
            "local1" => Self::Local1,
            "local2" => Self::Local2,
            "local3" => Self::Local3,
            "local4" => Self::Local4,
            "local5" => Self::Local5,
            "local6" => Self::Local6,
            "local7" => Self::Local7,
            other => return Err(SinkError::Facility(other.chars().take(100).collect())),
        })
    }

    /// The facility's number (RFC 5424, section 6.2.1).
    pub fn code(self) -> u32 {
        match self {
            Self::Auth => 4,
            Self::Daemon => 3,
            Self::Authpriv => 10,
            Self::Local0 => 16,
            Self::Local1 => 17,
            Self::Local2 => 18,
            Self::Local3 => 19,
            Self::Local4 => 20,
            Self::Local5 => 21,
            Self::Local6 => 22,
            Self::Local7 => 23,
        }
    }
}

impl SinkUrl {
    /// Parses `http://` or `https://`, a host (name, IPv4 or bracketed IPv6), an optional port
    /// (default 80 or 443), an optional path (default `/`) and query; no userinfo or fragment.
    pub fn parse(url: &str) -> Result<Self, SinkError> {
        let bad = || SinkError::Url(url.chars().take(200).collect());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        if rest.contains(['#', ' ']) || rest.chars().any(char::is_control) {
            return Err(bad());
        }
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (
                rest.get(..i).ok_or_else(bad)?,
                rest.get(i..).ok_or_else(bad)?,
            ),
            None => (rest, "/"),
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_owned()
        };
        if authority.contains('@') || target.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(bad());
        }
        let (host, port) =
            host_port(authority, Some(if tls { 443 } else { 80 })).ok_or_else(bad)?;
        Ok(Self {
            tls,
            host,
            port,
            target,
        })
    }

    /// `host[:port]` as the `Host` header says it (the port only when not the scheme's default).
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Shown without the query, which may hold a token.
impl fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.target.split('?').next().unwrap_or("/");
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{path}", self.authority())
    }
}

/// `host:port` (the port optional when `default_port` is given): the host a name or an IPv4
/// address, or a bracketed IPv6 address (returned without brackets); the port not 0.
fn host_port(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after.strip_prefix(':') {
            Some(port) => (host, port.parse().ok()?),
            None if after.is_empty() => (host, default_port?),
            None => return None,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default_port?),
        }
    };
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if host.is_empty() || host.len() > 253 || !host.chars().all(name_char) || port == 0 {
        return None;
    }
    Some((host.to_owned(), port))
}

impl fmt::Debug for Sinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.sinks.iter().map(|s| &s.name))
            .finish()
    }
}

impl Sinks {
    /// Starts one sink per configuration, each spooling at most `spool_records` records (at
    /// least one), and returns the handle with the sinks' tasks, to be spawned: each delivers
    /// until `shutdown` turns true (or its sender is dropped), then tries, for a few seconds at
    /// most, to deliver what is still spooled.
    pub fn start(
        configs: Vec<SinkConfig>,
        spool_records: usize,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, Vec<SinkTask>) {
        let mut sinks = Vec::with_capacity(configs.len());
        let mut tasks: Vec<SinkTask> = Vec::with_capacity(configs.len());
        for config in configs {
            let mut name = config.name();
            let numbered = format!("{name} #");
            let same = sinks
                .iter()
                .filter(|s: &&Arc<Shared>| s.name == name || s.name.starts_with(&numbered))
                .count();
            if same > 0 {
                name = format!("{name} #{}", same + 1);
            }
            let label = SinkLabel { sink: name.clone() };
            let shared = Arc::new(Shared {
                capacity: spool_records.max(1),
                spool: Mutex::new(Spool {
                    records: VecDeque::new(),
                    head: 0,
                    dropped: 0,
                    healthy: true,
                    last_error: None,
                }),
                wake: Notify::new(),
                delivered: metrics.audit_sink_records.get_or_create_owned(&label),
                failures: metrics.audit_sink_failures.get_or_create_owned(&label),
                dropped: metrics.audit_sink_dropped.get_or_create_owned(&label),
                name,
            });
            tasks.push(Box::pin(run(
                shared.clone(),
                Target::new(config),
                shutdown.clone(),
            )));
            sinks.push(shared);
        }
        (
            Self {
                sinks: Arc::new(sinks),
            },
            tasks,
        )
    }

    /// Queues `records` for every sink. Never blocks or waits: a full spool drops its oldest
    /// records (counted in [`SinkHealth::dropped`] and `sigil_audit_sink_dropped_total`).
    pub fn push(&self, records: &[AuditRecord]) {
        if self.sinks.is_empty() || records.is_empty() {
            return;
        }
        let spooled: Vec<Arc<Spooled>> = records
            .iter()
            .filter_map(|record| match serde_json::to_string(record) {
                Ok(json) => Some(Arc::new(Spooled {
                    record: record.clone(),
                    json,
                })),
                Err(e) => {
                    tracing::error!(error = %e, seq = record.seq, "cannot encode an audit record for the sinks");
                    None
                }
            })
            .collect();
        for sink in self.sinks.iter() {
            sink.enqueue(&spooled);
        }
    }

    /// Every sink's state, in configuration order.
    pub fn health(&self) -> Vec<SinkHealth> {
        self.sinks
            .iter()
            .map(|sink| {
                let spool = sink.lock();
                SinkHealth {
                    name: sink.name.clone(),
                    healthy: spool.healthy,
                    spooled: spool.records.len() as u64,
                    dropped: spool.dropped,
                    last_error: spool.last_error.clone(),
                }
            })
            .collect()
    }
}

/// A record waiting for delivery, with its JSON (the export's encoding).
struct Spooled {
    record: AuditRecord,
    json: String,
}

/// What a sink's task and [`Sinks::push`] share.
struct Shared {
    name: String,
    capacity: usize,
    spool: Mutex<Spool>,
    /// Wakes the task when records were queued.
    wake: Notify,
    delivered: Counter,
    failures: Counter,
    dropped: Counter,
}

struct Spool {
    records: VecDeque<Arc<Spooled>>,
    /// How many records were ever removed from the front (delivered or dropped): the position
    /// of `records[0]` in everything queued, so a delivered batch is removed even when some of
    /// it was dropped meanwhile.
    head: u64,
    dropped: u64,
    healthy: bool,
    last_error: Option<String>,
}

/// Records being delivered: the spool's first ones, up to position `end`.
struct Batch {
    records: Vec<Arc<Spooled>>,
    end: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Spool> {
        // Every update leaves the spool consistent; a panic elsewhere cannot half-write it.
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, records: &[Arc<Spooled>]) {
        let mut dropped = 0u64;
        {
            let mut spool = self.lock();
            for record in records {
                if spool.records.len() >= self.capacity && spool.records.pop_front().is_some() {
                    spool.head += 1;
                    dropped += 1;
                }
                spool.records.push_back(record.clone());
            }
            spool.dropped += dropped;
        }
        if dropped > 0 {
            self.dropped.inc_by(dropped);
        }
        self.wake.notify_one();
    }

    /// The oldest spooled records, within [`MAX_BATCH_RECORDS`] and [`MAX_BATCH_BYTES`].
    fn next_batch(&self) -> Option<Batch> {
        let spool = self.lock();
        let mut bytes = 0;
        let mut records = Vec::new();
        for record in &spool.records {
            if !records.is_empty()
                && (records.len() >= MAX_BATCH_RECORDS
                    || bytes + record.json.len() > MAX_BATCH_BYTES)
            {
                break;
            }
            bytes += record.json.len();
            records.push(record.clone());
        }
        if records.is_empty() {
            return None;
        }
        Some(Batch {
            end: spool.head + records.len() as u64,
            records,
        })
    }

    /// Removes what is left of `batch` from the spool (records dropped while it was on its way
    /// stay counted as dropped) and marks the sink healthy.
    fn delivered(&self, batch: &Batch) {
        {
            let mut spool = self.lock();
            let left = usize::try_from(batch.end.saturating_sub(spool.head))
                .unwrap_or(usize::MAX)
                .min(spool.records.len());
            spool.records.drain(..left);
            spool.head += left as u64;
            if !spool.healthy {
                tracing::info!(sink = %self.name, "audit sink delivers again");
            }
            spool.healthy = true;
            spool.last_error = None;
        }
        self.delivered.inc_by(batch.records.len() as u64);
    }

    fn failed(&self, error: &DeliveryError) {
        let message: String = error.to_string().chars().take(MAX_ERROR_CHARS).collect();
        {
            let mut spool = self.lock();
            if spool.healthy {
                tracing::warn!(sink = %self.name, error = %message, spooled = spool.records.len(), "audit sink failing; records are spooled");
            }
            spool.healthy = false;
            spool.last_error = Some(message);
        }
        self.failures.inc();
    }
}

/// A sink's task: delivers batches as records arrive, backing off while the sink fails, until
/// shutdown; then a last bounded flush.
async fn run(shared: Arc<Shared>, mut target: Target, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = MIN_BACKOFF;
    while !*shutdown.borrow() {
        let Some(batch) = shared.next_batch() else {
            tokio::select! {
                () = shared.wake.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            continue;
        };
        match target.deliver(&batch.records).await {
            Ok(()) => {
                shared.delivered(&batch);
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                shared.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    let flush = async {
        loop {
            match shared.next_batch() {
                Some(batch) => match target.deliver(&batch.records).await {
                    Ok(()) => shared.delivered(&batch),
                    Err(e) => {
                        shared.failed(&e);
                        return;
                    }
                },
                // The writer hands over its last records after shutdown was signalled.
                None => {
                    if tokio::time::timeout(FINAL_GRACE, shared.wake.notified())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(FINAL_FLUSH, flush).await;
    let left = shared.lock().records.len();
    if left > 0 {
        tracing::warn!(sink = %shared.name, records = left, "audit sink stopped with records undelivered");
    }
}

/// Why a delivery failed: kept as the sink's `last_error`.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("`{0}` is a symbolic link or was replaced while being opened; not writing through it")]
    Symlink(PathBuf),
    #[error("`{0}` is not a regular file")]
    NotAFile(PathBuf),
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] sigil_tls::TlsError),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("no delivery within {0:?}")]
    Timeout(Duration),
    #[error("the delivery task failed: {0}")]
    Task(String),
}

/// Where a sink delivers, with what it keeps open between deliveries.
enum Target {
    File {
        path: PathBuf,
        file: Option<std::fs::File>,
    },
    Syslog {
        target: SyslogTarget,
        facility: SyslogFacility,
        socket: Option<SyslogSocket>,
    },
    Http {
        url: SinkUrl,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
        /// Built at the first `https` delivery (reading the system's trust anchors).
        tls: Option<TlsConnector>,
    },
}

enum SyslogSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Target {
    fn new(config: SinkConfig) -> Self {
        match config {
            SinkConfig::File { path } => Self::File { path, file: None },
            SinkConfig::Syslog { target, facility } => Self::Syslog {
                target,
                facility,
                socket: None,
            },
            SinkConfig::Http {
                url,
                headers,
                timeout,
            } => Self::Http {
                url,
                headers,
                timeout,
                tls: None,
            },
        }
    }

    async fn deliver(&mut self, records: &[Arc<Spooled>]) -> Result<(), DeliveryError> {
        match self {
            Self::File { path, file } => {
                let mut lines = Vec::with_capacity(records.iter().map(|r| r.json.len() + 1).sum());
                for record in records {
                    lines.extend_from_slice(record.json.as_bytes());
                    lines.push(b'\n');
                }
                let (path_for_job, open) = (path.clone(), file.take());
                let job = tokio::task::spawn_blocking(move || append(&path_for_job, open, &lines));
                let reopened = tokio::time::timeout(DELIVERY_TIMEOUT, job)
                    .await
                    .map_err(|_| DeliveryError::Timeout(DELIVERY_TIMEOUT))?
                    .map_err(|e| DeliveryError::Task(e.to_string()))??;
                *file = Some(reopened);
                Ok(())
            }
            Self::Syslog {
                target,
                facility,
                socket,
            } => {
                let result = tokio::time::timeout(
                    DELIVERY_TIMEOUT,
                    send_syslog(target, *facility, socket, records),
                )
                .await
                .map_err(|_| DeliveryError::Timeout(DELIVERY_TIMEOUT))
                .and_then(|r| r);
                if result.is_err() {
                    // The server may have moved or restarted: connect afresh next time.
                    *socket = None;
                }
                result
            }
            Self::Http {
                url,
                headers,
                timeout,
                tls,
            } => {
                let connector = match (url.tls, tls.as_ref()) {
                    (false, _) => None,
                    (true, Some(connector)) => Some(connector.clone()),
                    (true, None) => {
                        let roots = tokio::task::spawn_blocking(sigil_tls::system_roots)
                            .await
                            .map_err(|e| DeliveryError::Task(e.to_string()))?;
                        let config = sigil_tls::https_client_config(
                            &HttpsServerAuth::WebPki(roots),
                            TlsPolicy::default(),
                        )?;
                        let connector = TlsConnector::from(Arc::new(config));
                        *tls = Some(connector.clone());
                        Some(connector)
                    }
                };
                let request = http_request(url, headers, records)?;
                tokio::time::timeout(*timeout, post(url, connector, request))
                    .await
                    .map_err(|_| DeliveryError::Timeout(*timeout))?
            }
        }
    }
}

/// Appends `lines` to the file at `path` through `open` when it is still the file there, else
/// through the file (re)opened at `path`; returns the file to keep. Blocking.
fn append(
    path: &Path,
    open: Option<std::fs::File>,
    lines: &[u8],
) -> Result<std::fs::File, DeliveryError> {
    let current = open.filter(|file| same_file(path, file));
    let mut file = match current {
        Some(file) => file,
        None => open_append(path)?,
    };
    file.write_all(lines)
        .map_err(|e| DeliveryError::Io(format!("cannot write to `{}`", path.display()), e))?;
    Ok(file)
}

/// Whether `file` is the file at `path` (not a link to it): false after log rotation.
fn same_file(path: &Path, file: &std::fs::File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(at_path), Ok(open)) => {
            !at_path.file_type().is_symlink()
                && at_path.dev() == open.dev()
                && at_path.ino() == open.ino()
        }
        _ => false,
    }
}

/// Opens `path` to append, creating it with mode 0600. A symbolic link is refused: without
/// `O_NOFOLLOW` (no libc here) the path is checked before opening, and the opened file is then
/// checked to be the one at the path, so nothing is written through a link swapped in between.
fn open_append(path: &Path) -> Result<std::fs::File, DeliveryError> {
    let io = |what: &str| {
        let context = format!("cannot {what} `{}`", path.display());
        move |e| DeliveryError::Io(context, e)
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(DeliveryError::Symlink(path.to_owned()));
        }
        Ok(meta) if !meta.is_file() => return Err(DeliveryError::NotAFile(path.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect")(e)),
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io("open"))?;
    if !same_file(path, &file) {
        return Err(DeliveryError::Symlink(path.to_owned()));
    }
    Ok(file)
}

/// Sends one message per record through `socket`, connecting it first when there is none.
async fn send_syslog(
    target: &SyslogTarget,
    facility: SyslogFacility,
    socket: &mut Option<SyslogSocket>,
    records: &[Arc<Spooled>],
) -> Result<(), DeliveryError> {
    let socket = match socket {
        Some(socket) => socket,
        None => socket.insert(connect_syslog(target).await?),
    };
    let pid = std::process::id();
    for record in records {
        let message = syslog_message(&record.record, &record.json, facility, pid);
        let sent = match socket {
            SyslogSocket::Udp(udp) => udp.send(&message).await,
            SyslogSocket::Unix(unix) => unix.send(&message).await,
        };
        sent.map_err(|e| DeliveryError::Io(format!("cannot send to syslog {target}"), e))?;
    }
    Ok(())
}

async fn connect_syslog(target: &SyslogTarget) -> Result<SyslogSocket, DeliveryError> {
    let io = |e| DeliveryError::Io(format!("cannot connect to syslog {target}"), e);
    match target {
        SyslogTarget::Udp { host, port } => {
            let address = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(io)?
                .next()
                .ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
            let local: std::net::SocketAddr = if address.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let udp = UdpSocket::bind(local).await.map_err(io)?;
            // Connected, so an unreachable server shows as an error on a later send.
            udp.connect(address).await.map_err(io)?;
            Ok(SyslogSocket::Udp(udp))
        }
        SyslogTarget::Unix(path) => {
            let unix = UnixDatagram::unbound().map_err(io)?;
            unix.connect(path).map_err(io)?;
            Ok(SyslogSocket::Unix(unix))
        }
    }
}

/// The RFC 5424 message of `record`: `<PRI>1 TIMESTAMP HOSTNAME sigil PROCID audit - JSON`,
/// the host name the record's replica (`-` when empty), the JSON cut to [`SYSLOG_MAX_BYTES`] in
/// all.
fn syslog_message(record: &AuditRecord, json: &str, facility: SyslogFacility, pid: u32) -> Vec<u8> {
    let severity = match record.event.outcome {
        Outcome::Success => 6,
        Outcome::Denied => 5,
        Outcome::Failure => 4,
    };
    let priority = facility.code() * 8 + severity;
    let hostname: String = record
        .event
        .replica
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let hostname = if hostname.is_empty() {
        "-".to_owned()
    } else {
        hostname
    };
    let mut message = format!(
        "<{priority}>1 {} {hostname} sigil {pid} audit - ",
        rfc3339_millis(record.event.time)
    )
    .into_bytes();
    let room = SYSLOG_MAX_BYTES.saturating_sub(message.len());
    message.extend_from_slice(cut(json, room).as_bytes());
    message
}

/// `text` cut at a character boundary to at most `max` bytes.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// `unix_millis` as an RFC 3339 UTC time with milliseconds; `-` (syslog's nil value) outside
/// the years 0 to 9999.
pub(crate) fn rfc3339_millis(unix_millis: i64) -> String {
    let seconds = unix_millis.div_euclid(1000);
    let millis = unix_millis.rem_euclid(1000);
    let of_day = seconds.rem_euclid(86_400);
    // Days to civil date (Howard Hinnant's `civil_from_days`).
    let z = seconds.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return "-".to_owned();
    }
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The POST of `records` as a JSON array to `url`, with `headers` (which may replace the
/// defaults).
fn http_request(
    url: &SinkUrl,
    headers: &[(HeaderName, HeaderValue)],
    records: &[Arc<Spooled>],
) -> Result<http::Request<Full<bytes::Bytes>>, DeliveryError> {
    let mut body = Vec::with_capacity(records.iter().map(|r| r.json.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record.json.as_bytes());
    }
    body.push(b']');
    let mut request = http::Request::post(url.target.as_str())
        .header(http::header::HOST, url.authority())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "sigil-audit")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| DeliveryError::Http(e.to_string()))?;
    for (name, value) in headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(request)
}

/// Sends `request` to `url` on a new connection (TLS through `tls` when given); fails unless
/// the answer is 2xx. Not bounded in time: the caller is.
async fn post(
    url: &SinkUrl,
    tls: Option<TlsConnector>,
    request: http::Request<Full<bytes::Bytes>>,
) -> Result<(), DeliveryError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| DeliveryError::Io(format!("cannot connect to {}", url.authority()), e))?;
    let status = match tls {
        None => exchange(tcp, request).await?,
        Some(connector) => {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|_| DeliveryError::Http(format!("invalid server name `{}`", url.host)))?;
            let stream = connector.connect(name, tcp).await.map_err(|e| {
                DeliveryError::Io(format!("TLS with {} failed", url.authority()), e)
            })?;
            exchange(stream, request).await?
        }
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(status.as_u16()))
    }
}

/// One HTTP/1.1 request on `io`; its answer's status.
async fn exchange<S>(
    io: S,
    request: http::Request<Full<bytes::Bytes>>,
) -> Result<http::StatusCode, DeliveryError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| DeliveryError::Http(e.to_string()))?;
    let connection = AbortOnDrop(tokio::spawn(connection));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| DeliveryError::Http(e.to_string()));
    drop(connection);
    Ok(response?.status())
}

/// Ends a spawned connection when the exchange is over or abandoned (a timeout).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use sigil_audit::AuditEvent;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    fn record(seq: u64, action: &str) -> AuditRecord {
        AuditRecord {
            seq,
            event: AuditEvent {
                time: 951_782_400_123,
                replica: "replica-a".to_owned(),
                actor: "uid:0".to_owned(),
                action: action.to_owned(),
                target: format!("entry-{seq}"),
                outcome: Outcome::Success,
                details: r#"{"n":1}"#.to_owned(),
            },
            prev_hash: "0".repeat(64),
            hash: format!("{seq:064x}"),
        }
    }

    fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<AuditRecord> {
        seqs.map(|seq| record(seq, "entry.create")).collect()
    }

    struct Running {
        sinks: Sinks,
        metrics: Arc<Metrics>,
        stop: watch::Sender<bool>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    fn start(config: SinkConfig, spool: usize) -> Running {
        let metrics = Arc::new(Metrics::new());
        let (stop, shutdown) = watch::channel(false);
        let (sinks, tasks) = Sinks::start(vec![config], spool, metrics.clone(), shutdown);
        let tasks = tasks.into_iter().map(tokio::spawn).collect();
        Running {
            sinks,
            metrics,
            stop,
            tasks,
        }
    }

    impl Running {
        fn health(&self) -> SinkHealth {
            self.sinks.health().remove(0)
        }

        async fn eventually(&self, what: &str, check: impl Fn(&SinkHealth) -> bool) -> SinkHealth {
            for _ in 0..400 {
                let health = self.health();
                if check(&health) {
                    return health;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("timed out waiting until {what}: {:?}", self.health());
        }

        async fn stop(self) {
            self.stop.send_replace(true);
            for task in self.tasks {
                tokio::time::timeout(FINAL_FLUSH + Duration::from_secs(2), task)
                    .await
                    .expect("sink tasks end at shutdown")
                    .expect("sink task does not panic");
            }
        }
    }

    fn read_lines(path: &Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .expect("file exists")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is a record"))
            .collect()
    }

    #[tokio::test]
    async fn file_sink_appends_one_json_line_per_record_to_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let running = start(SinkConfig::File { path: path.clone() }, 100);
        running.sinks.push(&records(1..=3));
        running.sinks.push(&records(4..=4));
        running
            .eventually("all delivered", |h| h.spooled == 0)
            .await;
        assert_eq!(read_lines(&path), records(1..=4));
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let health = running.health();
        assert!(health.healthy && health.dropped == 0 && health.last_error.is_none());
        assert_eq!(health.name, format!("file {}", path.display()));

        // A rotated file is reopened at the path.
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).expect("rotate");
        running.sinks.push(&records(5..=5));
        running
            .eventually("rotated file written", |_| path.exists())
            .await;
        running.eventually("delivered", |h| h.spooled == 0).await;
        assert_eq!(read_lines(&path), records(5..=5));
        running.stop().await;
    }

    #[tokio::test]
    async fn file_sink_refuses_to_write_through_a_symbolic_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched\n").expect("write");
        let path = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        let running = start(SinkConfig::File { path: path.clone() }, 10);
        running.sinks.push(&records(1..=2));
        let health = running.eventually("failing", |h| !h.healthy).await;
        assert!(
            health
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("symbolic link")),
            "{health:?}"
        );
        assert_eq!(health.spooled, 2);
        assert_eq!(std::fs::read(&victim).expect("read"), b"untouched\n");
        running.stop().await;
    }

    #[tokio::test]
    async fn failing_sink_never_blocks_keeps_a_bounded_spool_and_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("not-yet");
        let path = missing.join("audit.jsonl");
        let running = start(SinkConfig::File { path: path.clone() }, 5);
        let started = std::time::Instant::now();
        for seq in 1..=8 {
            running.sinks.push(&records(seq..=seq));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "push does not wait"
        );
        let health = running.eventually("failing", |h| !h.healthy).await;
        assert_eq!(health.spooled, 5, "{health:?}");
        assert_eq!(health.dropped, 3);
        assert!(
            health
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("cannot open")),
            "{health:?}"
        );
        let name = health.name.clone();
        let text = running.metrics.encode().expect("encode");
        assert!(
            text.contains(&format!(
                "sigil_audit_sink_dropped_total{{sink=\"{name}\"}} 3"
            )),
            "{text}"
        );
        assert!(text.contains("sigil_audit_sink_failures_total"), "{text}");

        std::fs::create_dir(&missing).expect("mkdir");
        let health = running
            .eventually("recovered", |h| h.healthy && h.spooled == 0)
            .await;
        assert!(health.last_error.is_none());
        assert_eq!(health.dropped, 3);
        assert_eq!(read_lines(&path), records(4..=8), "the oldest were dropped");
        running.stop().await;
    }

    /// Answers HTTP requests on `listener` with `statuses` in turn (then 200), handing each
    /// request's headers and body to `seen`.
    async fn serve(
        listener: TcpListener,
        mut statuses: Vec<u16>,
        seen: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>,
    ) {
        statuses.reverse();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let (head, body) = loop {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "request cut short");
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8(buf[..end].to_vec()).expect("ascii head");
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().expect("length"))
                    })
                    .expect("content-length");
                if buf.len() >= end + 4 + length {
                    break (head, buf[end + 4..end + 4 + length].to_vec());
                }
            };
            let status = statuses.pop().unwrap_or(200);
            let answer = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await.expect("answer");
            let _ = seen.send((head, body));
        }
    }

    #[tokio::test]
    async fn http_sink_spools_while_the_server_fails_then_posts_json_arrays() {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let url =
            SinkUrl::parse(&format!("http://127.0.0.1:{port}/ingest?token=secret")).expect("url");
        let headers =
            vec![SinkConfig::http_header("authorization", "Bearer t0ken").expect("header")];
        assert!(!format!("{headers:?}").contains("t0ken"));
        let running = start(
            SinkConfig::Http {
                url,
                headers,
                timeout: Duration::from_secs(2),
            },
            100,
        );
        assert_eq!(
            running.health().name,
            format!("http http://127.0.0.1:{port}/ingest")
        );
        running.sinks.push(&records(1..=3));
        let health = running.eventually("failing", |h| !h.healthy).await;
        assert!(
            health
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("cannot connect")),
            "{health:?}"
        );
        assert_eq!(health.spooled, 3);

        // The server appears, answers 503 once (still failing), then 200.
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind");
        let (seen, mut requests) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, vec![503], seen));
        let (_, first) = requests.recv().await.expect("first request");
        let health = running
            .eventually("503 seen", |h| {
                h.last_error.as_deref().is_some_and(|e| e.contains("503"))
            })
            .await;
        assert!(!health.healthy);
        let (head, body) = requests.recv().await.expect("second request");
        assert_eq!(first, body, "the refused batch is sent again");
        assert!(
            head.starts_with("POST /ingest?token=secret HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer t0ken"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let posted: Vec<AuditRecord> = serde_json::from_slice(&body).expect("a JSON array");
        assert_eq!(posted, records(1..=3));
        let health = running
            .eventually("recovered", |h| h.healthy && h.spooled == 0)
            .await;
        assert!(health.last_error.is_none());

        running.sinks.push(&records(4..=5));
        let (_, body) = requests.recv().await.expect("third request");
        let posted: Vec<AuditRecord> = serde_json::from_slice(&body).expect("a JSON array");
        assert_eq!(posted, records(4..=5));
        running.stop().await;
        server.abort();
    }

    #[tokio::test]
    async fn syslog_sink_sends_one_rfc5424_message_per_record_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target =
            SyslogTarget::parse(&server.local_addr().expect("addr").to_string()).expect("target");
        let running = start(
            SinkConfig::Syslog {
                target,
                facility: SyslogFacility::Local0,
            },
            100,
        );
        let mut denied = record(7, "token.exchange");
        denied.event.outcome = Outcome::Denied;
        running
            .sinks
            .push(&[record(6, "entry.create"), denied.clone()]);
        let mut buf = vec![0u8; 65_536];
        let mut messages = Vec::new();
        for _ in 0..2 {
            let n = tokio::time::timeout(Duration::from_secs(10), server.recv(&mut buf))
                .await
                .expect("a message arrives")
                .expect("recv");
            messages.push(String::from_utf8(buf[..n].to_vec()).expect("utf-8"));
        }
        for (message, (expected, priority)) in messages
            .iter()
            .zip([(record(6, "entry.create"), 134), (denied, 133)])
        {
            // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
            let fields: Vec<&str> = message.splitn(8, ' ').collect();
            assert_eq!(fields.len(), 8, "{message}");
            assert_eq!(fields[0], format!("<{priority}>1"));
            assert_eq!(fields[1], "2000-02-29T00:00:00.123Z");
            assert_eq!(fields[2], "replica-a");
            assert_eq!(fields[3], "sigil");
            assert_eq!(fields[4], std::process::id().to_string());
            assert_eq!(fields[5], "audit");
            assert_eq!(fields[6], "-");
            let parsed: AuditRecord = serde_json::from_str(fields[7]).expect("MSG is the record");
            assert_eq!(parsed, expected);
            assert!(message.contains(&expected.event.action));
        }
        running
            .eventually("delivered", |h| h.healthy && h.spooled == 0)
            .await;
        running.stop().await;
    }

    #[test]
    fn syslog_messages_are_bounded() {
        let mut big = record(1, "entry.create");
        big.event.details = format!(r#"{{"x":"{}"}}"#, "é".repeat(8000));
        let json = serde_json::to_string(&big).expect("json");
        assert!(json.len() > SYSLOG_MAX_BYTES);
        let message = syslog_message(&big, &json, SyslogFacility::Authpriv, 1);
        assert!(message.len() <= SYSLOG_MAX_BYTES && message.len() > SYSLOG_MAX_BYTES - 4);
        assert!(
            String::from_utf8(message)
                .expect("cut at a char boundary")
                .starts_with("<86>1 ")
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_735_689_599_999),
            "2024-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_millis(i64::MAX), "-");
    }

    #[test]
    fn urls_targets_and_facilities_parse() {
        let url = SinkUrl::parse("https://siem.example/in?k=v").expect("url");
        assert_eq!(
            (url.tls, url.port, url.target.as_str()),
            (true, 443, "/in?k=v")
        );
        assert_eq!(url.to_string(), "https://siem.example/in");
        let url = SinkUrl::parse("http://[::1]:8080").expect("url");
        assert_eq!(
            (url.host.as_str(), url.port, url.target.as_str()),
            ("::1", 8080, "/")
        );
        assert_eq!(url.authority(), "[::1]:8080");
        assert_eq!(SinkUrl::parse("http://h?q").expect("url").target, "/?q");
        for bad in [
            "ftp://h/",
            "https://user@h/",
            "https://h/#f",
            "https://h:0/",
            "https://:80/",
            "https://h:port/",
            "https://[::1/",
            "https://h/a b",
        ] {
            assert!(SinkUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SyslogTarget::parse("logs.example:514").expect("udp"),
            SyslogTarget::Udp {
                host: "logs.example".into(),
                port: 514
            }
        );
        assert_eq!(
            SyslogTarget::parse("udp://[::1]:514")
                .expect("udp")
                .to_string(),
            "[::1]:514"
        );
        assert_eq!(
            SyslogTarget::parse("/dev/log").expect("unix"),
            SyslogTarget::Unix("/dev/log".into())
        );
        assert_eq!(
            SyslogTarget::parse("unix:///run/log").expect("unix"),
            SyslogTarget::Unix("/run/log".into())
        );
        for bad in ["logs.example", "dev/log", "h:0", ""] {
            assert!(SyslogTarget::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(SyslogFacility::parse("local7").expect("f").code(), 23);
        assert_eq!(SyslogFacility::default().code(), 10);
        assert!(SyslogFacility::parse("kern").is_err());
        assert!(SinkConfig::http_header("bad header", "v").is_err());
        assert!(SinkConfig::http_header("x-ok", "line\nbreak").is_err());
    }
}
