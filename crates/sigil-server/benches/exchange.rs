//! Token exchanges per second over HTTP on loopback, beside the raw ceiling measured in the same
//! process: one ES256 verification plus one ES256 signature per operation (what an exchange of
//! an ES256 subject token for an access token must do at the least). The server (plain HTTP
//! public listener, in-memory SQLite, the inventory write per token) and `SIGIL_BENCH_CLIENTS`
//! keep-alive HTTP/1.1 clients (default 8) share the process; the clients run on a runtime of
//! their own whose threads' CPU is subtracted. Reported over `SIGIL_BENCH_SECS` (default 5):
//! per second of wall time (clients and server share the cores) and per CPU-second the server
//! itself used against the ceiling per CPU-second, as the issuance benchmark reports it; the
//! per-CPU ratio is what BENCHMARKS.md records against the target.
//!
//! `cargo bench -p sigil-server --bench exchange`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "load/cpu.rs"]
mod cpu;

/// Name prefix of the clients' threads, whose CPU is not the server's.
const CLIENT_THREADS: &str = "exchange-client";

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use serde_json::json;
use sigil_keys::jose::{self, JwsAlgorithm, KeySet};
use sigil_keys::test_issuer::TestSigningKey;
use sigil_server::oauth::mapping::{AttributeMapping, SpiffeIdTemplate};
use sigil_server::oauth::{ExternalIssuerConfig, KeySource, OAuthConfig};
use sigil_spiffe::Clock;
use support::TestServer;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// ES256 verify + ES256 sign per operation, on every core for `secs`.
fn ceiling(token: &str, keys: &KeySet, secs: u64) -> f64 {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done = done.clone();
            let keys = keys.clone();
            scope.spawn(move || {
                let signer = sigil_keys::PrivateKey::generate().unwrap();
                while Instant::now() < until {
                    let verified = jose::verify(token, &[JwsAlgorithm::Es256], |kid, alg| {
                        keys.find(kid, alg).cloned()
                    })
                    .unwrap();
                    let claims = serde_json::to_vec(&verified.claims).unwrap();
                    let _ =
                        sigil_keys::jws::sign_json_parts(b"{\"alg\":\"ES256\"}", &claims, &signer)
                            .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let secs = env("SIGIL_BENCH_SECS", 5);
    let clients = env("SIGIL_BENCH_CLIENTS", 8);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .unwrap();

    let key = TestSigningKey::generate(JwsAlgorithm::Es256).unwrap();
    let jwks = json!({"keys": [key.public_jwk("ci-1")]});
    let keys = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    let td = support::td();
    let oauth = OAuthConfig {
        scopes: vec!["deploy".to_owned()],
        issuers: vec![ExternalIssuerConfig {
            issuer: "https://ci.example".to_owned(),
            owner: "team-ci".to_owned(),
            keys: KeySource::Static(keys.clone()),
            roots: None,
            audiences: vec!["https://sigil.example".to_owned()],
            max_token_age: None,
            algorithms: vec![JwsAlgorithm::Es256],
            attributes: AttributeMapping::new([("repo".to_owned(), "repository_id".to_owned())])
                .unwrap(),
            spiffe_id: SpiffeIdTemplate::parse("spiffe://example.org/ci/{repo}", &td).unwrap(),
            scopes: None,
            refresh_interval: sigil_server::oauth::external::DEFAULT_REFRESH_INTERVAL,
        }],
        ..OAuthConfig::default()
    };
    let server = server_rt.block_on(TestServer::start_oauth(
        support::plain_loopback_public(),
        oauth,
    ));
    let now = server.clock.unix_secs();
    let token = key
        .sign(
            &json!({"alg": "ES256", "kid": "ci-1", "typ": "JWT"}),
            &json!({"iss": "https://ci.example", "aud": "https://sigil.example",
                    "sub": "repo", "repository_id": "42", "iat": now, "exp": now + 3600}),
        )
        .unwrap();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", token.as_str()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "https://api.example"),
            ("scope", "deploy"),
        ])
        .finish();
    let addr = server.handle.public_addr.unwrap();

    let ceiling_cpu_start = cpu::process_secs("self");
    let ceiling_per_sec = ceiling(&token, &keys, secs);
    let ceiling_cpu = cpu::process_secs("self") - ceiling_cpu_start;
    let ceiling_ops = ceiling_per_sec * secs as f64;
    let cpu_start = (cpu::process_secs("self"), cpu::threads_secs(CLIENT_THREADS));

    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    client_rt.block_on(async {
        let until = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let body = body.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                while Instant::now() < until {
                    let request = http::Request::post("/oauth2/token")
                        .header("host", "sigil")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(Full::new(bytes::Bytes::from(body.clone())))
                        .unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    let _ = response.into_body().collect().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let exchanges = done.load(Ordering::Relaxed) as f64;
    let exchanges_per_sec = exchanges / started.elapsed().as_secs_f64();
    let clients_cpu = cpu::threads_secs(CLIENT_THREADS) - cpu_start.1;
    let server_cpu = cpu::process_secs("self") - cpu_start.0 - clients_cpu;
    let per_cpu = exchanges / server_cpu;
    let ceiling_per_cpu = ceiling_ops / ceiling_cpu;
    println!("clients: {clients}, {secs} s each");
    println!(
        "ceiling (ES256 verify + ES256 sign): {ceiling_per_sec:.0} /s, {ceiling_per_cpu:.0} per CPU-s"
    );
    println!(
        "token exchanges over HTTP:           {exchanges_per_sec:.0} /s, {per_cpu:.0} per server CPU-s ({server_cpu:.1} CPU-s; the clients used {clients_cpu:.1} CPU-s more)"
    );
    println!(
        "ratio per wall second: {:.2}; per CPU-second: {:.2} (target >= 0.5)",
        exchanges_per_sec / ceiling_per_sec,
        per_cpu / ceiling_per_cpu
    );
    server_rt.block_on(server.stop());
}
