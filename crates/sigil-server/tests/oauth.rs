//! Token exchange on an in-process server's public listener (plain HTTP on loopback): a test
//! OIDC issuer (its own RS256 and ES256 keys, CI-style claims) whose tokens the Cedar policy lets
//! be exchanged only from the main branch; JWT-SVIDs as subject, actor and client assertion; introspection and
//! revocation; and the refusal matrix, each case failing with the error code RFC 6749 §5.2 and
//! RFC 8693 §2.2.2 name and a description of exactly what was wrong.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sigil_keys::jose::{JwsAlgorithm, KeySet};
use sigil_keys::test_issuer::{TestSigningKey, alg_none, sign_hs256};
use sigil_server::oauth::mapping::{AttributeMapping, SpiffeIdTemplate};
use sigil_server::oauth::{ExternalIssuerConfig, KeySource, OAuthConfig};
use sigil_server::public::{PublicConfig, PublicTls};
use support::{AgentSvid, PATIENCE, TestServer};
use tokio::net::TcpStream;

const CI_ISSUER: &str = "https://ci.example";
const CI_AUDIENCE: &str = "https://sigil.example";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The fixture's policies: everything permitted, but an external subject is exchanged only when
/// its mapped `git_ref` is the main branch.
const POLICIES: &str = r#"@id("all")
permit (principal, action, resource);

@id("ci-main-only")
forbid (principal is Sigil::ExternalSubject, action == Sigil::Action::"Exchange", resource)
unless { principal.attributes.contains("git_ref=refs/heads/main") };
"#;

struct Fixture {
    server: TestServer,
    rsa: TestSigningKey,
    ec: TestSigningKey,
    agent: AgentSvid,
    /// Entry ids of `spiffe://example.org/svc` and `spiffe://example.org/ai-agent`.
    svc: String,
    ai: String,
    issuer: String,
    /// The policy directory the server reads.
    _policies: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_on(PublicTls::PlainLoopback, None).await
}

async fn fixture_on(tls: PublicTls, issuer: Option<&str>) -> Fixture {
    fixture_with(tls, issuer, |_| {}).await
}

async fn fixture_with(
    tls: PublicTls,
    issuer: Option<&str>,
    tweak: impl FnOnce(&mut OAuthConfig),
) -> Fixture {
    let rsa = TestSigningKey::generate(JwsAlgorithm::Rs256).unwrap();
    let ec = TestSigningKey::generate(JwsAlgorithm::Es256).unwrap();
    let jwks = json!({"keys": [rsa.public_jwk("rsa-1"), ec.public_jwk("ec-1")]});
    let keys = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    let td = support::td();
    let oauth = OAuthConfig {
        scopes: vec!["read".to_owned(), "deploy".to_owned()],
        issuers: vec![ExternalIssuerConfig {
            issuer: CI_ISSUER.to_owned(),
            owner: "team-ci".to_owned(),
            keys: KeySource::Static(keys),
            roots: None,
            audiences: vec![CI_AUDIENCE.to_owned()],
            max_token_age: Some(600),
            algorithms: JwsAlgorithm::ALL.to_vec(),
            attributes: AttributeMapping::new([
                ("owner_id".to_owned(), "repository_owner_id".to_owned()),
                ("repo_id".to_owned(), "repository_id".to_owned()),
                ("git_ref".to_owned(), "ref".to_owned()),
            ])
            .unwrap(),
            spiffe_id: SpiffeIdTemplate::parse("spiffe://example.org/ci/{owner_id}/{repo_id}", &td)
                .unwrap(),
            scopes: Some(vec!["deploy".to_owned()]),
            refresh_interval: sigil_server::oauth::external::DEFAULT_REFRESH_INTERVAL,
        }],
        ..OAuthConfig::default()
    };
    let mut oauth = oauth;
    tweak(&mut oauth);
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("exchange.cedar"), POLICIES).unwrap();
    let server = TestServer::try_start_with_policies(
        PublicConfig {
            bind_address: "127.0.0.1:0".parse().unwrap(),
            tls,
            issuer: issuer.map(str::to_owned),
        },
        oauth,
        policies.path(),
    )
    .await
    .unwrap();
    let issuer = server.handle.issuer.clone().unwrap();
    let agent = server.attest().await;
    let svc = server
        .create_entry("spiffe://example.org/svc", &agent.id)
        .await
        .id;
    let ai = server
        .create_entry("spiffe://example.org/ai-agent", &agent.id)
        .await
        .id;
    server.agents_caught_up().await;
    Fixture {
        server,
        rsa,
        ec,
        agent,
        svc,
        ai,
        issuer,
        _policies: policies,
    }
}

impl Fixture {
    fn now(&self) -> i64 {
        use sigil_spiffe::Clock;
        self.server.clock.unix_secs()
    }

    fn ci_claims(&self) -> Value {
        let now = self.now();
        json!({
            "iss": CI_ISSUER, "aud": CI_AUDIENCE, "sub": "repo:acme/app:ref:refs/heads/main",
            "repository_owner_id": "1001", "repository_id": "2002", "ref": "refs/heads/main",
            "iat": now - 5, "nbf": now - 5, "exp": now + 300, "jti": "ci-1",
        })
    }

    fn ci_token(&self, key: &TestSigningKey, kid: &str, claims: &Value) -> String {
        key.sign(
            &json!({"alg": key.alg().name(), "kid": kid, "typ": "JWT"}),
            claims,
        )
        .unwrap()
    }

    /// A JWT-SVID of entry `entry` for `audience`, minted through the agent API.
    async fn jwt_svid(&self, entry: &str, audience: &str) -> String {
        self.server
            .jwt_svid(&self.agent, entry, audience)
            .await
            .unwrap()
    }

    /// POSTs `form` to `path`: (status, JSON body, Cache-Control).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value, String) {
        let tcp = TcpStream::connect(self.server.handle.public_addr.unwrap())
            .await
            .unwrap();
        post_on(tcp, path, form).await
    }

    /// POSTs `form` to `path` over TLS to the SVID listener, presenting `client` (if any).
    async fn post_tls(
        &self,
        client: Option<&AgentSvid>,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value, String), std::io::Error> {
        let tls = self.tls_connect(client).await?;
        Ok(post_on(tls, path, form).await)
    }

    /// A TLS connection to the SVID listener trusting the bundle, presenting `client` (if any).
    async fn tls_connect(
        &self,
        client: Option<&AgentSvid>,
    ) -> Result<sigil_tls::client::TlsStream<TcpStream>, std::io::Error> {
        let roots = std::sync::Arc::new(sigil_tls::LiveRoots::new(
            &self.server.handle.bundle().x509_authorities,
        ));
        let verifier = std::sync::Arc::new(sigil_tls::SpiffeServerVerifier::new(
            roots,
            sigil_server::naming::server_id(&support::td()),
        ));
        let svid = client.map(|c| {
            std::sync::Arc::new(sigil_tls::LiveSvid::new(&c.chain, c.key.pkcs8_der()).unwrap())
        });
        let mut config =
            sigil_tls::client_config(svid, verifier, sigil_tls::TlsPolicy::default()).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(self.server.handle.public_addr.unwrap())
            .await
            .unwrap();
        sigil_tls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(sigil_tls::ServerName::try_from("sigil").unwrap(), tcp)
            .await
    }
}

/// POSTs `form` to `path` on `io`: (status, JSON body, Cache-Control).
async fn post_on<T>(io: T, path: &str, form: &[(&str, &str)]) -> (u16, Value, String)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let answer =
        support::http_post(io, path, "application/x-www-form-urlencoded", body, None).await;
    let cache = answer
        .headers
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (answer.status, answer.json, cache)
}

impl Fixture {
    async fn exchange(&self, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![("grant_type", EXCHANGE)];
        form.extend_from_slice(extra);
        let (status, body, cache) = self.post("/oauth2/token", &form).await;
        assert_eq!(cache, "no-store", "every token response is no-store");
        (status, body)
    }

    /// Exchanges subject token `token` for an access token for https://api.example.
    async fn exchange_subject(&self, token: &str, scope: Option<&str>) -> (u16, Value) {
        let mut form = vec![
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("audience", "https://api.example"),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.exchange(&form).await
    }
}

fn claims_of(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    (decode(), decode())
}

/// Asserts `(status, body)` is the OAuth error `code` whose description contains `needle`.
fn assert_error(case: &str, got: (u16, Value), status: u16, code: &str, needle: &str) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{case}: {body}");
    assert_eq!(body["error"], code, "{case}: {body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(needle),
        "{case}: description `{description}` lacks `{needle}`"
    );
}

#[tokio::test]
async fn ci_tokens_of_both_algorithms_are_exchanged_for_the_mapped_identity() {
    let f = fixture().await;
    for (key, kid) in [(&f.rsa, "rsa-1"), (&f.ec, "ec-1")] {
        let token = f.ci_token(key, kid, &f.ci_claims());
        let (status, body) = f.exchange_subject(&token, Some("deploy")).await;
        assert_eq!(status, 200, "{kid}: {body}");
        assert_eq!(
            body["issued_token_type"],
            "urn:ietf:params:oauth:token-type:access_token"
        );
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "deploy");
        let (header, claims) = claims_of(body["access_token"].as_str().unwrap());
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["sub"], "spiffe://example.org/ci/1001/2002");
        assert_eq!(claims["iss"], f.issuer.as_str());
        assert_eq!(claims["aud"], json!(["https://api.example"]));
        assert_eq!(claims["scope"], "deploy");
        assert_eq!(claims["client_id"], "spiffe://example.org/ci/1001/2002");
        assert!(claims["exp"].as_i64().unwrap() <= f.now() + 300);
        assert!(claims["jti"].is_string());
        // The issued token is in the inventory, so it can be revoked.
        let recorded = f
            .server
            .handle
            .store
            .get_issued(
                sigil_store::CredentialKind::JwtSvid,
                claims["jti"].as_str().unwrap(),
            )
            .await
            .unwrap();
        assert!(recorded.is_some(), "{kid}: not in the inventory");
    }
    f.server.stop().await;
}

#[tokio::test]
async fn the_refusal_matrix_gets_the_right_error_codes() {
    let f = fixture().await;
    let now = f.now();
    let good = f.ci_claims();
    let with = |changes: Value| {
        let mut claims = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    // The genuine token is accepted, so each refusal below is caused by its one change.
    let genuine = f.ci_token(&f.rsa, "rsa-1", &good);
    assert_eq!(f.exchange_subject(&genuine, None).await.0, 200);

    let ir = "invalid_request";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            f.ci_token(&f.rsa, "rsa-1", &with(json!({"exp": now - 3600}))),
            "expired",
        ),
        (
            "nbf in the future",
            f.ci_token(&f.rsa, "rsa-1", &with(json!({"nbf": now + 3600}))),
            "not valid before",
        ),
        (
            "too old",
            f.ci_token(&f.rsa, "rsa-1", &with(json!({"iat": now - 3600}))),
            "longer ago",
        ),
        (
            "wrong issuer",
            f.ci_token(
                &f.rsa,
                "rsa-1",
                &with(json!({"iss": "https://evil.example"})),
            ),
            "is not trusted",
        ),
        (
            "wrong audience",
            f.ci_token(&f.rsa, "rsa-1", &with(json!({"aud": "https://other"}))),
            "audience",
        ),
        (
            "alg none",
            alg_none(&json!({"alg": "none", "kid": "rsa-1", "typ": "JWT"}), &good),
            "algorithm `none`",
        ),
        (
            "HS256 keyed with the public key",
            sign_hs256(
                &json!({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}),
                &good,
                f.rsa.public_key_pem().as_bytes(),
            ),
            "algorithm `HS256`",
        ),
        (
            "unknown kid",
            f.ci_token(&f.rsa, "rsa-2", &good),
            "key id is not known",
        ),
        (
            "tampered signature",
            {
                // Genuine header and signature over other claims: parses, wrong signature.
                let other = f.ci_token(&f.rsa, "rsa-1", &with(json!({"repository_id": "9"})));
                let mut parts: Vec<&str> = other.split('.').collect();
                let genuine_sig = genuine.split('.').nth(2).unwrap();
                parts[2] = genuine_sig;
                parts.join(".")
            },
            "signature does not verify",
        ),
        (
            "signed by another key under a known kid",
            f.ci_token(
                &TestSigningKey::generate(JwsAlgorithm::Rs256).unwrap(),
                "rsa-1",
                &good,
            ),
            "signature does not verify",
        ),
        (
            "another branch, denied by policy",
            f.ci_token(&f.rsa, "rsa-1", &with(json!({"ref": "refs/heads/feature"}))),
            "denied by policy [ci-main-only]",
        ),
        (
            "no ref claim, denied by policy",
            f.ci_token(&f.rsa, "rsa-1", &{
                let mut claims = good.clone();
                claims.as_object_mut().unwrap().remove("ref");
                claims
            }),
            "denied by policy [ci-main-only]",
        ),
        (
            "over 16 KiB",
            f.ci_token(
                &f.rsa,
                "rsa-1",
                &with(json!({"padding": "x".repeat(17 * 1024)})),
            ),
            "larger than 16384 bytes",
        ),
    ];
    for (case, token, needle) in cases {
        assert_error(
            case,
            f.exchange_subject(&token, None).await,
            400,
            ir,
            needle,
        );
    }

    // Parameters.
    assert_error(
        "unsupported token type",
        f.exchange(&[
            ("subject_token", &genuine),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            ("audience", "https://api.example"),
        ])
        .await,
        400,
        ir,
        "is not supported",
    );
    assert_error(
        "unsupported grant type",
        f.post("/oauth2/token", &[("grant_type", "client_credentials")])
            .await
            .into_pair(),
        400,
        "unsupported_grant_type",
        "client_credentials",
    );
    assert_error(
        "scope beyond the issuer's",
        f.exchange_subject(&genuine, Some("read")).await,
        400,
        "invalid_scope",
        "`read`",
    );
    assert_error(
        "resource that is not an absolute URI",
        f.exchange(&[
            ("subject_token", &genuine),
            ("subject_token_type", JWT),
            ("resource", "not-a-uri"),
        ])
        .await,
        400,
        "invalid_target",
        "not-a-uri",
    );
    assert_error(
        "no target",
        f.exchange(&[("subject_token", &genuine), ("subject_token_type", JWT)])
            .await,
        400,
        ir,
        "audience",
    );
    assert_error(
        "subject token missing",
        f.exchange(&[("audience", "https://api.example")]).await,
        400,
        ir,
        "`subject_token` is required",
    );
    f.server.stop().await;
}

trait IntoPair {
    fn into_pair(self) -> (u16, Value);
}

impl IntoPair for (u16, Value, String) {
    fn into_pair(self) -> (u16, Value) {
        (self.0, self.1)
    }
}

#[tokio::test]
async fn jwt_svids_are_subjects_actors_and_client_assertions() {
    let f = fixture().await;
    let subject = f.jwt_svid(&f.svc, &f.issuer).await;
    let actor = f.jwt_svid(&f.ai, &f.issuer).await;
    let assertion = f
        .jwt_svid(&f.ai, &format!("{}/oauth2/token", f.issuer))
        .await;

    // A JWT-SVID for another audience is not a subject token for this server.
    let elsewhere = f.jwt_svid(&f.svc, "https://api.example").await;
    assert_error(
        "subject JWT-SVID for another audience",
        f.exchange_subject(&elsewhere, None).await,
        400,
        "invalid_request",
        "audience",
    );

    // Delegation: the AI agent acts for the service, authenticated by its own JWT-SVID.
    let (status, body) = f
        .exchange(&[
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("actor_token", &actor),
            ("actor_token_type", JWT),
            ("audience", "https://api.example"),
            ("audience", &f.issuer),
            ("scope", "read"),
            ("requested_token_type", JWT),
            ("client_assertion_type", JWT_SPIFFE),
            ("client_assertion", &assertion),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], JWT);
    assert_eq!(body["token_type"], "N_A");
    let issued = body["access_token"].as_str().unwrap().to_owned();
    let (header, claims) = claims_of(&issued);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["sub"], "spiffe://example.org/svc");
    assert_eq!(
        claims["act"],
        json!({"sub": "spiffe://example.org/ai-agent"})
    );
    assert_eq!(claims["client_id"], "spiffe://example.org/ai-agent");
    // What was issued is a JWT-SVID the trust bundle verifies.
    sigil_keys::jwt_svid::validate(
        &issued,
        &f.server.handle.bundle(),
        "https://api.example",
        f.now(),
    )
    .unwrap();

    // The same JWT-SVID assertion again is accepted: agents hand out the same cached JWT-SVID
    // per audience, and the SPIFFE client-auth draft allows its reuse until it expires.
    let (status, body) = f
        .exchange(&[
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "https://api.example"),
            ("client_assertion_type", JWT_SPIFFE),
            ("client_assertion", &assertion),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    // A JWT-SVID sent as an RFC 7523 assertion is refused: the types are not interchangeable.
    assert_error(
        "JWT-SVID as jwt-bearer",
        f.exchange(&[
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "https://api.example"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ])
        .await,
        401,
        "invalid_client",
        "jwt-spiffe",
    );
    // An assertion for another audience is refused.
    let other_assertion = f.jwt_svid(&f.ai, "https://api.example").await;
    assert_error(
        "client assertion for another audience",
        f.exchange(&[
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "https://api.example"),
            ("client_assertion_type", JWT_SPIFFE),
            ("client_assertion", &other_assertion),
        ])
        .await,
        401,
        "invalid_client",
        "audience",
    );
    // A claimed client_id without credentials is refused, not believed.
    assert_error(
        "bare client_id",
        f.exchange(&[
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", "https://api.example"),
            ("client_id", "spiffe://example.org/ai-agent"),
        ])
        .await,
        401,
        "invalid_client",
        "without client authentication",
    );

    // A second delegation nests the first actor.
    let second_actor = f.jwt_svid(&f.svc, &f.issuer).await;
    let (status, body) = f
        .exchange(&[
            ("subject_token", &issued),
            ("subject_token_type", JWT),
            ("actor_token", &second_actor),
            ("actor_token_type", JWT),
            ("audience", "https://api.example"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, nested) = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        nested["act"],
        json!({"sub": "spiffe://example.org/svc", "act": {"sub": "spiffe://example.org/ai-agent"}})
    );
    f.server.stop().await;
}

#[tokio::test]
async fn rfc7523_assertions_of_an_external_issuer_authenticate_once() {
    fn as_refs(form: &[(String, String)]) -> Vec<(&str, &str)> {
        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
    let f = fixture().await;
    let subject = f.jwt_svid(&f.svc, &f.issuer).await;
    let token_endpoint = format!("{}/oauth2/token", f.issuer);
    let assertion_claims = {
        let mut c = f.ci_claims();
        c["aud"] = json!(token_endpoint);
        c["jti"] = json!("assertion-1");
        c
    };
    let assertion = f.ci_token(&f.ec, "ec-1", &assertion_claims);
    let form = |assertion: &str| {
        vec![
            ("subject_token".to_owned(), subject.clone()),
            ("subject_token_type".to_owned(), JWT.to_owned()),
            ("audience".to_owned(), "https://api.example".to_owned()),
            ("client_assertion_type".to_owned(), JWT_BEARER.to_owned()),
            ("client_assertion".to_owned(), assertion.to_owned()),
        ]
    };
    let first = form(&assertion);
    let (status, body) = f.exchange(&as_refs(&first)).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], "spiffe://example.org/ci/1001/2002");
    assert_eq!(claims["sub"], "spiffe://example.org/svc");

    // Replayed: refused.
    assert_error(
        "client assertion replayed",
        f.exchange(&as_refs(&first)).await,
        401,
        "invalid_client",
        "used before",
    );
    // For another audience (the issuer's own, not this server): refused.
    let elsewhere = f.ci_token(&f.ec, "ec-1", &{
        let mut c = assertion_claims.clone();
        c["aud"] = json!(CI_AUDIENCE);
        c["jti"] = json!("assertion-2");
        c
    });
    assert_error(
        "client assertion for another audience",
        f.exchange(&as_refs(&form(&elsewhere))).await,
        401,
        "invalid_client",
        "audience",
    );
    // Without a jti a replay could not be told: refused.
    let no_jti = f.ci_token(&f.ec, "ec-1", &{
        let mut c = assertion_claims.clone();
        c.as_object_mut().unwrap().remove("jti");
        c
    });
    assert_error(
        "client assertion without jti",
        f.exchange(&as_refs(&form(&no_jti))).await,
        401,
        "invalid_client",
        "`jti` is required",
    );
    f.server.stop().await;
}

#[tokio::test]
async fn may_act_limits_who_may_act_and_revoked_subjects_are_refused() {
    let f = fixture().await;
    let actor = f.jwt_svid(&f.ai, &f.issuer).await;
    // A CI token that lets only another identity act for it.
    let ci = f.ci_token(&f.ec, "ec-1", &{
        let mut c = f.ci_claims();
        c["may_act"] = json!({"sub": "spiffe://example.org/someone-else"});
        c
    });
    assert_error(
        "actor not allowed by may_act",
        f.exchange(&[
            ("subject_token", &ci),
            ("subject_token_type", JWT),
            ("actor_token", &actor),
            ("actor_token_type", JWT),
            ("audience", "https://api.example"),
        ])
        .await,
        400,
        "invalid_request",
        "may_act",
    );

    // A revoked JWT-SVID is refused as a subject at once.
    let subject = f.jwt_svid(&f.svc, &f.issuer).await;
    assert_eq!(f.exchange_subject(&subject, None).await.0, 200);
    let jti = claims_of(&subject).1["jti"].as_str().unwrap().to_owned();
    f.server
        .handle
        .store
        .revoke_credential(sigil_store::CredentialKind::JwtSvid, &jti, "test", f.now())
        .await
        .unwrap();
    assert!(
        f.server
            .handle
            .ca
            .revocation_published(sigil_store::CredentialKind::JwtSvid, &jti)
            .await
    );
    assert_error(
        "revoked subject JWT-SVID",
        f.exchange_subject(&subject, None).await,
        400,
        "invalid_request",
        "revoked",
    );
    f.server.stop().await;
}

#[tokio::test]
async fn introspection_and_revocation_of_issued_tokens() {
    let f = fixture().await;
    let ci = f.ci_token(&f.rsa, "rsa-1", &f.ci_claims());
    let (status, body) = f.exchange_subject(&ci, Some("deploy")).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    // Introspection needs client authentication.
    let (status, body, _) = f.post("/oauth2/introspect", &[("token", &token)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let a = f.jwt_svid(&f.svc, &f.issuer).await;
    let (status, body, _) = f
        .post(
            "/oauth2/introspect",
            &[
                ("token", &token),
                ("client_assertion_type", JWT_SPIFFE),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "spiffe://example.org/ci/1001/2002");
    assert_eq!(body["scope"], "deploy");
    assert_eq!(body["token_type"], "Bearer");

    // Garbage and foreign tokens are inactive, not errors.
    let a = f.jwt_svid(&f.svc, &f.issuer).await;
    let (status, body, _) = f
        .post(
            "/oauth2/introspect",
            &[
                ("token", &ci),
                ("client_assertion_type", JWT_SPIFFE),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_eq!((status, body), (200, json!({"active": false})));

    // The service is neither the token's client nor its subject: it may not revoke it.
    let a = f.jwt_svid(&f.svc, &f.issuer).await;
    let (status, body, _) = f
        .post(
            "/oauth2/revoke",
            &[
                ("token", &token),
                ("client_assertion_type", JWT_SPIFFE),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "unauthorized_client");

    // A token issued to the service itself it may revoke; introspection sees it at once, and the
    // deny-list agents receive names it.
    let own = f.jwt_svid(&f.svc, &f.issuer).await;
    let (status, body) = f.exchange_subject(&own, Some("read")).await;
    assert_eq!(status, 200, "{body}");
    let own_token = body["access_token"].as_str().unwrap().to_owned();
    let a = f.jwt_svid(&f.svc, &f.issuer).await;
    let (status, _, _) = f
        .post(
            "/oauth2/revoke",
            &[
                ("token", &own_token),
                ("client_assertion_type", JWT_SPIFFE),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let jti = claims_of(&own_token).1["jti"].as_str().unwrap().to_owned();
    assert!(f.server.handle.ca.revocations().list.is_revoked(
        sigil_store::CredentialKind::JwtSvid,
        &jti,
        f.now()
    ));
    let a = f.jwt_svid(&f.svc, &f.issuer).await;
    let (status, body, _) = f
        .post(
            "/oauth2/introspect",
            &[
                ("token", &own_token),
                ("client_assertion_type", JWT_SPIFFE),
                ("client_assertion", &a),
            ],
        )
        .await;
    assert_eq!((status, body), (200, json!({"active": false})));
    f.server.stop().await;
}

#[tokio::test]
async fn mutual_tls_with_an_x509_svid_authenticates_the_client() {
    let f = fixture_on(PublicTls::Svid, Some("https://sigil.test")).await;
    let subject = f.jwt_svid(&f.svc, &f.issuer).await;
    let client_id = sigil_spiffe::SpiffeId::parse("spiffe://example.org/ai-agent").unwrap();
    let client = f.server.forge_signed_svid(&client_id, 600);
    let form = |claimed: &'static str| {
        vec![
            ("grant_type", EXCHANGE),
            ("audience", "https://api.example"),
            ("subject_token_type", JWT),
            ("client_id", claimed),
        ]
    };
    let with_subject = |mut form: Vec<(&'static str, &'static str)>, subject: &str| {
        let subject: &'static str = Box::leak(subject.to_owned().into_boxed_str());
        form.push(("subject_token", subject));
        form
    };
    let (status, body, _) = f
        .post_tls(
            Some(&client),
            "/oauth2/token",
            &with_subject(form("spiffe://example.org/ai-agent"), &subject),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, claims) = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], "spiffe://example.org/ai-agent");
    assert_eq!(claims["iss"], "https://sigil.test");

    // client_id must be the certificate's SPIFFE ID.
    let (status, body, _) = f
        .post_tls(
            Some(&client),
            "/oauth2/token",
            &with_subject(form("spiffe://example.org/svc"), &subject),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Without a certificate the same client_id is not believed.
    let (status, body, _) = f
        .post_tls(
            None,
            "/oauth2/token",
            &with_subject(form("spiffe://example.org/ai-agent"), &subject),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A certificate of another trust domain does not get through the handshake.
    let stranger = TestServer::start().await;
    let foreign = stranger.forge_signed_svid(
        &sigil_spiffe::SpiffeId::parse("spiffe://example.org/ai-agent").unwrap(),
        600,
    );
    // TLS 1.3: the client learns of the refusal when it reads.
    let refused = match f.tls_connect(Some(&foreign)).await {
        Err(_) => true,
        Ok(mut tls) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tls
                .write_all(
                    b"POST /oauth2/token HTTP/1.1\r\nhost: sigil\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
            let mut answer = Vec::new();
            let read = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut answer)).await;
            matches!(read, Ok(Err(_))) || answer.is_empty()
        }
    };
    assert!(refused, "a certificate of another CA must be refused");
    stranger.stop().await;
    f.server.stop().await;
}

#[tokio::test]
async fn the_delegation_chain_is_bounded() {
    let f = fixture_with(PublicTls::PlainLoopback, None, |c| {
        c.max_delegation_depth = 1
    })
    .await;
    let subject = f.jwt_svid(&f.svc, &f.issuer).await;
    let actor = f.jwt_svid(&f.ai, &f.issuer).await;
    let delegate = |subject: String| {
        let actor = actor.clone();
        let issuer = f.issuer.clone();
        let f = &f;
        async move {
            f.exchange(&[
                ("subject_token", &subject),
                ("subject_token_type", JWT),
                ("actor_token", &actor),
                ("actor_token_type", JWT),
                ("audience", &issuer),
                ("requested_token_type", JWT),
            ])
            .await
        }
    };
    let (status, body) = delegate(subject).await;
    assert_eq!(status, 200, "{body}");
    // One actor is the limit: acting again for a token that already carries one is refused.
    let once = body["access_token"].as_str().unwrap().to_owned();
    assert_error(
        "chain longer than the limit",
        delegate(once).await,
        400,
        "invalid_request",
        "more actors than the limit of 1",
    );
    f.server.stop().await;
}

#[tokio::test]
async fn discovery_names_the_token_endpoints() {
    let f = fixture().await;
    let tcp = TcpStream::connect(f.server.handle.public_addr.unwrap())
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::get("/.well-known/openid-configuration")
                .header("host", "sigil")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["token_endpoint"], format!("{}/oauth2/token", f.issuer));
    assert_eq!(
        doc["introspection_endpoint"],
        format!("{}/oauth2/introspect", f.issuer)
    );
    assert_eq!(
        doc["revocation_endpoint"],
        format!("{}/oauth2/revoke", f.issuer)
    );
    assert_eq!(doc["grant_types_supported"], json!([EXCHANGE]));
    f.server.stop().await;
}
