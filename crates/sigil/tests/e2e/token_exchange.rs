//! Token exchange with real processes and clients nobody here wrote: a test OIDC issuer
//! (`interop/python/oidc_issuer.py`: PyJWT and cryptography, its own RS256 and ES256 keys, a
//! discovery document over HTTPS) mints CI-style tokens that the server, which found the
//! issuer's keys through discovery, exchanges for the mapped SPIFFE ID only when its Cedar policy
//! allows (the main branch). Authlib exchanges them authenticating with a JWT-SVID fetched through py-spiffe, and
//! introspects and revokes what it got; openid-client exchanges a JWT-SVID authenticating with
//! the X509-SVID over mutual TLS; `sigil exchange` does both from the command line.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::harness::*;
use crate::oidc::{node_dir, web_pki};

const CLIENT_ID: &str = "spiffe://example.org/exchange/client";

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The one JSON line a client script printed, and its exit status.
fn answer(o: &Output) -> (i32, Value) {
    let line = stdout(o);
    let value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("{e}: stdout {line} stderr {}", stderr(o)));
    (o.status.code().unwrap_or(-1), value)
}

struct Issuer {
    python: PathBuf,
    keys: PathBuf,
}

impl Issuer {
    fn mint(&self, alg: &str, claims: &Value) -> String {
        let o = Command::new(&self.python)
            .arg(pyspiffe_dir().join("oidc_issuer.py"))
            .args(["mint", "--keys-dir"])
            .arg(&self.keys)
            .args(["--alg", alg, "--claims", &claims.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "mint: {}", stderr(&o));
        stdout(&o).trim().to_owned()
    }
}

#[test]
fn third_party_clients_exchange_tokens() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    if !node_dir().join("node_modules/openid-client").exists() {
        missing_prerequisite(
            "interop/node/node_modules/openid-client is missing (run interop/node/setup.sh)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = web_pki(&tmp.path().join("pki"));

    // The test OIDC issuer.
    let ci_port = free_port();
    let ci_issuer = format!("https://localhost:{ci_port}");
    let keys = tmp.path().join("ci-keys");
    let mut fixture = std::process::Command::new(&python)
        .arg(pyspiffe_dir().join("oidc_issuer.py"))
        .args([
            "serve",
            "--issuer",
            &ci_issuer,
            "--port",
            &ci_port.to_string(),
        ])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--keys-dir")
        .arg(&keys)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(fixture.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let ci = Issuer {
        python: python.clone(),
        keys: keys.clone(),
    };

    // The server: public listener with the web certificate, token exchange trusting the CI
    // issuer through discovery, with its CA; a policy that permits everything but exchanges a
    // CI token only when its mapped `git_ref` is the main branch.
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("exchange.cedar"),
        "@id(\"all\")\npermit (principal, action, resource);\n\n\
         @id(\"ci-main-only\")\n\
         forbid (principal is Sigil::ExternalSubject, action == Sigil::Action::\"Exchange\", resource)\n\
         unless { principal.attributes.contains(\"git_ref=refs/heads/main\") };\n",
    )
    .unwrap();
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let server = TestServer::start_with(
        &tmp.path().join("server"),
        &format!(
            "\n[public]\nbind_address = \"127.0.0.1:{port}\"\ntls = \"files\"\ncert_file = \"{cert}\"\n\
             key_file = \"{key}\"\nissuer = \"{issuer}\"\n\
             [oauth]\nscopes = [\"read\"]\n\
             [[oauth.issuer]]\nissuer = \"{ci_issuer}\"\nowner = \"team-ci\"\nca_file = \"{ca}\"\naudiences = [\"{issuer}\"]\n\
             max_token_age = \"10m\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
             attributes = {{ owner_id = \"repository_owner_id\", repo_id = \"repository_id\", git_ref = \"ref\" }}\n\
             spiffe_id = \"spiffe://example.org/ci/{{owner_id}}/{{repo_id}}\"\n\
             scopes = [\"deploy\"]\nkey_refresh_interval = \"5s\"\n\
             [policy]\ndir = \"{policies}\"\n",
            cert = cert.display(),
            key = key.display(),
            ca = ca.display(),
            policies = policies.display(),
        ),
    );
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    create_uid_entry(&server, CLIENT_ID, &agent_id);
    let svid_dir = tmp.path().join("svid");
    let o = fetch_svid_files(&paths.socket, &svid_dir);
    assert!(o.status.success(), "svid fetch: {}", stderr(&o));

    let now = unix_now();
    let ci_claims = |git_ref: &str| {
        json!({
            "iss": ci_issuer, "aud": issuer, "sub": "repo:acme/app:ref:refs/heads/main",
            "repository_owner_id": "1001", "repository_id": "2002", "ref": git_ref,
            "iat": now, "exp": now + 300,
        })
    };
    let token_file = |name: &str, token: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, token).unwrap();
        path
    };
    let authlib = |args: &[&str]| -> (i32, Value) {
        answer(
            &Command::new(&python)
                .arg(pyspiffe_dir().join("authlib_exchange.py"))
                .args(["--issuer", &issuer, "--ca"])
                .arg(&ca)
                .args(args)
                .env(
                    "SPIFFE_ENDPOINT_SOCKET",
                    format!("unix://{}", paths.socket.display()),
                )
                .output()
                .unwrap(),
        )
    };

    // Authlib, client authenticated by a JWT-SVID from py-spiffe: CI tokens of both algorithms.
    let mut issued = Vec::new();
    for alg in ["RS256", "ES256"] {
        let subject = token_file(
            &format!("ci-{alg}"),
            &ci.mint(alg, &ci_claims("refs/heads/main")),
        );
        let (code, body) = wait_for(Duration::from_secs(20), "the CI issuer's keys", || {
            let got = authlib(&[
                "--subject-token-file",
                subject.to_str().unwrap(),
                "--audience",
                "https://api.example",
                "--scope",
                "deploy",
                "--client-auth",
                "jwt-svid",
            ]);
            // The first exchange may race the server's first key fetch.
            (got.0 != 3 || !got.1.to_string().contains("cannot fetch")).then_some(got)
        });
        assert_eq!(code, 0, "{alg}: {body}");
        assert_eq!(body["token_type"], "Bearer", "{alg}: {body}");
        let claims = claims_of(body["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], "spiffe://example.org/ci/1001/2002");
        assert_eq!(claims["client_id"], CLIENT_ID);
        assert_eq!(claims["scope"], "deploy");
        assert_eq!(claims["iss"], issuer.as_str());
        issued.push(body["access_token"].as_str().unwrap().to_owned());
    }
    // The server found the keys through discovery.
    let hits: Value =
        serde_json::from_slice(&std::fs::read(keys.join("hits.json")).unwrap()).unwrap();
    assert!(
        hits["/.well-known/openid-configuration"].as_u64() >= Some(1),
        "{hits}"
    );
    assert!(hits["/jwks"].as_u64() >= Some(1), "{hits}");

    // A token under a key id the issuer does not publish: the server fetches the keys again
    // once (the issuer may have rotated), then not again within the refresh interval (5 s
    // here) however many such tokens arrive. The CLI sends them: it takes milliseconds.
    let jwks_hits = || -> u64 {
        let hits: Value =
            serde_json::from_slice(&std::fs::read(keys.join("hits.json")).unwrap()).unwrap();
        hits["/jwks"].as_u64().unwrap_or(0)
    };
    let unknown: Vec<PathBuf> = (0..3)
        .map(|n| {
            let o = Command::new(&python)
                .arg(pyspiffe_dir().join("oidc_issuer.py"))
                .args(["mint", "--keys-dir"])
                .arg(&keys)
                .args([
                    "--alg",
                    "RS256",
                    "--kid",
                    &format!("rotated-{n}"),
                    "--claims",
                ])
                .arg(ci_claims("refs/heads/main").to_string())
                .output()
                .unwrap();
            token_file(&format!("ci-unknown-{n}"), stdout(&o).trim())
        })
        .collect();
    // Past the interval since the last fetch.
    std::thread::sleep(Duration::from_secs(6));
    let before = jwks_hits();
    for file in &unknown {
        let o = sigil(&[
            "exchange",
            "--server",
            &issuer,
            "--ca-file",
            ca.to_str().unwrap(),
            "--audience",
            "https://api.example",
            "--subject-token",
            &format!("@{}", file.display()),
        ]);
        assert_one_line_error(&o, "key id is not known");
    }
    assert_eq!(
        jwks_hits(),
        before + 1,
        "one refetch for three unknown key ids within the refresh interval"
    );

    // The policy decides: another branch is refused with invalid_request, naming the forbid.
    let feature = token_file(
        "ci-feature",
        &ci.mint("RS256", &ci_claims("refs/heads/feature")),
    );
    let (code, body) = authlib(&[
        "--subject-token-file",
        feature.to_str().unwrap(),
        "--audience",
        "https://api.example",
        "--client-auth",
        "jwt-svid",
    ]);
    assert_eq!(code, 3, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("denied by policy [ci-main-only]"),
        "{body}"
    );

    // Introspection and revocation through Authlib.
    let first = token_file("issued", &issued[0]);
    let (code, body) = authlib(&[
        "--introspect",
        first.to_str().unwrap(),
        "--client-auth",
        "jwt-svid",
    ]);
    assert_eq!((code, &body["active"]), (0, &json!(true)), "{body}");
    // The client it was issued to may revoke it; then it is inactive at once.
    let (code, body) = authlib(&[
        "--revoke",
        first.to_str().unwrap(),
        "--client-auth",
        "jwt-svid",
    ]);
    assert_eq!(code, 0, "{body}");
    let (code, body) = authlib(&[
        "--introspect",
        first.to_str().unwrap(),
        "--client-auth",
        "jwt-svid",
    ]);
    assert_eq!((code, body), (0, json!({"active": false})));

    // openid-client over mutual TLS with the X509-SVID: the subject is the workload's own
    // JWT-SVID for this server.
    let o = workload(&paths.socket, &["jwt", "fetch", "--audience", &issuer]);
    assert!(o.status.success(), "jwt fetch: {}", stderr(&o));
    let own = token_file("own-jwt-svid", stdout(&o).trim());
    let openid = |client_id: &str| {
        answer(
            &Command::new("node")
                .current_dir(node_dir())
                .arg("openid_exchange.mjs")
                .args(["--issuer", &issuer, "--ca"])
                .arg(&ca)
                .arg("--cert")
                .arg(svid_dir.join("svid.pem"))
                .arg("--key")
                .arg(svid_dir.join("svid.key"))
                .args(["--client-id", client_id, "--subject-token-file"])
                .arg(&own)
                .args(["--audience", "https://api.example", "--scope", "read"])
                .output()
                .expect("node must be installed"),
        )
    };
    let (code, body) = openid(CLIENT_ID);
    assert_eq!(code, 0, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["client_id"], CLIENT_ID);
    assert_eq!(claims["scope"], "read");
    // A client_id other than the certificate's is refused.
    let (code, body) = openid("spiffe://example.org/someone-else");
    assert_eq!(code, 3, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");

    // The CLI: the workload's own JWT-SVID, client authenticated by mutual TLS, a JWT-SVID back.
    let cli = |extra: &[&str]| {
        let mut args = vec![
            "exchange",
            "--server",
            issuer.as_str(),
            "--ca-file",
            ca.to_str().unwrap(),
            "--audience",
            "https://api.example",
        ];
        args.extend_from_slice(extra);
        workload(&paths.socket, &args)
    };
    let o = cli(&[
        "--subject-jwt-svid",
        "--client-auth",
        "mtls",
        "--requested-token-type",
        "jwt",
    ]);
    assert!(o.status.success(), "sigil exchange: {}", stderr(&o));
    let claims = claims_of(stdout(&o).trim());
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["aud"], json!(["https://api.example"]));
    // A CI token on a refused branch: one line, non-zero.
    let o = cli(&["--subject-token", &format!("@{}", feature.display())]);
    assert_one_line_error(&o, "invalid_request");

    let _ = fixture.kill();
    let _ = fixture.wait();
}
