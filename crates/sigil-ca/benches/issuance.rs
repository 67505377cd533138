//! Issuance benchmarks against the crypto ceiling: (a) raw AWS-LC ES256 signing of a typical JWT
//! signing input vs (b) `JwtAuthority::mint`, and (c) a raw P-256 verify plus a P-256 sign vs
//! (d) `X509Authority::sign_x509_svid` from a CSR (one verify, one sign, plus parsing and DER).
//!
//! Criterion measures each; then, under `cargo bench` only, the binary times the pairs itself in
//! alternating rounds and prints the throughput ratios (medians over rounds) against their targets.

#![expect(clippy::expect_used, reason = "a benchmark aborts on a broken fixture")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, UnparsedPublicKey};
use criterion::Criterion;
use sigil_ca::{JwtAuthority, X509Authority, intermediate, new_kid, self_signed_root};
use sigil_keys::PrivateKey;
use sigil_spiffe::{Clock, SpiffeId, SystemClock, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

/// Alternating timing rounds for the ratios: many short batches, so a burst of load from other
/// processes inflates a few batches (dropped by the median) rather than one side of the ratio.
const ROUNDS: usize = 41;
/// Approximate duration of one timing batch of the baseline.
const BATCH_NANOS: f64 = 15_000_000.0;
/// Target ratios from the issuance budget.
const JWT_TARGET: f64 = 0.70;
const X509_TARGET: f64 = 0.60;

struct Fixture {
    now: SystemTime,
    ca: X509Authority,
    jwt: JwtAuthority,
    sub: SpiffeId,
    audience: Vec<String>,
    csr: Vec<u8>,
    raw_fixed: EcdsaKeyPair,
    raw_asn1: EcdsaKeyPair,
    rng: SystemRandom,
    /// `base64url(header) . base64url(claims)` of a real JWT-SVID.
    jwt_signing_input: Vec<u8>,
    /// The CSR's key, signed request info and signature: what issuance verifies.
    csr_public_key: Vec<u8>,
    csr_info: Vec<u8>,
    csr_signature: Vec<u8>,
    /// A real leaf's to-be-signed bytes: what issuance signs.
    leaf_tbs: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let now = SystemClock.now();
        let td = TrustDomain::parse("example.org").expect("trust domain");
        let key = || Arc::new(PrivateKey::generate().expect("key"));
        let root = self_signed_root(&td, key(), 86_400, now).expect("root");
        let ca = intermediate(&td, key(), &root, 86_400, now).expect("intermediate");
        let jwt = JwtAuthority::new(new_kid().expect("kid"), key(), i64::MAX);
        let sub = SpiffeId::parse("spiffe://example.org/ns/prod/sa/api").expect("id");
        let audience = vec!["https://api.example.org".to_owned()];

        let workload_key = PrivateKey::generate().expect("workload key");
        let csr = workload_key.csr_der(&sub).expect("csr");
        let (_, parsed_csr) = X509CertificationRequest::from_der(&csr).expect("parse csr");
        let csr_public_key = parsed_csr
            .certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .to_vec();
        let csr_info = parsed_csr.certification_request_info.raw.to_vec();
        let csr_signature = parsed_csr.signature_value.data.to_vec();

        let leaf = ca
            .sign_x509_svid(&csr, &sub, 3_600, &[], now)
            .expect("leaf");
        let (_, parsed_leaf) = X509Certificate::from_der(&leaf).expect("parse leaf");
        let leaf_tbs = parsed_leaf.tbs_certificate.as_ref().to_vec();

        let token = jwt
            .mint(&sub, &audience, 300, None, now)
            .expect("mint")
            .token;
        let jwt_signing_input = token
            .rsplit_once('.')
            .map(|(input, _)| input.as_bytes().to_vec())
            .expect("three-part token");

        Self {
            now,
            ca,
            jwt,
            sub,
            audience,
            csr,
            raw_fixed: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("raw key"),
            raw_asn1: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
                .expect("raw key"),
            rng: SystemRandom::new(),
            jwt_signing_input,
            csr_public_key,
            csr_info,
            csr_signature,
            leaf_tbs,
        }
    }

    /// (a) The ceiling for JWT minting: one ES256 signature.
    fn raw_es256_sign(&self) {
        let sig = self
            .raw_fixed
            .sign(&self.rng, &self.jwt_signing_input)
            .expect("sign");
        black_box(sig);
    }

    /// (b) A complete JWT-SVID.
    fn jwt_mint(&self) {
        let minted = self
            .jwt
            .mint(&self.sub, &self.audience, 300, None, self.now)
            .expect("mint");
        black_box(minted);
    }

    /// (c) The ceiling for issuance from a CSR: verify its signature, sign a leaf-sized TBS.
    fn p256_verify_and_sign(&self) {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.csr_public_key)
            .verify(&self.csr_info, &self.csr_signature)
            .expect("verify");
        let sig = self.raw_asn1.sign(&self.rng, &self.leaf_tbs).expect("sign");
        black_box(sig);
    }

    /// (d) A complete X509-SVID from a CSR.
    fn x509_from_csr(&self) {
        let leaf = self
            .ca
            .sign_x509_svid(&self.csr, &self.sub, 3_600, &[], self.now)
            .expect("issue");
        black_box(leaf);
    }
}

fn main() {
    let fixture = Fixture::new();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();

    let mut jwt = criterion.benchmark_group("jwt");
    jwt.bench_function("raw_es256_sign", |b| b.iter(|| fixture.raw_es256_sign()));
    jwt.bench_function("jwt_mint", |b| b.iter(|| fixture.jwt_mint()));
    jwt.finish();

    let mut x509 = criterion.benchmark_group("x509");
    x509.bench_function("p256_verify_plus_sign", |b| {
        b.iter(|| fixture.p256_verify_and_sign())
    });
    x509.bench_function("x509_from_csr", |b| b.iter(|| fixture.x509_from_csr()));
    x509.finish();

    criterion.final_summary();

    // Criterion runs benchmarks once each under `cargo test --benches`; the ratio rounds only make
    // sense (and only take time) under `cargo bench`, which passes `--bench`.
    if std::env::args().any(|a| a == "--bench") {
        report_ratio(
            "jwt_mint/raw_es256_sign",
            JWT_TARGET,
            || fixture.raw_es256_sign(),
            || fixture.jwt_mint(),
        );
        report_ratio(
            "x509_from_csr/(p256_verify+sign)",
            X509_TARGET,
            || fixture.p256_verify_and_sign(),
            || fixture.x509_from_csr(),
        );
    }
}

/// Times `baseline` and `subject` in alternating batches and prints the throughput ratio
/// `throughput(subject) / throughput(baseline)`, computed from the median time per operation of
/// each over all rounds.
fn report_ratio(name: &str, target: f64, baseline: impl Fn(), subject: impl Fn()) {
    let iterations = calibrate(&baseline);
    let mut baseline_ns = Vec::with_capacity(ROUNDS);
    let mut subject_ns = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        baseline_ns.push(time_per_op(&baseline, iterations));
        subject_ns.push(time_per_op(&subject, iterations));
    }
    let baseline_median = median(&mut baseline_ns);
    let subject_median = median(&mut subject_ns);
    let ratio = baseline_median / subject_median;
    println!(
        "ratio {name} = {ratio:.2} (target >= {target:.2}) {} [baseline {:.1} us/op, subject {:.1} us/op, median of {ROUNDS} alternating rounds x {iterations} iterations]",
        if ratio >= target {
            "OK"
        } else {
            "BELOW TARGET"
        },
        baseline_median / 1_000.0,
        subject_median / 1_000.0,
    );
}

/// Iterations of `f` that take about [`BATCH_NANOS`].
fn calibrate(f: &impl Fn()) -> u32 {
    let probe = 50;
    let per_op = time_per_op(f, probe).max(1.0);
    // Truncation is fine: this only sizes a timing loop.
    ((BATCH_NANOS / per_op) as u32).clamp(probe, 1_000_000)
}

fn time_per_op(f: &impl Fn(), iterations: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
