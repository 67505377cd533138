//! Workload-side commands that talk to the SPIFFE Workload API: `sigil svid fetch`,
//! `sigil jwt fetch`, `sigil jwt validate`. They use the socket named by `--socket` or
//! `SPIFFE_ENDPOINT_SOCKET` (`unix:///path`), exactly like any other SPIFFE client.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sigil_proto::workload as wl;
use sigil_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use x509_parser::prelude::FromDer;

use crate::OutputFormat;

/// Longest DER chain we split, in certificates.
const MAX_CHAIN: usize = 16;

/// The socket path from `--socket` or `SPIFFE_ENDPOINT_SOCKET`.
fn socket_path(socket: Option<String>) -> anyhow::Result<PathBuf> {
    let raw = match socket.or_else(|| std::env::var("SPIFFE_ENDPOINT_SOCKET").ok()) {
        Some(s) if !s.is_empty() => s,
        _ => bail!("no Workload API socket: set SPIFFE_ENDPOINT_SOCKET or pass --socket"),
    };
    let path = if let Some(rest) = raw.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = raw.strip_prefix("unix:") {
        rest
    } else if raw.contains("://") {
        bail!("unsupported Workload API address `{raw}` (expected unix:///path)");
    } else {
        raw.as_str()
    };
    if !path.starts_with('/') {
        bail!("Workload API socket `{raw}` must be an absolute unix:///path");
    }
    Ok(PathBuf::from(path))
}

async fn connect(socket: Option<String>) -> anyhow::Result<SpiffeWorkloadApiClient<Channel>> {
    let channel = agent_channel(socket).await?;
    Ok(SpiffeWorkloadApiClient::new(channel).max_decoding_message_size(16 * 1024 * 1024))
}

/// A gRPC channel to the agent's socket from `--socket` or `SPIFFE_ENDPOINT_SOCKET`: the
/// Workload API and Sigil's own services on it (`sigil creds fetch`).
pub(crate) async fn agent_channel(socket: Option<String>) -> anyhow::Result<Channel> {
    let path = socket_path(socket)?;
    let target = path.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let target = target.clone();
        async move {
            let stream = UnixStream::connect(&target).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_else(|| e.to_string());
            anyhow::anyhow!(
                "cannot reach the Workload API at unix://{}: {cause} (is the agent running?)",
                path.display()
            )
        })
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        sigil_proto::WORKLOAD_API_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

fn status_error(what: &str, s: &tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::PermissionDenied => anyhow::anyhow!(
            "{what}: permission denied: {} (no registration entry matches this process)",
            s.message()
        ),
        code => anyhow::anyhow!("{what}: {code:?}: {}", s.message()),
    }
}

/// Splits concatenated DER certificates.
pub(crate) fn split_der_chain(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if out.len() >= MAX_CHAIN {
            bail!("certificate chain is longer than {MAX_CHAIN} certificates");
        }
        let (tail, _) = x509_parser::certificate::X509Certificate::from_der(rest)
            .map_err(|e| anyhow::anyhow!("the Workload API returned a bad certificate: {e}"))?;
        let used = rest.len() - tail.len();
        out.push(rest.get(..used).unwrap_or_default().to_vec());
        rest = tail;
    }
    Ok(out)
}

fn not_after(der: &[u8]) -> String {
    x509_parser::certificate::X509Certificate::from_der(der)
        .map(|(_, c)| c.validity().not_after.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Writes a certificate or bundle file with mode 0644 the way the key is written: a new file
/// created exclusively in `path`'s directory, then renamed over `path`, so a symlink or another
/// user's file planted there is replaced, never written through.
fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    sigil_keys::files::write_public_file(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// This workload's X509-SVIDs (with their private keys) and bundles: the first message of the
/// Workload API's `FetchX509SVID` stream. Fails with one line when the socket cannot be reached,
/// the agent refuses, or the stream ends without a message.
pub(crate) async fn fetch_x509_svids(
    socket: Option<String>,
) -> anyhow::Result<wl::X509svidResponse> {
    let mut client = connect(socket).await?;
    let mut stream = client
        .fetch_x509svid(request(wl::X509svidRequest {}))
        .await
        .map_err(|s| status_error("cannot fetch X509-SVIDs", &s))?
        .into_inner();
    stream
        .message()
        .await
        .map_err(|s| status_error("cannot fetch X509-SVIDs", &s))?
        .context("the Workload API closed the stream without an answer")
}

/// JWT-SVIDs for `audiences` (of the identity `spiffe_id`, or every identity of this workload),
/// from the Workload API's `FetchJWTSVID`. Fails with one line when the socket cannot be reached
/// or the agent refuses.
pub(crate) async fn fetch_jwt_svids(
    socket: Option<String>,
    audiences: Vec<String>,
    spiffe_id: Option<String>,
) -> anyhow::Result<wl::JwtsvidResponse> {
    let mut client = connect(socket).await?;
    Ok(client
        .fetch_jwtsvid(request(wl::JwtsvidRequest {
            audience: audiences,
            spiffe_id: spiffe_id.unwrap_or_default(),
        }))
        .await
        .map_err(|s| status_error("cannot fetch a JWT-SVID", &s))?
        .into_inner())
}

/// `sigil svid fetch [--write DIR]`.
///
/// With `--write`, `svid.pem` and `bundle.pem` (0644) and `svid.key` (0600) are each written to a
/// fresh file and renamed into `DIR`, and `federated_bundle.pem` (0644) with the X.509
/// authorities of every trust domain the SVID federates with, when there are any. Each file is
/// written to a
/// fresh file and renamed into `DIR`: whatever another user planted under those names (a symlink,
/// a pre-created file) is replaced, never written through. `DIR` itself is used as given, like
/// SPIRE's `api fetch -write`: the caller chose it (see SECURITY.md, "Disk").
pub async fn svid_fetch(
    socket: Option<String>,
    write_dir: Option<PathBuf>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let resp = fetch_x509_svids(socket).await?;
    let Some(first) = resp.svids.first() else {
        bail!("the Workload API returned no X509-SVID");
    };
    // The federated trust domains' authorities, in trust-domain order.
    let mut federated: Vec<(&String, Vec<Vec<u8>>)> = Vec::new();
    for (td, der) in &resp.federated_bundles {
        federated.push((td, split_der_chain(der)?));
    }
    federated.sort_by(|a, b| a.0.cmp(b.0));
    let federated_pem = sigil_keys::pem::encode_many(
        "CERTIFICATE",
        federated
            .iter()
            .flat_map(|(_, certs)| certs.iter().map(Vec::as_slice)),
    );
    let mut report = Vec::new();
    for svid in &resp.svids {
        let chain = split_der_chain(&svid.x509_svid)?;
        let bundle = split_der_chain(&svid.bundle)?;
        report.push((svid, chain, bundle));
    }
    if let Some(dir) = &write_dir {
        let chain = split_der_chain(&first.x509_svid)?;
        let bundle = split_der_chain(&first.bundle)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let key = sigil_keys::pem::encode_secret("PRIVATE KEY", &first.x509_svid_key);
        sigil_keys::files::write_private_file(&dir.join("svid.key"), key.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join("svid.key").display()))?;
        write_public(
            &dir.join("svid.pem"),
            &sigil_keys::pem::encode_many("CERTIFICATE", chain.iter().map(Vec::as_slice)),
        )?;
        write_public(
            &dir.join("bundle.pem"),
            &sigil_keys::pem::encode_many("CERTIFICATE", bundle.iter().map(Vec::as_slice)),
        )?;
        if !federated.is_empty() {
            write_public(&dir.join("federated_bundle.pem"), &federated_pem)?;
        }
    }
    match output {
        OutputFormat::Json => {
            let svids: Vec<Value> = report
                .iter()
                .map(|(svid, chain, bundle)| {
                    json!({
                        "spiffe_id": svid.spiffe_id,
                        "hint": svid.hint,
                        "expires_at": chain.first().map(|c| not_after(c)),
                        "cert_chain_pem": sigil_keys::pem::encode_many("CERTIFICATE", chain.iter().map(Vec::as_slice)),
                        "bundle_pem": sigil_keys::pem::encode_many("CERTIFICATE", bundle.iter().map(Vec::as_slice)),
                    })
                })
                .collect();
            let federated: serde_json::Map<String, Value> = federated
                .iter()
                .map(|(td, certs)| {
                    (
                        (*td).clone(),
                        Value::from(sigil_keys::pem::encode_many(
                            "CERTIFICATE",
                            certs.iter().map(Vec::as_slice),
                        )),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({ "svids": svids, "federated_bundles": federated })
                )?
            );
        }
        OutputFormat::Text => {
            for (i, (svid, chain, bundle)) in report.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("SPIFFE ID        : {}", svid.spiffe_id);
                if !svid.hint.is_empty() {
                    println!("Hint             : {}", svid.hint);
                }
                println!(
                    "SVID valid until : {}",
                    chain.first().map(|c| not_after(c)).unwrap_or_default()
                );
                println!("Chain length     : {}", chain.len());
                println!("Bundle CAs       : {}", bundle.len());
            }
            if let Some(dir) = &write_dir {
                println!(
                    "Wrote {}/svid.pem, svid.key (mode 0600) and bundle.pem",
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// `sigil jwt fetch --audience A [--spiffe-id ID]`.
pub async fn jwt_fetch(
    socket: Option<String>,
    audiences: Vec<String>,
    spiffe_id: Option<String>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    if audiences.is_empty() {
        bail!("at least one --audience is required");
    }
    let resp = fetch_jwt_svids(socket, audiences, spiffe_id).await?;
    match output {
        OutputFormat::Json => {
            let svids: Vec<Value> = resp
                .svids
                .iter()
                .map(|s| json!({"spiffe_id": s.spiffe_id, "hint": s.hint, "token": s.svid}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "svids": svids }))?
            );
        }
        OutputFormat::Text => {
            for s in &resp.svids {
                println!("{}", s.svid);
            }
        }
    }
    Ok(())
}

/// Converts a protobuf Struct to JSON.
fn struct_to_json(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "checked integral and in range"
                )]
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

/// `sigil jwt validate --audience A --token T`.
pub async fn jwt_validate(
    socket: Option<String>,
    audience: String,
    token: String,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let mut client = connect(socket).await?;
    let resp = client
        .validate_jwtsvid(request(wl::ValidateJwtsvidRequest {
            audience,
            svid: token.trim().to_owned(),
        }))
        .await
        .map_err(|s| status_error("the JWT-SVID is not valid", &s))?
        .into_inner();
    let claims = resp
        .claims
        .as_ref()
        .map(struct_to_json)
        .unwrap_or(Value::Null);
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"spiffe_id": resp.spiffe_id, "claims": claims}))?
        ),
        OutputFormat::Text => {
            println!("SPIFFE ID : {}", resp.spiffe_id);
            println!("Claims    : {claims}");
        }
    }
    Ok(())
}
