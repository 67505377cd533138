//! `sigil agent run`: loads the agent configuration and runs the agent until Ctrl-C/SIGTERM.

use std::path::Path;

/// Runs the agent described by the TOML file at `config_path`.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    anyhow::bail!("`sigil agent run -c {}` is not built yet", config_path.display())
}
