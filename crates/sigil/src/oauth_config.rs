//! `[oauth]` of the server file: token exchange on the public listener. Raw TOML is validated
//! when the file is parsed (templates, algorithms, TTLs); the files it names (JWK Sets, CA
//! certificates) are read at start. Which tokens may be exchanged, and for what, the Cedar
//! policies decide (action `Exchange`); the `condition` key of the retired condition language is
//! refused with a pointer to them.
//!
//! ```toml
//! [oauth]
//! access_token_ttl = "5m"          # longest access token issued
//! jwt_svid_ttl = "5m"              # longest JWT-SVID issued by exchange
//! max_delegation_depth = 4
//! scopes = ["read", "deploy"]      # what this trust domain's identities may be granted
//! audiences = ["https://api.example.org"]   # optional: the only targets tokens are issued for
//!
//! [[oauth.issuer]]                 # an external OIDC issuer (CI, Kubernetes, a cloud)
//! issuer = "https://token.actions.githubusercontent.com"
//! owner = "platform-team"          # required: who is accountable for trusting this issuer
//! # keys: OIDC discovery by default, or jwks_uri = "https://…", or jwks_file = "/path.json"
//! audiences = ["https://sigil.example.org"]
//! max_token_age = "10m"
//! algorithms = ["RS256"]           # default: RS256, PS256, ES256, ES384, EdDSA
//! attributes = { owner_id = "repository_owner_id", repo_id = "repository_id", ref = "ref" }
//! spiffe_id = "spiffe://example.org/ci/{owner_id}/{repo_id}"
//! scopes = ["deploy"]
//! key_refresh_interval = "30s"     # an unknown kid refetches keys at most this often
//!
//! [[oauth.federated]]              # a federated trust domain whose JWT-SVIDs are accepted
//! trust_domain = "partner.example"
//! spiffe_id = "spiffe://example.org/partner/{path}"   # optional
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;
use sigil_keys::jose::{JwsAlgorithm, KeySet};
use sigil_server::oauth::mapping::{AttributeMapping, SpiffeIdTemplate};
use sigil_server::oauth::{ExternalIssuerConfig, FederatedSubjects, KeySource, OAuthConfig};
use sigil_spiffe::{TrustDomain, Ttl};

/// Longest lifetime an operator may give issued tokens.
const MAX_ISSUED_TTL_SECS: u64 = 24 * 3600;
/// Most external issuers.
const MAX_ISSUERS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth {
    #[serde(default = "default_ttl")]
    access_token_ttl: String,
    #[serde(default = "default_ttl")]
    jwt_svid_ttl: String,
    #[serde(default = "default_depth")]
    max_delegation_depth: usize,
    #[serde(default)]
    scopes: Vec<String>,
    audiences: Option<Vec<String>>,
    #[serde(default)]
    issuer: Vec<RawIssuer>,
    #[serde(default)]
    federated: Vec<RawFederated>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    /// The team or contact accountable for trusting the issuer (required; `Option` so that its
    /// absence gets an error naming the issuer).
    owner: Option<String>,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    audiences: Vec<String>,
    max_token_age: Option<String>,
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
    spiffe_id: String,
    /// Refused (the retired condition language); read only to say what replaced it.
    condition: Option<serde::de::IgnoredAny>,
    scopes: Option<Vec<String>>,
    /// Shortest time between two fetches of its keys (an unknown `kid` fetches them again).
    key_refresh_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederated {
    trust_domain: String,
    spiffe_id: Option<String>,
    /// Refused, as in [`RawIssuer`].
    condition: Option<serde::de::IgnoredAny>,
    scopes: Option<Vec<String>>,
}

/// Refuses a `condition` key in table `table`: Cedar policies replaced the condition language.
fn refuse_condition(table: &str, condition: Option<serde::de::IgnoredAny>) -> anyhow::Result<()> {
    if condition.is_some() {
        bail!(
            "{table} condition: the condition language was replaced by Cedar policies; remove \
             it and restrict action Exchange in the [policy] dir instead, e.g. `forbid (principal \
             is Sigil::ExternalSubject, action == Sigil::Action::\"Exchange\", resource) unless \
             {{ principal.attributes.contains(\"ref=refs/heads/main\") }};` over the issuer's \
             mapped attributes (see policies/examples/ci-exchange-main-branch)"
        );
    }
    Ok(())
}

fn default_ttl() -> String {
    "5m".into()
}
fn default_depth() -> usize {
    4
}

/// `[oauth]`, validated; its files still to be read.
#[derive(Debug, Clone)]
pub struct OAuthFiles {
    config: OAuthConfig,
    /// Per issuer (same order): its JWK Set file and its CA file.
    files: Vec<(Option<PathBuf>, Option<PathBuf>)>,
}

fn issued_ttl(field: &str, value: &str) -> anyhow::Result<u64> {
    let secs = Ttl::parse(value)
        .map(Ttl::as_secs)
        .map_err(|e| anyhow::anyhow!("invalid {field} `{value}`: {e}"))?;
    if secs > MAX_ISSUED_TTL_SECS {
        bail!("{field} `{value}` is longer than 24h");
    }
    Ok(secs)
}

fn https_url(field: &str, url: &str) -> anyhow::Result<()> {
    let shown = || url.chars().take(100).collect::<String>();
    let Some(rest) = url.strip_prefix("https://") else {
        bail!("invalid {field} `{}`: an https:// URL is required", shown());
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['#', ' ']) {
        bail!("invalid {field} `{}`", shown());
    }
    Ok(())
}

impl OAuthFiles {
    pub(crate) fn from_raw(raw: RawOAuth, own: &TrustDomain) -> anyhow::Result<Self> {
        if raw.max_delegation_depth == 0 || raw.max_delegation_depth > 16 {
            bail!("oauth.max_delegation_depth must be 1 to 16");
        }
        if raw.issuer.len() > MAX_ISSUERS {
            bail!("more than {MAX_ISSUERS} oauth.issuer tables");
        }
        let mut issuers = Vec::new();
        let mut files = Vec::new();
        for raw_issuer in raw.issuer {
            let name = raw_issuer.issuer.clone();
            let field = |f: &str| format!("oauth.issuer `{name}` {f}");
            refuse_condition(&format!("oauth.issuer `{name}`"), raw_issuer.condition)?;
            https_url("oauth.issuer.issuer", &raw_issuer.issuer)?;
            if issuers
                .iter()
                .any(|i: &ExternalIssuerConfig| i.issuer == raw_issuer.issuer)
            {
                bail!("oauth.issuer `{name}` is configured twice");
            }
            let owner = crate::server_cmd::required_owner(
                raw_issuer.owner,
                &format!("oauth.issuer `{name}`"),
            )?;
            let keys = match (&raw_issuer.jwks_uri, &raw_issuer.jwks_file) {
                (Some(_), Some(_)) => {
                    bail!("{}: give jwks_uri or jwks_file, not both", field("keys"))
                }
                (Some(uri), None) => {
                    https_url(&field("jwks_uri"), uri)?;
                    KeySource::JwksUri(uri.clone())
                }
                // Filled in when the file is read at start.
                (None, Some(_)) => KeySource::Static(KeySet::default()),
                (None, None) => KeySource::Discovery,
            };
            if raw_issuer.audiences.is_empty() || raw_issuer.audiences.iter().any(String::is_empty)
            {
                bail!("{} must name at least one audience", field("audiences"));
            }
            let algorithms = match &raw_issuer.algorithms {
                None => JwsAlgorithm::ALL.to_vec(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        JwsAlgorithm::parse(n).ok_or_else(|| {
                            anyhow::anyhow!(
                                "{}: `{n}` is not accepted (RS256, PS256, ES256, ES384, EdDSA)",
                                field("algorithms")
                            )
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            };
            if algorithms.is_empty() {
                bail!("{} is empty", field("algorithms"));
            }
            let max_token_age = raw_issuer
                .max_token_age
                .as_deref()
                .map(|v| {
                    Ttl::parse(v).map(Ttl::as_secs).map_err(|e| {
                        anyhow::anyhow!("invalid {} `{v}`: {e}", field("max_token_age"))
                    })
                })
                .transpose()?;
            let attributes = AttributeMapping::new(raw_issuer.attributes.clone())
                .map_err(|e| anyhow::anyhow!("{}: {e}", field("attributes")))?;
            let spiffe_id = SpiffeIdTemplate::parse(&raw_issuer.spiffe_id, own)
                .map_err(|e| anyhow::anyhow!("{}: {e}", field("spiffe_id")))?;
            let refresh_interval = match raw_issuer.key_refresh_interval.as_deref() {
                None => sigil_server::oauth::external::DEFAULT_REFRESH_INTERVAL,
                Some(v) => std::time::Duration::from_secs(
                    Ttl::parse(v)
                        .map(Ttl::as_secs)
                        .map_err(|e| {
                            anyhow::anyhow!("invalid {} `{v}`: {e}", field("key_refresh_interval"))
                        })?
                        .max(1),
                ),
            };
            issuers.push(ExternalIssuerConfig {
                issuer: raw_issuer.issuer,
                owner,
                keys,
                roots: None,
                audiences: raw_issuer.audiences,
                max_token_age,
                algorithms,
                attributes,
                spiffe_id,
                scopes: raw_issuer.scopes,
                refresh_interval,
            });
            files.push((raw_issuer.jwks_file, raw_issuer.ca_file));
        }
        let mut federated = Vec::new();
        for raw_fed in raw.federated {
            refuse_condition(
                &format!("oauth.federated `{}`", raw_fed.trust_domain),
                raw_fed.condition,
            )?;
            let td = TrustDomain::parse(&raw_fed.trust_domain).map_err(|e| {
                anyhow::anyhow!(
                    "invalid oauth.federated.trust_domain `{}`: {e}",
                    raw_fed.trust_domain
                )
            })?;
            if td == *own {
                bail!("oauth.federated.trust_domain `{td}` is this server's own trust domain");
            }
            let field = |f: &str| format!("oauth.federated `{td}` {f}");
            federated.push(FederatedSubjects {
                spiffe_id: raw_fed
                    .spiffe_id
                    .as_deref()
                    .map(|t| SpiffeIdTemplate::parse(t, own))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", field("spiffe_id")))?,
                scopes: raw_fed.scopes,
                trust_domain: td,
            });
        }
        Ok(Self {
            config: OAuthConfig {
                access_token_ttl: issued_ttl("oauth.access_token_ttl", &raw.access_token_ttl)?,
                jwt_svid_ttl: issued_ttl("oauth.jwt_svid_ttl", &raw.jwt_svid_ttl)?,
                max_delegation_depth: raw.max_delegation_depth,
                scopes: raw.scopes,
                audiences: raw.audiences,
                issuers,
                federated,
            },
            files,
        })
    }

    /// The configuration with its files read: JWK Sets (which must hold at least one usable
    /// key) and CA certificates.
    pub(crate) fn load(&self) -> anyhow::Result<OAuthConfig> {
        let mut config = self.config.clone();
        for (issuer, (jwks_file, ca_file)) in config.issuers.iter_mut().zip(&self.files) {
            if let Some(path) = jwks_file {
                let text = crate::pem_files::read_bounded(path, "oauth.issuer.jwks_file")?;
                let keys = KeySet::parse(text.as_bytes()).with_context(|| {
                    format!(
                        "oauth.issuer.jwks_file {} of `{}`",
                        path.display(),
                        issuer.issuer
                    )
                })?;
                if keys.is_empty() {
                    bail!(
                        "oauth.issuer.jwks_file {} of `{}` holds no usable signing key",
                        path.display(),
                        issuer.issuer
                    );
                }
                issuer.keys = KeySource::Static(keys);
            }
            if let Some(path) = ca_file {
                issuer.roots = Some(crate::pem_files::certificates(
                    path,
                    "oauth.issuer.ca_file",
                )?);
            }
        }
        Ok(config)
    }
}
