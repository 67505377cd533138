//! Workload-side commands that talk to the SPIFFE Workload API: `sigil svid fetch`,
//! `sigil jwt fetch`, `sigil jwt validate`.

use std::path::PathBuf;

use crate::OutputFormat;

/// `sigil svid fetch [--write DIR]`.
pub async fn svid_fetch(
    socket: Option<String>,
    write_dir: Option<PathBuf>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let _ = (socket, write_dir, output);
    anyhow::bail!("`sigil svid fetch` is not built yet")
}

/// `sigil jwt fetch --audience A [--spiffe-id ID]`.
pub async fn jwt_fetch(
    socket: Option<String>,
    audiences: Vec<String>,
    spiffe_id: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let _ = (socket, audiences, spiffe_id, output);
    anyhow::bail!("`sigil jwt fetch` is not built yet")
}

/// `sigil jwt validate --audience A --token T`.
pub async fn jwt_validate(
    socket: Option<String>,
    audience: String,
    token: String,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let _ = (socket, audience, token, output);
    anyhow::bail!("`sigil jwt validate` is not built yet")
}
