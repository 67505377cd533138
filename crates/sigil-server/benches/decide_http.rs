//! Policy decision latency over HTTP: `POST /authz/v1/decide` on the public listener (loopback,
//! plain HTTP, one keep-alive connection, the caller authenticated by a JWT-SVID bearer token),
//! one request at a time, at 10, 100 and 1,000 policies. Each set is a schema fragment declaring
//! the operator action `http:GET` and that many policies, 90 % scoped to one resource each
//! (`resource == Sigil::Resource::"r<i>"`, as real rules are written: one service's endpoints)
//! and 10 % unscoped with a `when` condition on the context; the request asks about a resource
//! in the middle. The in-process figures for the same sizes come from
//! `cargo bench -p sigil-policy --bench decide`.
//!
//! `cargo bench -p sigil-server --bench decide_http` (env `SIGIL_BENCH_SAMPLES`, default 2,000)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use sigil_server::oauth::OAuthConfig;
use support::TestServer;

fn policies(n: usize) -> String {
    // The caller's JWT-SVID must be issued too: with a policy directory nothing is by default.
    let mut text = String::from(
        "@id(\"issue\")\npermit (principal, action == Sigil::Action::\"IssueJwtSvid\", resource);\n",
    );
    for i in 0..n {
        if i % 10 == 9 {
            let _ = writeln!(
                text,
                "@id(\"p{i}\")\npermit (principal, action == Sigil::Action::\"http:GET\", resource)\n\
                 when {{ context has intent && context.intent == \"intent-{i}\" }};"
            );
        } else {
            let _ = writeln!(
                text,
                "@id(\"p{i}\")\npermit (principal, action == Sigil::Action::\"http:GET\", resource == Sigil::Resource::\"r{i}\");"
            );
        }
    }
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let samples: usize = std::env::var("SIGIL_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| policies | decision | p50 µs | p99 µs |");
    println!("|---:|---|---:|---:|");
    for n in [10_usize, 100, 1_000] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bench.cedar"), policies(n)).unwrap();
        std::fs::write(
            dir.path().join("actions.cedarschema"),
            "namespace Sigil {\n  action \"http:GET\" appliesTo { principal: [Workload], resource: Resource, context: Context };\n}\n",
        )
        .unwrap();
        rt.block_on(async {
            let server = TestServer::try_start_with_policies(
                support::plain_loopback_public(),
                OAuthConfig::default(),
                dir.path(),
            )
            .await
            .unwrap();
            let issuer = server.handle.issuer.clone().unwrap();
            let agent = server.attest().await;
            let entry = server
                .create_entry("spiffe://example.org/caller", &agent.id)
                .await
                .id;
            server.agents_caught_up().await;
            let bearer = server.jwt_svid(&agent, &entry, &issuer).await.unwrap();
            let tcp = tokio::net::TcpStream::connect(server.handle.public_addr.unwrap())
                .await
                .unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let body = format!(
                "{{\"action\":\"http:GET\",\"resource\":{{\"id\":\"r{}\",\"kind\":\"endpoint\"}}}}",
                n / 2
            );
            let mut times = Vec::with_capacity(samples);
            let mut allowed = false;
            for i in 0..samples + 100 {
                let request = http::Request::post("/authz/v1/decide")
                    .header("host", "sigil")
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {bearer}"))
                    .body(Full::new(bytes::Bytes::from(body.clone())))
                    .unwrap();
                sender.ready().await.unwrap();
                let started = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let took = started.elapsed();
                let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                allowed = answer["allowed"] == true;
                if i >= 100 {
                    times.push(took);
                }
            }
            assert!(allowed, "the request is allowed by its resource's policy");
            times.sort();
            println!(
                "| {n} | allow | {:.1} | {:.1} |",
                percentile(&times, 0.5).as_secs_f64() * 1e6,
                percentile(&times, 0.99).as_secs_f64() * 1e6
            );
            server.stop().await;
        });
    }
}
