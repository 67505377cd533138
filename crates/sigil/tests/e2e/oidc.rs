//! The public listener seen by clients nobody here wrote, over HTTPS with a web PKI certificate
//! (profile `https_web`) made with openssl: relying parties that know only the issuer URL
//! validate a JWT-SVID through OIDC discovery (PyJWT's PyJWKClient, npm `jose` with
//! `createRemoteJWKSet`) and refuse a tampered, a wrongly addressed one; `curl` scrapes
//! `/metrics` and the `prometheus_client` parser reads it; `curl` reads the bundle endpoint.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::harness::*;

const AUDIENCE: &str = "https://relying-party.example";

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

/// A CA and a certificate for `localhost` / 127.0.0.1 under it, made with openssl: (CA file,
/// certificate file, key file).
pub(crate) fn web_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Test Web CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "web.key",
            "-out",
            "web.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("web.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n\
         keyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "web.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "web.ext",
            "-out",
            "web.pem",
        ],
    );
    std::fs::set_permissions(dir.join("web.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir.join("ca.pem"), dir.join("web.pem"), dir.join("web.key"))
}

pub(crate) fn node_dir() -> PathBuf {
    pyspiffe_dir().join("../node")
}

/// `verdict` of a relying-party script: its one JSON line.
fn verdict(o: &std::process::Output) -> Value {
    assert!(
        o.status.success(),
        "relying party failed: {}{}",
        stdout(o),
        stderr(o)
    );
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The token with its `sub` replaced: still well-formed, signed for other claims.
fn with_other_subject(token: &str) -> String {
    let mut parts = token.split('.');
    let (header, claims, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    claims["sub"] = Value::from("spiffe://example.org/someone-else");
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{header}.{claims}.{signature}")
}

fn curl(ca: &Path, url: &str) -> String {
    let o = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl must be installed");
    assert!(o.status.success(), "curl {url}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn relying_parties_validate_jwt_svids_through_discovery_alone() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let node_modules = node_dir().join("node_modules/jose");
    if !node_modules.exists() {
        missing_prerequisite(
            "interop/node/node_modules/jose is missing (run interop/node/setup.sh)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = web_pki(&tmp.path().join("pki"));
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let server = TestServer::start_with(
        &tmp.path().join("server"),
        &format!(
            "\n[public]\nbind_address = \"127.0.0.1:{port}\"\ntls = \"files\"\ncert_file = \"{}\"\n\
             key_file = \"{}\"\nissuer = \"{issuer}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    let spiffe_id = "spiffe://example.org/oidc/workload";
    create_uid_entry(&server, spiffe_id, &agent_id);
    fetch_svid_files(&paths.socket, &tmp.path().join("warmup"));
    let o = workload(&paths.socket, &["jwt", "fetch", "--audience", AUDIENCE]);
    assert!(o.status.success(), "jwt fetch: {}", stderr(&o));
    let jwt = stdout(&o).trim().to_owned();

    let pyjwt = |token: &str, audience: &str| {
        verdict(
            &Command::new(&python)
                .arg(pyspiffe_dir().join("oidc_verify.py"))
                .args([
                    "--issuer",
                    &issuer,
                    "--audience",
                    audience,
                    "--token",
                    token,
                ])
                .env("SSL_CERT_FILE", &ca)
                .output()
                .unwrap(),
        )
    };
    let jose = |token: &str, audience: &str| {
        verdict(
            &Command::new("node")
                .current_dir(node_dir())
                .arg("oidc_verify.mjs")
                .args([issuer.as_str(), audience, token])
                .env("NODE_EXTRA_CA_CERTS", &ca)
                .output()
                .expect("node must be installed"),
        )
    };
    for (client, check) in [
        ("PyJWT", &pyjwt as &dyn Fn(&str, &str) -> Value),
        ("jose", &jose),
    ] {
        let ok = check(&jwt, AUDIENCE);
        assert_eq!(ok["valid"], true, "{client}: {ok}");
        assert_eq!(ok["sub"], spiffe_id, "{client}: {ok}");
        let tampered = check(&with_other_subject(&jwt), AUDIENCE);
        assert_eq!(tampered["valid"], false, "{client}: {tampered}");
        let error = tampered["error"].as_str().unwrap();
        assert!(
            error.contains("Signature") || error.contains("SIGNATURE"),
            "{client}: a tampered token fails on its signature: {error}"
        );
        let elsewhere = check(&jwt, "https://another.example");
        assert_eq!(elsewhere["valid"], false, "{client}: {elsewhere}");
        let error = elsewhere["error"].as_str().unwrap();
        assert!(
            error.to_lowercase().contains("aud"),
            "{client}: another audience is refused as such: {error}"
        );
    }

    // Metrics: scraped by curl, read by the prometheus_client parser.
    let text = curl(&ca, &format!("{issuer}/metrics"));
    let mut parser = Command::new(&python)
        .arg(pyspiffe_dir().join("prometheus_parse.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut parser.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let parsed = verdict(&parser.wait_with_output().unwrap());
    let sample = |name: &str, kind: Option<&str>| {
        parsed["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name && kind.is_none_or(|k| s["labels"]["kind"] == k))
            .map(|s| s["value"].as_f64().unwrap())
    };
    assert!(
        sample("sigil_credentials_issued_total", Some("jwt_svid")).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        sample("sigil_credentials_issued_total", Some("x509_svid")).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample("sigil_agent_sync_streams", None),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample("sigil_entries", None), Some(1.0), "{text}");

    // The bundle endpoint (https_web): the trust bundle the server publishes.
    let bundle: Value = serde_json::from_str(&curl(&ca, &format!("{issuer}/bundle"))).unwrap();
    let server_bundle = tmp.path().join("bundle.pem");
    server.write_bundle(&server_bundle);
    let x5c: Vec<&str> = bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .map(|k| k["x5c"][0].as_str().unwrap())
        .collect();
    let roots = sigil_keys::pem::decode_all(
        "CERTIFICATE",
        &std::fs::read_to_string(&server_bundle).unwrap(),
    )
    .unwrap();
    assert_eq!(x5c.len(), roots.len());
    assert!(bundle["spiffe_sequence"].as_u64().unwrap() >= 1);
    // Errors are JSON in the OAuth format.
    let o = Command::new("curl")
        .args(["--silent", "--cacert"])
        .arg(&ca)
        .arg(format!("{issuer}/no-such-thing"))
        .output()
        .unwrap();
    let error: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(error["error"], "not_found");

    // Federation over https_web: another trust domain's server fetches this bundle endpoint,
    // trusting the web certificate through the system trust store (SSL_CERT_FILE names the test
    // CA, as an operator's trust store would hold a public one) ...
    let federate = format!(
        "\n[[federation]]\ntrust_domain = \"example.org\"\nowner = \"team-federation\"\n\
         bundle_endpoint_url = \"{issuer}/bundle\"\nprofile = \"https_web\"\n"
    );
    let peer = TestServer::start_in_domain_with_env(
        &tmp.path().join("peer"),
        "other.org",
        &federate,
        vec![("SSL_CERT_FILE".to_owned(), ca.display().to_string())],
    );
    let held = wait_for(
        std::time::Duration::from_secs(30),
        "example.org's bundle fetched over https_web",
        || {
            let o = peer.admin(&[
                "federation",
                "show",
                "--trust-domain",
                "example.org",
                "--output",
                "json",
            ]);
            let v: Value = serde_json::from_slice(&o.stdout).ok()?;
            v["bundle_sequence"].as_u64()
        },
    );
    assert_eq!(held, bundle["spiffe_sequence"].as_u64().unwrap());
    // ... and a server whose trust store lacks that CA refuses the endpoint.
    let wary = TestServer::start_in_domain_with_env(
        &tmp.path().join("wary"),
        "third.org",
        &federate,
        vec![(
            "SSL_CERT_FILE".to_owned(),
            tmp.path().join("pki").join("web.pem").display().to_string(),
        )],
    );
    let o = wary.admin(&["federation", "refresh", "--trust-domain", "example.org"]);
    assert_one_line_error(&o, "TLS");
    let o = wary.admin(&[
        "federation",
        "show",
        "--trust-domain",
        "example.org",
        "--output",
        "json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["bundle_sequence"].is_null(), "{v}");
}
