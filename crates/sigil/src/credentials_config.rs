//! `[credentials]` of the server configuration: the password rules and the
//! `[[credentials.targets]]` (each with its `[[credentials.targets.roles]]`) whose short-lived
//! users the server creates for workloads. Each target is checked here as the server will use it,
//! so a bad one stops start-up with the target and field named.

use anyhow::Context as _;
use serde::Deserialize;
use sigil_api::TargetSpec;
use sigil_server::credentials::CredentialsConfig;
use sigil_server::credentials::password::PasswordPolicy;
use sigil_server::credentials::targets::{Target, TargetSource};

/// Most targets in the configuration file.
const MAX_TARGETS: usize = 64;

/// `[credentials]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    /// Length of generated passwords (16 to 128; default 32).
    password_length: Option<usize>,
    /// Characters generated passwords are drawn from (at least 16 distinct printable ASCII
    /// characters, none of ' " \ ` $ ; or space).
    password_alphabet: Option<String>,
    #[serde(default)]
    targets: Vec<TargetSpec>,
}

impl RawCredentials {
    pub(crate) fn into_config(self) -> anyhow::Result<CredentialsConfig> {
        let default = PasswordPolicy::default();
        let password = PasswordPolicy::new(
            self.password_length.unwrap_or_else(|| default.length()),
            self.password_alphabet
                .as_deref()
                .unwrap_or_else(|| default.alphabet()),
        )
        .context("credentials.password_length / password_alphabet")?;
        if self.targets.len() > MAX_TARGETS {
            anyhow::bail!("credentials.targets: at most {MAX_TARGETS} targets");
        }
        for (i, spec) in self.targets.iter().enumerate() {
            Target::from_spec(spec.clone(), TargetSource::Config, 0)
                .with_context(|| format!("credentials.targets[{i}]"))?;
        }
        Ok(CredentialsConfig {
            targets: self.targets,
            password,
        })
    }
}
