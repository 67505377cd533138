//! `[audit]` (with its `[[audit.sink]]` tables) and `[inventory]` of the server configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;
use sigil_server::audit::sinks::{SinkConfig, SinkUrl, SyslogFacility, SyslogTarget};
use sigil_server::audit::{AuditConfig, DecisionAudit};
use sigil_server::governance::InventoryConfig;

use crate::server_cmd::ttl;

/// Most external sinks.
const MAX_SINKS: usize = 16;
/// Most extra headers of one HTTP sink.
const MAX_HEADERS: usize = 16;

/// `[audit]`: the tamper-evident audit log (on unless `enabled = false`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    enabled: Option<bool>,
    /// `none`, `deny` (the default) or `all`.
    policy_decisions: Option<String>,
    /// How often the head of the chain is signed (`60s`).
    checkpoint_interval: Option<String>,
    /// Records each external sink holds while it is failing.
    spool_records: Option<usize>,
    #[serde(default)]
    sink: Vec<RawSink>,
}

/// `[[audit.sink]]`: where a copy of every record goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSink {
    /// `file`, `syslog` or `http`.
    kind: String,
    /// `file`: the JSON-lines file appended to.
    path: Option<PathBuf>,
    /// `syslog`: `HOST:PORT` (UDP) or the path of a Unix datagram socket (`/dev/log`).
    address: Option<String>,
    /// `http`: the URL records are POSTed to, as JSON arrays.
    url: Option<String>,
    /// `syslog`: auth, authpriv (the default), daemon or local0 … local7.
    facility: Option<String>,
    /// `http`: how long one delivery may take (`10s`).
    timeout: Option<String>,
    /// `http`: extra request headers (`Authorization = "Bearer …"`); values are never logged.
    headers: Option<BTreeMap<String, String>>,
}

/// `[inventory]`: the findings' thresholds and the usage retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInventory {
    unused_after: Option<String>,
    agent_stale_after: Option<String>,
    review_every: Option<String>,
    max_x509_svid_ttl: Option<String>,
    max_jwt_svid_ttl: Option<String>,
    join_token_stale_after: Option<String>,
    usage_retention: Option<String>,
}

impl RawAudit {
    /// The audit configuration, keeping the replica's newest checkpoint in `data_dir`.
    pub(crate) fn into_config(self, data_dir: &Path) -> anyhow::Result<AuditConfig> {
        let defaults = AuditConfig::default();
        let policy_decisions = match self.policy_decisions.as_deref() {
            None => defaults.policy_decisions,
            Some("none") => DecisionAudit::None,
            Some("deny") => DecisionAudit::Deny,
            Some("all") => DecisionAudit::All,
            Some(other) => bail!(
                "invalid audit.policy_decisions `{}`: expected none, deny or all",
                other.escape_debug()
            ),
        };
        let checkpoint_interval = match self.checkpoint_interval.as_deref() {
            None => defaults.checkpoint_interval,
            Some(raw) => Duration::from_secs(ttl("audit.checkpoint_interval", raw)?),
        };
        let spool_records = match self.spool_records {
            None => defaults.spool_records,
            Some(n) if (1..=1_000_000).contains(&n) => n,
            Some(n) => bail!("invalid audit.spool_records {n}: must be 1 to 1000000"),
        };
        if self.sink.len() > MAX_SINKS {
            bail!("at most {MAX_SINKS} [[audit.sink]] tables");
        }
        let sinks = self
            .sink
            .into_iter()
            .enumerate()
            .map(|(i, sink)| sink.into_config(i))
            .collect::<anyhow::Result<_>>()?;
        Ok(AuditConfig {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            policy_decisions,
            checkpoint_interval,
            sinks,
            spool_records,
            head_file: Some(data_dir.join("audit-head.json")),
        })
    }
}

impl RawSink {
    fn into_config(self, index: usize) -> anyhow::Result<SinkConfig> {
        let at = format!("[[audit.sink]] #{}", index + 1);
        let unexpected = |field: &str, present: bool| -> anyhow::Result<()> {
            if present {
                bail!(
                    "{at}: `{field}` does not apply to kind `{}`",
                    self.kind.escape_debug()
                );
            }
            Ok(())
        };
        match self.kind.as_str() {
            "file" => {
                unexpected("address", self.address.is_some())?;
                unexpected("url", self.url.is_some())?;
                unexpected("timeout", self.timeout.is_some())?;
                unexpected("facility", self.facility.is_some())?;
                unexpected("headers", self.headers.is_some())?;
                let Some(path) = self.path else {
                    bail!("{at}: kind `file` needs `path`");
                };
                if !path.is_absolute() {
                    bail!("{at}: `path` must be absolute, not `{}`", path.display());
                }
                Ok(SinkConfig::File { path })
            }
            "syslog" => {
                unexpected("path", self.path.is_some())?;
                unexpected("url", self.url.is_some())?;
                unexpected("timeout", self.timeout.is_some())?;
                unexpected("headers", self.headers.is_some())?;
                let Some(address) = &self.address else {
                    bail!("{at}: kind `syslog` needs `address` (HOST:PORT or a socket path)");
                };
                syslog_sink(&at, address, self.facility.as_deref())
            }
            "http" => {
                unexpected("path", self.path.is_some())?;
                unexpected("address", self.address.is_some())?;
                unexpected("facility", self.facility.is_some())?;
                let Some(url) = &self.url else {
                    bail!("{at}: kind `http` needs `url`");
                };
                let timeout = match self.timeout.as_deref() {
                    None => DEFAULT_HTTP_TIMEOUT,
                    Some(raw) => Duration::from_secs(ttl(&format!("{at} timeout"), raw)?),
                };
                http_sink(&at, url, self.headers.clone().unwrap_or_default(), timeout)
            }
            other => bail!(
                "{at}: unknown kind `{}`: expected file, syslog or http",
                other.escape_debug()
            ),
        }
    }
}

use sigil_server::audit::sinks::DEFAULT_HTTP_TIMEOUT;

impl RawInventory {
    /// The thresholds, each defaulted; the usage retention is at least `unused_after`.
    pub(crate) fn into_config(self) -> anyhow::Result<InventoryConfig> {
        let d = InventoryConfig::default();
        let get = |field: &str, raw: Option<String>, default: u64| -> anyhow::Result<u64> {
            match raw {
                None => Ok(default),
                Some(raw) => ttl(&format!("inventory.{field}"), &raw),
            }
        };
        let config = InventoryConfig {
            unused_after: get("unused_after", self.unused_after, d.unused_after)?,
            agent_stale_after: get(
                "agent_stale_after",
                self.agent_stale_after,
                d.agent_stale_after,
            )?,
            review_every: get("review_every", self.review_every, d.review_every)?,
            max_x509_ttl: get("max_x509_svid_ttl", self.max_x509_svid_ttl, d.max_x509_ttl)?,
            max_jwt_ttl: get("max_jwt_svid_ttl", self.max_jwt_svid_ttl, d.max_jwt_ttl)?,
            join_token_stale_after: get(
                "join_token_stale_after",
                self.join_token_stale_after,
                d.join_token_stale_after,
            )?,
            usage_retention: get("usage_retention", self.usage_retention, d.usage_retention)?,
        };
        if config.usage_retention < config.unused_after {
            bail!(
                "inventory.usage_retention ({} s) must be at least inventory.unused_after ({} s): \
                 otherwise pruned usage would read as unused",
                config.usage_retention,
                config.unused_after
            );
        }
        Ok(config)
    }
}

fn syslog_sink(at: &str, address: &str, facility: Option<&str>) -> anyhow::Result<SinkConfig> {
    let target = SyslogTarget::parse(address).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    let facility = match facility {
        None => SyslogFacility::default(),
        Some(raw) => SyslogFacility::parse(raw).map_err(|e| anyhow::anyhow!("{at}: {e}"))?,
    };
    Ok(SinkConfig::Syslog { target, facility })
}

fn http_sink(
    at: &str,
    url: &str,
    headers: BTreeMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<SinkConfig> {
    let url = SinkUrl::parse(url).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    if headers.len() > MAX_HEADERS {
        bail!("{at}: at most {MAX_HEADERS} headers");
    }
    let headers = headers
        .iter()
        .map(|(name, value)| {
            SinkConfig::http_header(name, value).map_err(|e| anyhow::anyhow!("{at}: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(SinkConfig::Http {
        url,
        headers,
        timeout,
    })
}
