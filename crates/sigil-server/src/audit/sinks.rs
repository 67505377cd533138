//! External audit sinks (file, syslog, HTTP): copies of the audit records, each sink fed through
//! a bounded spool so a failing sink never blocks serving.

use std::path::PathBuf;

/// One external sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// JSON lines appended to a file.
    File { path: PathBuf },
}

// TEMPORARY (lead): the interface audit/mod.rs calls, until the sinks land here.
/// A sink's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkHealth {
    pub name: String,
    pub healthy: bool,
    pub spooled: u64,
    pub dropped: u64,
    pub last_error: Option<String>,
}
/// The sinks.
#[derive(Debug, Clone, Default)]
pub struct Sinks;
impl Sinks {
    /// Starts the sinks.
    pub fn start(
        _configs: Vec<SinkConfig>,
        _spool: usize,
        _metrics: std::sync::Arc<crate::metrics::Metrics>,
        _shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> (Self, Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>) {
        (Self, Vec::new())
    }
    /// Hands records to the sinks.
    pub fn push(&self, _records: &[sigil_audit::AuditRecord]) {}
    /// The sinks' state.
    pub fn health(&self) -> Vec<SinkHealth> {
        Vec::new()
    }
}
