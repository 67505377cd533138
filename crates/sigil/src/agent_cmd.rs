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
/// Most server addresses an agent may list.
const MAX_SERVER_ADDRESSES: usize = 16;
/// Longest `host:port` accepted: a 253-byte DNS name (or a bracketed IPv6 address), `:`, a port.
const MAX_SERVER_ADDRESS_LEN: usize = 261;

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
    /// One server (the same as a list of one); exclusive with `server_addresses`.
    server_address: Option<String>,
    /// The servers (replicas of one trust domain), tried in order.
    server_addresses: Option<Vec<String>>,
    trust_bundle_path: Option<PathBuf>,
    join_token: Option<String>,
    data_dir: PathBuf,
    socket_path: Option<PathBuf>,
    max_hash_bytes: Option<u64>,
    /// How often workload usage is reported to the server (`60s`, `5m`, …).
    usage_report_interval: Option<String>,
}

/// Parses and validates agent configuration text; reads the bootstrap bundle it names.
pub fn parse_agent_config(text: &str) -> anyhow::Result<AgentConfig> {
    let raw: RawAgentFile = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().lines().collect::<Vec<_>>().join(" ")))?;
    let a = raw.agent;
    let trust_domain = TrustDomain::parse(&a.trust_domain)
        .map_err(|e| anyhow::anyhow!("invalid agent.trust_domain `{}`: {e}", a.trust_domain))?;
    let server_addresses = server_addresses(a.server_address, a.server_addresses)?;
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
    let usage_report_interval = match &a.usage_report_interval {
        Some(text) => sigil_spiffe::Ttl::parse(text)
            .map(|t| Duration::from_secs(t.as_secs()))
            .map_err(|e| anyhow::anyhow!("invalid agent.usage_report_interval `{text}`: {e}"))?,
        None => sigil_agent::usage::DEFAULT_USAGE_REPORT_INTERVAL,
    };
    Ok(AgentConfig {
        trust_domain,
        server_addresses,
        bootstrap_roots,
        join_token: a.join_token.filter(|t| !t.is_empty()),
        data_dir: a.data_dir,
        socket_path,
        max_hash_bytes: a.max_hash_bytes.unwrap_or(DEFAULT_MAX_HASH_BYTES),
        max_backoff: Duration::from_secs(30),
        tls: raw.tls.policy(),
        usage_report_interval,
    })
}

/// The agent's server addresses from `server_address` (a list of one) or `server_addresses`
/// (exactly one of them must be set): 1 to [`MAX_SERVER_ADDRESSES`] `host:port` entries, no
/// two the same (host compared without case).
fn server_addresses(
    single: Option<String>,
    list: Option<Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    let (key, addresses) = match (single, list) {
        (Some(one), None) => ("agent.server_address", vec![one]),
        (None, Some(list)) => ("agent.server_addresses", list),
        (Some(_), Some(_)) => anyhow::bail!(
            "agent.server_address and agent.server_addresses are both set: keep one \
             (server_addresses lists every server)"
        ),
        (None, None) => anyhow::bail!(
            "missing agent.server_addresses (a list of host:port) or agent.server_address"
        ),
    };
    if addresses.is_empty() {
        anyhow::bail!("{key} is empty: list 1 to {MAX_SERVER_ADDRESSES} host:port");
    }
    if addresses.len() > MAX_SERVER_ADDRESSES {
        anyhow::bail!(
            "{key} lists {} addresses: at most {MAX_SERVER_ADDRESSES}",
            addresses.len()
        );
    }
    let mut seen = std::collections::HashSet::with_capacity(addresses.len());
    for addr in &addresses {
        let shown = addr
            .chars()
            .take(MAX_SERVER_ADDRESS_LEN)
            .collect::<String>();
        let valid = addr.len() <= MAX_SERVER_ADDRESS_LEN
            && addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            anyhow::bail!("invalid {key} entry `{shown}`: expected host:port");
        }
        if !seen.insert(addr.to_ascii_lowercase()) {
            anyhow::bail!("{key} lists `{shown}` twice");
        }
    }
    Ok(addresses)
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
        assert_eq!(c.server_addresses, ["127.0.0.1:8081"]);
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

    const BASE: &str = "[agent]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n";

    fn addresses_of(lines: &str) -> anyhow::Result<Vec<String>> {
        parse_agent_config(&format!("{BASE}{lines}")).map(|c| c.server_addresses)
    }

    fn error_of(lines: &str) -> String {
        let err = format!("{:#}", addresses_of(lines).unwrap_err());
        assert_eq!(err.lines().count(), 1, "{err:?}");
        err
    }

    #[test]
    fn server_address_is_a_list_of_one() {
        assert_eq!(
            addresses_of("server_address = \"s1.example:8081\"\n").unwrap(),
            ["s1.example:8081"]
        );
    }

    #[test]
    fn server_addresses_are_kept_in_order() {
        let list = addresses_of(
            "server_addresses = [\"s2.example:8081\", \"10.0.0.1:8081\", \"[::1]:8081\"]\n",
        )
        .unwrap();
        assert_eq!(list, ["s2.example:8081", "10.0.0.1:8081", "[::1]:8081"]);
    }

    #[test]
    fn sixteen_server_addresses_are_accepted_and_seventeen_refused() {
        let list = |n: u16| {
            let entries: Vec<String> = (1..=n).map(|p| format!("\"h:{p}\"")).collect();
            format!("server_addresses = [{}]\n", entries.join(", "))
        };
        assert_eq!(addresses_of(&list(16)).unwrap().len(), 16);
        let err = error_of(&list(17));
        assert!(
            err.contains("server_addresses") && err.contains("17") && err.contains("16"),
            "{err}"
        );
    }

    #[test]
    fn both_address_forms_together_are_refused() {
        let err = error_of("server_address = \"a:1\"\nserver_addresses = [\"b:1\"]\n");
        assert!(err.contains("both set"), "{err}");
    }

    #[test]
    fn a_config_without_any_server_address_is_refused() {
        let err = error_of("");
        assert!(err.contains("missing agent.server_addresses"), "{err}");
        let err = error_of("server_addresses = []\n");
        assert!(err.contains("server_addresses is empty"), "{err}");
    }

    #[test]
    fn a_duplicate_server_address_is_refused() {
        let err = error_of("server_addresses = [\"a:1\", \"b:1\", \"A:1\"]\n");
        assert!(err.contains("`A:1` twice"), "{err}");
        // The same host on another port is another server.
        assert_eq!(
            addresses_of("server_addresses = [\"a:1\", \"a:2\"]\n").unwrap(),
            ["a:1", "a:2"]
        );
    }

    #[test]
    fn a_bad_server_addresses_entry_is_refused_by_name() {
        for bad in ["nohost", "h:99999", ":8081", "h:", "h:port"] {
            let err = error_of(&format!("server_addresses = [\"a:1\", \"{bad}\"]\n"));
            assert!(
                err.contains(&format!("invalid agent.server_addresses entry `{bad}`")),
                "{err}"
            );
        }
        let long = format!("{}:1", "h".repeat(MAX_SERVER_ADDRESS_LEN));
        let err = error_of(&format!("server_addresses = [\"{long}\"]\n"));
        assert!(
            err.contains("invalid agent.server_addresses entry"),
            "{err}"
        );
        assert!(
            err.len() < 2 * MAX_SERVER_ADDRESS_LEN,
            "the entry is shown cut: {err}"
        );
        let err = error_of("server_address = \"h:0x50\"\n");
        assert!(
            err.contains("invalid agent.server_address entry `h:0x50`"),
            "{err}"
        );
        let err = error_of("server_addresses = \"a:1\"\n");
        assert!(err.contains("server_addresses"), "not a list: {err}");
    }
}
