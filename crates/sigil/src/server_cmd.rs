//! `sigil server run`: loads the server configuration and runs the server until Ctrl-C/SIGTERM.

use std::path::Path;

/// Runs the server described by the TOML file at `config_path`.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    anyhow::bail!("`sigil server run -c {}` is not built yet", config_path.display())
}
