//! `sigil dev`: server and agent in one process on an embedded store in a state directory.

use std::path::PathBuf;

/// Options of `sigil dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// State directory (default `./.sigil`).
    pub state_dir: PathBuf,
    /// Trust domain (default `example.org`).
    pub trust_domain: String,
}

/// Runs dev mode until Ctrl-C/SIGTERM.
pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    anyhow::bail!("`sigil dev --state-dir {}` is not built yet", opts.state_dir.display())
}
