//! `sigil agent run -c agent.toml`: the agent's configuration file (raw TOML, then validated into
//! `sigil_agent::AgentConfig`), then `sigil_agent::start` until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use sigil_agent::AgentConfig;
use sigil_spiffe::{SystemClock, TrustDomain};

use crate::server_cmd::{RawTls, read_config_file, shutdown_signal};

/// Default limit for hashing workload binaries (`unix:sha256`).
const DEFAULT_MAX_HASH_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentFile {
    agent: RawAgent,
    #[serde(default)]
    tls: RawTls,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    trust_domain: String,
    server_address: String,
    trust_bundle_path: Option<PathBuf>,
    join_token: Option<String>,
    data_dir: PathBuf,
    socket_path: Option<PathBuf>,
    max_hash_bytes: Option<u64>,
}

/// Parses and validates agent configuration text; reads the bootstrap bundle it names.
pub fn parse_agent_config(text: &str) -> anyhow::Result<AgentConfig> {
    let raw: RawAgentFile = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().lines().collect::<Vec<_>>().join(" ")))?;
    let a = raw.agent;
    let trust_domain = TrustDomain::parse(&a.trust_domain)
        .map_err(|e| anyhow::anyhow!("invalid agent.trust_domain `{}`: {e}", a.trust_domain))?;
    if a.server_address
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        anyhow::bail!(
            "invalid agent.server_address `{}`: expected host:port",
            a.server_address
        );
    }
    let bootstrap_roots = match &a.trust_bundle_path {
        Some(path) => {
            let text = read_config_file(path)?;
            let roots = sigil_keys::pem::decode_all("CERTIFICATE", &text)
                .map_err(|e| anyhow::anyhow!("invalid trust bundle {}: {e}", path.display()))?;
            if roots.is_empty() {
                anyhow::bail!("trust bundle {} holds no CERTIFICATE", path.display());
            }
            roots
        }
        None => Vec::new(),
    };
    let socket_path = a
        .socket_path
        .unwrap_or_else(|| a.data_dir.join("workload.sock"));
    Ok(AgentConfig {
        trust_domain,
        server_address: a.server_address,
        bootstrap_roots,
        join_token: a.join_token.filter(|t| !t.is_empty()),
        data_dir: a.data_dir,
        socket_path,
        max_hash_bytes: a.max_hash_bytes.unwrap_or(DEFAULT_MAX_HASH_BYTES),
        max_backoff: Duration::from_secs(30),
        tls: raw.tls.policy(),
    })
}

/// Runs the agent described by the TOML file at `config_path` until Ctrl-C or SIGTERM (a clean
/// stop), or until it fails on its own.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let text = read_config_file(config_path)?;
    let config = parse_agent_config(&text)
        .with_context(|| format!("invalid configuration {}", config_path.display()))?;
    let mut agent = sigil_agent::start(config, Arc::new(SystemClock))
        .await
        .context("cannot start the agent")?;
    eprintln!(
        "sigil agent {}: Workload API on unix://{}",
        agent.spiffe_id(),
        agent.socket_path().display()
    );
    let failed = tokio::select! {
        () = shutdown_signal() => None,
        r = agent.wait_any() => Some(r),
    };
    let stopped = agent.shutdown().await;
    failed.unwrap_or(stopped).context("agent stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBSTCB8KADAgECAgEBMAoGCCqGSM49BAMCMA0xCzAJBgNVBAMMAmNhMB4XDTI2MDEwMTAwMDAwMFoXDTI3MDEwMTAwMDAwMFowDTELMAkGA1UEAwwCY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/MAoGCCqGSM49BAMCA0gAMEUCIQAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn full_example_config_parses_with_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, ROOT_PEM).unwrap();
        let text = include_str!("../../../conf/agent.full.toml")
            .replace("/etc/sigil/bundle.pem", bundle.to_str().unwrap());
        let c = parse_agent_config(&text).unwrap();
        assert_eq!(c.trust_domain.as_str(), "example.org");
        assert_eq!(c.server_address, "127.0.0.1:8081");
        assert_eq!(c.bootstrap_roots.len(), 1);
        assert_eq!(c.join_token, None, "an empty join_token means none");
        assert_eq!(
            c.socket_path,
            PathBuf::from("/run/sigil/agent/workload.sock")
        );
        assert_eq!(c.max_hash_bytes, 268_435_456);
        assert!(c.tls.post_quantum);
        let off = parse_agent_config(&text.replace("post_quantum = true", "post_quantum = false"))
            .unwrap();
        assert!(!off.tls.post_quantum);
    }

    #[test]
    fn rejects_bad_address_missing_bundle_and_unknown_keys() {
        let base = "[agent]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n";
        let cases = [
            (
                format!("{base}server_address = \"nohost\"\n"),
                "server_address",
            ),
            (
                format!(
                    "{base}server_address = \"h:1\"\ntrust_bundle_path = \"/nonexistent/b.pem\"\n"
                ),
                "/nonexistent/b.pem",
            ),
            (
                format!("{base}server_address = \"h:1\"\nbogus = true\n"),
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", parse_agent_config(&text).unwrap_err());
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
