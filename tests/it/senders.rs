//! Every signature scheme of SPEC 4.2 end to end over HTTP, and the sender examples of
//! `docs/webhooks.md` run as written.
//!
//! The signatures are computed here by an independent implementation (ring's HMAC, the `base64`
//! crate and hex by hand; never `triggerd_domain::signature`), which first reproduces the
//! providers' published test vectors. For each scheme: a valid signature gets 201 and a run whose
//! `trigger_input` holds the body and the redacted signature header; a tampered body, a wrong
//! secret or a missing header gets 401 `bad_signature` and no run; the timestamped schemes
//! (`stripe`, `slack`, `standard-webhooks`) refuse a timestamp 301 s in the past or the future
//! and accept one 290 s away either way; several signatures are enough when one of them matches.
//! Every request's activity-log row is checked for its outcome, status and run.
//!
//! **Tested documentation.** In `docs/webhooks.md`, a line `<!-- test-config: NAME -->` right
//! before a fenced `json` block marks the body of `POST /deployments/{id}/triggers` for sender
//! NAME, and `<!-- test: NAME -->` right before a fenced `sh` block marks the command that sends
//! to it. [`documented_sender_examples_run_as_written`] creates each trigger (on a workflow that
//! declares every mapped input as a required string) and runs each command with
//! `bash -euo pipefail`, in an empty directory, with an environment holding only `PATH`, `URL`
//! (the trigger's `url`), `SECRET` (its `config.secret`) and `API_KEY` (its first
//! `config.api_keys`); then every request the command sent must be in the activity log as
//! accepted with a 2xx, each with a run. It runs on SQLite only: a shell command cannot tell the
//! backends apart, so PostgreSQL would add time without adding proof.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use triggerd_tests::{Backend, Reply, TestServer, Webhook, send, str_field};

/// Rows of refused requests may be written just after the response.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// How far a signed timestamp may be from the server's clock, either way (SPEC 4.2).
const TOLERANCE_SECS: i64 = 300;

/// The body most requests send.
const BODY: &str = r#"{"order": {"id": 42, "email": "a@example.com"}}"#;

/// [`BODY`] with one character changed.
const TAMPERED: &str = r#"{"order": {"id": 43, "email": "a@example.com"}}"#;

/// The `webhook-id` of the Standard Webhooks requests.
const MESSAGE_ID: &str = "msg_2cN8xQ1vT7pL4rZ9";

/// The documentation page whose marked examples are run.
const WEBHOOKS_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhooks.md");

/// The senders `docs/webhooks.md` must show, each with the scheme its trigger uses (`None`: no
/// secret, no signature).
const DOCUMENTED_SENDERS: &[(&str, Option<&str>)] = &[
    ("github", Some("github")),
    ("stripe", Some("stripe")),
    ("slack", Some("slack")),
    ("standard-webhooks", Some("standard-webhooks")),
    ("hmac-sha256", Some("hmac-sha256")),
    ("form", None),
    ("multipart", None),
];

// ---------------------------------------------------------------------------------------------
// The independent signer.

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, &parts.concat()).as_ref().to_vec()
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `X-Webhook-Signature` (`hmac-sha256`): hex HMAC of the body, keyed with the secret's bytes.
fn plain_hex(secret: &str, body: &[u8]) -> String {
    hex(&hmac_sha256(secret.as_bytes(), &[body]))
}

/// `X-Hub-Signature-256` (GitHub): `sha256=<hex HMAC of the body>`.
fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", plain_hex(secret, body))
}

/// One Stripe `v1` signature: hex HMAC of `<ts>.<body>`, keyed with the secret's bytes as given.
fn stripe_v1(secret: &str, ts: i64, body: &[u8]) -> String {
    hex(&hmac_sha256(
        secret.as_bytes(),
        &[ts.to_string().as_bytes(), b".", body],
    ))
}

/// Slack's signature without its `v0=`: hex HMAC of `v0:<ts>:<body>`.
fn slack_v0(secret: &str, ts: i64, body: &[u8]) -> String {
    hex(&hmac_sha256(
        secret.as_bytes(),
        &[b"v0:", ts.to_string().as_bytes(), b":", body],
    ))
}

/// The Standard Webhooks key: the base64 decoding of the secret after `whsec_`.
fn standard_key(secret: &str) -> Vec<u8> {
    let encoded = secret
        .strip_prefix("whsec_")
        .expect("a Standard Webhooks secret starts with whsec_");
    BASE64.decode(encoded).expect("the secret's base64 part")
}

/// One Standard Webhooks signature without its `v1,`: base64 HMAC of `<id>.<ts>.<body>`.
fn standard_v1(key: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
    BASE64.encode(hmac_sha256(
        key,
        &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
    ))
}

/// The five schemes of SPEC 4.2, as senders use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    HmacSha256,
    Github,
    Stripe,
    Slack,
    StandardWebhooks,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Slack => "slack",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }

    /// Whether the scheme signs a timestamp that must be within the tolerance.
    fn timestamped(self) -> bool {
        matches!(
            self,
            Scheme::Stripe | Scheme::Slack | Scheme::StandardWebhooks
        )
    }

    /// The header that carries the signature, stored as `"[redacted]"`.
    fn signature_header(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "x-webhook-signature",
            Scheme::Github => "x-hub-signature-256",
            Scheme::Stripe => "stripe-signature",
            Scheme::Slack => "x-slack-signature",
            Scheme::StandardWebhooks => "webhook-signature",
        }
    }

    /// Every header a sender of this scheme sends for `body` signed with `secret` at `ts`.
    fn headers(self, secret: &str, ts: i64, body: &str) -> Vec<(&'static str, String)> {
        let body = body.as_bytes();
        match self {
            Scheme::HmacSha256 => vec![("x-webhook-signature", plain_hex(secret, body))],
            Scheme::Github => vec![("x-hub-signature-256", github_signature(secret, body))],
            Scheme::Stripe => vec![(
                "stripe-signature",
                format!("t={ts},v1={}", stripe_v1(secret, ts, body)),
            )],
            Scheme::Slack => vec![
                ("x-slack-request-timestamp", ts.to_string()),
                (
                    "x-slack-signature",
                    format!("v0={}", slack_v0(secret, ts, body)),
                ),
            ],
            Scheme::StandardWebhooks => {
                let signature = standard_v1(&standard_key(secret), MESSAGE_ID, ts, body);
                vec![
                    ("webhook-id", MESSAGE_ID.to_owned()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", format!("v1,{signature}")),
                ]
            }
        }
    }
}

/// The trigger configuration of `scheme` keyed with `secret`, without a rate limit.
fn scheme_config(scheme: Scheme, secret: &str) -> Value {
    json!({
        "secret": secret,
        "signature": {"scheme": scheme.name()},
        "rate_limit_per_minute": 0
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Sleeps until just after a whole second of the system clock and returns that second. The
/// server reads the same clock: a request sent right away is checked while it still shows that
/// second, so a timestamp `returned + 301` is 301 s ahead of the server, not 300 (a request that
/// took most of a second to be checked would make that check fail). A wake-up more than 50 ms
/// late, on a busy machine, waits for the next second instead.
async fn start_of_next_second() -> i64 {
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970");
        let rest = Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()));
        tokio::time::sleep(rest + Duration::from_millis(2)).await;
        let woke = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970");
        if woke.subsec_millis() < 50 {
            return woke.as_secs() as i64;
        }
    }
}

#[test]
fn the_independent_signer_reproduces_the_published_vectors() {
    // GitHub's documented example ("Validating webhook deliveries").
    assert_eq!(
        github_signature("It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    // The Standard Webhooks libraries' test vector.
    assert_eq!(
        standard_v1(
            &standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        ),
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    // RFC 4231, test case 2 (the HMAC itself).
    assert_eq!(
        plain_hex("Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

// ---------------------------------------------------------------------------------------------
// One signed endpoint and what was sent to it.

/// What one request should have left in the activity log.
#[derive(Debug)]
struct Sent {
    what: String,
    request_id: String,
    status: u16,
    outcome: &'static str,
    run_id: Option<String>,
}

/// A server with one webhook trigger of one scheme, recording each request sent to it so that
/// [`Endpoint::finish`] can check the runs and the activity log.
#[derive(Debug)]
struct Endpoint {
    server: TestServer,
    hook: Webhook,
    scheme: Scheme,
    sent: Vec<Sent>,
}

impl Endpoint {
    async fn start(backend: Backend, scheme: Scheme, config: Value) -> Endpoint {
        Endpoint::on(TestServer::start(backend).await, scheme, config).await
    }

    /// Sets up a workflow without inputs (to look at `trigger_input` alone) on `server`.
    async fn on(server: TestServer, scheme: Scheme, config: Value) -> Endpoint {
        let hook = server
            .setup_webhook(json!({"name": "capture"}), config)
            .await;
        assert_eq!(
            hook.trigger["config"]["signature"]["scheme"],
            scheme.name(),
            "{:#}",
            hook.trigger
        );
        assert_eq!(hook.trigger["config"]["secret_configured"], true);
        Endpoint {
            server,
            hook,
            scheme,
            sent: Vec::new(),
        }
    }

    /// POSTs `body` (as JSON when it parses, else as `text/plain`) with `headers`.
    async fn post(&self, headers: &[(&str, String)], body: &str) -> Reply {
        let content_type = if serde_json::from_str::<Value>(body).is_ok() {
            "application/json"
        } else {
            "text/plain"
        };
        let mut request = self
            .server
            .plain()
            .post(&self.hook.url)
            .header("content-type", content_type)
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        send(request).await
    }

    /// Sends a request that must be accepted; returns its run, after checking that the run holds
    /// the body and the redacted signature header.
    async fn accept(&mut self, what: &str, headers: &[(&str, String)], body: &str) -> Value {
        let reply = self.post(headers, body).await;
        self.server
            .expect(&reply, 201, &format!("{} {what}", self.scheme.name()));
        let run_id = str_field(&reply.body, "run_id");
        let run = self.server.get_run(&run_id).await;
        assert_eq!(run["trigger_id"], self.hook.id.as_str(), "{what}: {run:#}");
        let trigger_input = &run["trigger_input"];
        if let Ok(parsed) = serde_json::from_str::<Value>(body) {
            assert_eq!(trigger_input["body"], parsed, "{what}: {run:#}");
        }
        assert_eq!(
            trigger_input["headers"][self.scheme.signature_header()],
            "[redacted]",
            "{what}: {run:#}"
        );
        let stored = run.to_string();
        for (name, value) in headers {
            if *name == self.scheme.signature_header() {
                assert!(
                    !stored.contains(value.as_str()),
                    "{what}: the signature leaked into the run: {run:#}"
                );
            }
        }
        self.sent.push(Sent {
            what: what.to_owned(),
            request_id: reply.request_id(),
            status: 201,
            outcome: "accepted",
            run_id: Some(run_id),
        });
        run
    }

    /// Sends a request that must get 401 `bad_signature`; returns the reply.
    async fn refuse(&mut self, what: &str, headers: &[(&str, String)], body: &str) -> Reply {
        let reply = self.post(headers, body).await;
        assert_eq!(
            (reply.status, reply.body["code"].as_str()),
            (401, Some("bad_signature")),
            "{} {what}: expected 401 bad_signature, got {} {}",
            self.scheme.name(),
            reply.status,
            reply.text
        );
        reply.assert_error(401, "bad_signature");
        self.sent.push(Sent {
            what: what.to_owned(),
            request_id: reply.request_id(),
            status: 401,
            outcome: "bad_signature",
            run_id: None,
        });
        reply
    }

    /// Like [`Endpoint::refuse`], for a request whose signature is right and whose timestamp is
    /// not: the error must say it is the timestamp.
    async fn refuse_timestamp(&mut self, what: &str, headers: &[(&str, String)]) {
        let reply = self.refuse(what, headers, BODY).await;
        let message = reply.body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("timestamp"),
            "{} {what}: refused, but not for its timestamp: {}",
            self.scheme.name(),
            reply.text
        );
    }

    /// What every scheme must do with `secret` (and refuse with `wrong_secret`): a valid
    /// signature is accepted; a tampered body, a wrong secret and no signature are refused;
    /// for timestamped schemes, 301 s off either way is refused and 290 s off is accepted.
    async fn check_common(&mut self, secret: &str, wrong_secret: &str) {
        let scheme = self.scheme;
        let now = unix_now();
        self.accept("valid signature", &scheme.headers(secret, now, BODY), BODY)
            .await;
        self.refuse(
            "tampered body",
            &scheme.headers(secret, now, BODY),
            TAMPERED,
        )
        .await;
        self.refuse(
            "wrong secret",
            &scheme.headers(wrong_secret, now, BODY),
            BODY,
        )
        .await;
        // Every header but the signature (the timestamp and id headers of the scheme).
        let unsigned: Vec<(&str, String)> = scheme
            .headers(secret, now, BODY)
            .into_iter()
            .filter(|(name, _)| *name != scheme.signature_header())
            .collect();
        self.refuse("no signature header", &unsigned, BODY).await;

        if scheme.timestamped() {
            // The future case first, right at the start of a second (see start_of_next_second).
            let now = start_of_next_second().await;
            let ahead = now + TOLERANCE_SECS + 1;
            self.refuse_timestamp(
                "timestamp 301 s in the future",
                &scheme.headers(secret, ahead, BODY),
            )
            .await;
            let stale = now - TOLERANCE_SECS - 1;
            self.refuse_timestamp("timestamp 301 s old", &scheme.headers(secret, stale, BODY))
                .await;
            let now = unix_now();
            self.accept(
                "timestamp 290 s old",
                &scheme.headers(secret, now - 290, BODY),
                BODY,
            )
            .await;
            self.accept(
                "timestamp 290 s in the future",
                &scheme.headers(secret, now + 290, BODY),
                BODY,
            )
            .await;
        }
    }

    /// Checks that exactly the accepted requests started runs, and that each request's
    /// activity-log row has its outcome, status and run.
    async fn finish(self) {
        let mut runs: Vec<String> = self
            .server
            .runs_of_trigger(&self.hook.id)
            .await
            .iter()
            .map(|run| str_field(run, "id"))
            .collect();
        runs.sort();
        let mut accepted: Vec<String> = self
            .sent
            .iter()
            .filter_map(|sent| sent.run_id.clone())
            .collect();
        accepted.sort();
        assert_eq!(
            runs,
            accepted,
            "{}: the runs are those of the accepted requests, no more",
            self.scheme.name()
        );

        let rows = self
            .server
            .wait_for_requests(&self.hook.id, self.sent.len(), LOG_TIMEOUT)
            .await;
        for sent in &self.sent {
            let row = rows
                .iter()
                .find(|row| row["id"] == sent.request_id.as_str())
                .unwrap_or_else(|| panic!("{}: no activity row in {rows:#?}", sent.what));
            assert_eq!(row["outcome"], sent.outcome, "{}: {row:#}", sent.what);
            assert_eq!(row["status_code"], sent.status, "{}: {row:#}", sent.what);
            let run_id = sent.run_id.as_deref().map_or(Value::Null, Value::from);
            assert_eq!(row["run_id"], run_id, "{}: {row:#}", sent.what);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The schemes.

async fn hmac_sha256_accepts_hex_with_or_without_the_sha256_prefix(backend: Backend) {
    let secret = "hmac-secret-Q4v8Zt1xW3";
    // No `signature` key: hmac-sha256 is the default scheme.
    let config = json!({"secret": secret, "rate_limit_per_minute": 0});
    let mut endpoint = Endpoint::start(backend, Scheme::HmacSha256, config).await;
    endpoint
        .check_common(secret, "hmac-secret-Q4v8Zt1xW4")
        .await;

    let hex = plain_hex(secret, BODY.as_bytes());
    let header = |value: String| vec![("x-webhook-signature", value)];
    endpoint
        .accept("sha256= prefix", &header(format!("sha256={hex}")), BODY)
        .await;
    endpoint
        .refuse("sha1= prefix", &header(format!("sha1={hex}")), BODY)
        .await;
    endpoint
        .refuse("truncated signature", &header(hex[..62].to_owned()), BODY)
        .await;
    // The signature over the body, but in GitHub's header: not this scheme's.
    endpoint
        .refuse(
            "GitHub's header",
            &[("x-hub-signature-256", format!("sha256={hex}"))],
            BODY,
        )
        .await;
    endpoint.finish().await;
}

async fn github_documented_example_is_reproduced_and_accepted(backend: Backend) {
    const SECRET: &str = "It's a Secret to Everybody";
    const PAYLOAD: &str = "Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(github_signature(SECRET, PAYLOAD.as_bytes()), SIGNATURE);

    let config = scheme_config(Scheme::Github, SECRET);
    let mut endpoint = Endpoint::start(backend, Scheme::Github, config).await;
    let header = [("x-hub-signature-256", SIGNATURE.to_owned())];
    let run = endpoint
        .accept("GitHub's example, verbatim", &header, PAYLOAD)
        .await;
    // Not JSON: the body is stored as bytes.
    assert_eq!(
        run["trigger_input"]["body"],
        json!({
            "content_type": "text/plain",
            "size": PAYLOAD.len(),
            "data_base64": BASE64.encode(PAYLOAD),
        }),
        "{run:#}"
    );
    endpoint
        .refuse(
            "the example's signature on another body",
            &header,
            "Hello, World?",
        )
        .await;
    endpoint.finish().await;
}

async fn github_signs_the_raw_body_and_requires_the_sha256_prefix(backend: Backend) {
    let secret = "gh-secret-8Jm2Wq5Rt0";
    let config = scheme_config(Scheme::Github, secret);
    let mut endpoint = Endpoint::start(backend, Scheme::Github, config).await;
    endpoint.check_common(secret, "gh-secret-8Jm2Wq5Rt1").await;

    let hex = plain_hex(secret, BODY.as_bytes());
    endpoint
        .refuse(
            "hex without sha256=",
            &[("x-hub-signature-256", hex.clone())],
            BODY,
        )
        .await;
    // GitHub's legacy SHA-1 header alone is not enough.
    let sha1 = {
        let key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        self::hex(ring::hmac::sign(&key, BODY.as_bytes()).as_ref())
    };
    endpoint
        .refuse(
            "only the legacy X-Hub-Signature",
            &[("x-hub-signature", format!("sha1={sha1}"))],
            BODY,
        )
        .await;
    endpoint
        .refuse(
            "the plain scheme's header",
            &[("x-webhook-signature", hex)],
            BODY,
        )
        .await;
    endpoint.finish().await;
}

async fn stripe_signs_timestamp_and_body_with_the_secret_as_given(backend: Backend) {
    // A `whsec_` secret that is also valid base64, so that signing with its decoding (the
    // Standard Webhooks way, wrong for Stripe) can be tried.
    let secret = "whsec_4Gx2Lm9Qp7Rt1Vw8Yz3Bc6Df0Hj5Kn2M";
    let config = scheme_config(Scheme::Stripe, secret);
    let mut endpoint = Endpoint::start(backend, Scheme::Stripe, config).await;
    endpoint
        .check_common(secret, "whsec_4Gx2Lm9Qp7Rt1Vw8Yz3Bc6Df0Hj5Kn2N")
        .await;

    let now = unix_now();
    let body = BODY.as_bytes();
    let good = stripe_v1(secret, now, body);
    let wrong = stripe_v1("whsec_another", now, body);
    let header = |value: String| vec![("stripe-signature", value)];
    endpoint
        .accept(
            "v1=bad,v1=good",
            &header(format!("t={now},v1=bad,v1={good}")),
            BODY,
        )
        .await;
    endpoint
        .accept(
            "v1=good,v1=<well-formed, wrong>",
            &header(format!("t={now},v1={good},v1={wrong}")),
            BODY,
        )
        .await;
    endpoint
        .accept(
            "a v0 entry beside a good v1",
            &header(format!("t={now},v1={good},v0={wrong}")),
            BODY,
        )
        .await;
    endpoint
        .refuse(
            "only v1 entries count",
            &header(format!("t={now},v0={good}")),
            BODY,
        )
        .await;
    endpoint
        .refuse(
            "two wrong v1 entries",
            &header(format!("t={now},v1=bad,v1={wrong}")),
            BODY,
        )
        .await;
    endpoint
        .refuse("no t=", &header(format!("v1={good}")), BODY)
        .await;
    // The timestamp is part of what is signed.
    let other_ts = stripe_v1(secret, now - 1, body);
    endpoint
        .refuse(
            "signed with another t",
            &header(format!("t={now},v1={other_ts}")),
            BODY,
        )
        .await;
    let body_only = plain_hex(secret, body);
    endpoint
        .refuse(
            "the body alone signed",
            &header(format!("t={now},v1={body_only}")),
            BODY,
        )
        .await;
    // The key is the secret's bytes, `whsec_` included, not its base64 decoding.
    let decoded_key = hex(&hmac_sha256(
        &standard_key(secret),
        &[now.to_string().as_bytes(), b".", body],
    ));
    endpoint
        .refuse(
            "keyed with the decoded secret",
            &header(format!("t={now},v1={decoded_key}")),
            BODY,
        )
        .await;
    endpoint.finish().await;
}

async fn slack_signs_version_timestamp_and_body(backend: Backend) {
    // Slack's documented example signing secret.
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let config = scheme_config(Scheme::Slack, secret);
    let mut endpoint = Endpoint::start(backend, Scheme::Slack, config).await;
    endpoint
        .check_common(secret, "8f742231b10e8888abcd99yyyzzz85a6")
        .await;

    let now = unix_now();
    let sig = slack_v0(secret, now, BODY.as_bytes());
    let headers = |ts: i64, signature: String| {
        vec![
            ("x-slack-request-timestamp", ts.to_string()),
            ("x-slack-signature", signature),
        ]
    };
    endpoint
        .refuse("hex without v0=", &headers(now, sig.clone()), BODY)
        .await;
    endpoint
        .refuse(
            "v1= instead of v0=",
            &headers(now, format!("v1={sig}")),
            BODY,
        )
        .await;
    // The header's timestamp is the one signed.
    endpoint
        .refuse(
            "another timestamp in the header",
            &headers(now - 1, format!("v0={sig}")),
            BODY,
        )
        .await;
    endpoint
        .refuse(
            "no timestamp header",
            &[("x-slack-signature", format!("v0={sig}"))],
            BODY,
        )
        .await;
    // Slack's slash commands are form posts: signed over the raw urlencoded bytes.
    let form = "command=%2Fdeploy&text=production&user_name=ada";
    let form_sig = slack_v0(secret, now, form.as_bytes());
    let reply = send(
        endpoint
            .server
            .plain()
            .post(&endpoint.hook.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", now.to_string())
            .header("x-slack-signature", format!("v0={form_sig}"))
            .body(form),
    )
    .await;
    endpoint.server.expect(&reply, 201, "signed slash command");
    let run = endpoint
        .server
        .get_run(&str_field(&reply.body, "run_id"))
        .await;
    assert_eq!(
        run["trigger_input"]["body"],
        json!({"command": "/deploy", "text": "production", "user_name": "ada"}),
        "{run:#}"
    );
    endpoint.sent.push(Sent {
        what: "signed slash command".to_owned(),
        request_id: reply.request_id(),
        status: 201,
        outcome: "accepted",
        run_id: Some(str_field(&reply.body, "run_id")),
    });
    endpoint.finish().await;
}

async fn standard_webhooks_accepts_any_matching_v1_among_several(backend: Backend) {
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let config = scheme_config(Scheme::StandardWebhooks, secret);
    let mut endpoint = Endpoint::start(backend, Scheme::StandardWebhooks, config).await;
    let wrong_secret = format!("whsec_{}", BASE64.encode(b"another key, 24 bytes!!!"));
    endpoint.check_common(secret, &wrong_secret).await;

    let now = unix_now();
    let key = standard_key(secret);
    let good = standard_v1(&key, MESSAGE_ID, now, BODY.as_bytes());
    let wrong = standard_v1(
        &standard_key(&wrong_secret),
        MESSAGE_ID,
        now,
        BODY.as_bytes(),
    );
    let headers = |id: &str, signatures: String| {
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", signatures),
        ]
    };
    endpoint
        .accept(
            "v1,bad v1,good",
            &headers(MESSAGE_ID, format!("v1,bad v1,{good}")),
            BODY,
        )
        .await;
    endpoint
        .accept(
            "v1,<well-formed, wrong> v1,good",
            &headers(MESSAGE_ID, format!("v1,{wrong} v1,{good}")),
            BODY,
        )
        .await;
    endpoint
        .accept(
            "v1,good v1a,<other>",
            &headers(MESSAGE_ID, format!("v1,{good} v1a,{wrong}")),
            BODY,
        )
        .await;
    endpoint
        .refuse(
            "only v1 counts",
            &headers(MESSAGE_ID, format!("v1a,{good}")),
            BODY,
        )
        .await;
    endpoint
        .refuse(
            "two wrong v1",
            &headers(MESSAGE_ID, format!("v1,bad v1,{wrong}")),
            BODY,
        )
        .await;
    // The id is part of what is signed.
    endpoint
        .refuse(
            "another webhook-id",
            &headers("msg_other", format!("v1,{good}")),
            BODY,
        )
        .await;
    // The key is the decoded base64 after `whsec_`, not the secret's bytes.
    let raw_key = standard_v1(secret.as_bytes(), MESSAGE_ID, now, BODY.as_bytes());
    endpoint
        .refuse(
            "keyed with the secret string",
            &headers(MESSAGE_ID, format!("v1,{raw_key}")),
            BODY,
        )
        .await;
    endpoint
        .refuse(
            "no webhook-id",
            &[
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", format!("v1,{good}")),
            ],
            BODY,
        )
        .await;
    endpoint.finish().await;
}

/// `TRIGGERD_TEST_CLOCK` for a server whose clock shows `target_ms` from now on, running twice as
/// fast. The scaled clock shows `anchor + (real − anchor) × speed` (crates/app/src/clock.rs): at
/// speed 1 that is the real clock whatever the anchor, so `<target>x1` would not move it; at speed
/// 2 the anchor `2 × now − target` puts it at `target` now. A test lasts seconds, far inside the
/// 300 s tolerance.
fn clock_showing(target_ms: i64) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64;
    format!("{}x2", 2 * now_ms - target_ms)
}

async fn standard_webhooks_library_vector_is_accepted_verbatim(backend: Backend) {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const PAYLOAD: &str = r#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let computed = standard_v1(&standard_key(SECRET), ID, TIMESTAMP, PAYLOAD.as_bytes());
    assert_eq!(format!("v1,{computed}"), SIGNATURE);

    // The vector's timestamp is from 2021: the server's clock is put there.
    let clock = clock_showing(TIMESTAMP * 1000);
    let server = TestServer::start_with(backend, &[("TRIGGERD_TEST_CLOCK", &clock)]).await;
    let config = scheme_config(Scheme::StandardWebhooks, SECRET);
    let mut endpoint = Endpoint::on(server, Scheme::StandardWebhooks, config).await;
    let headers = [
        ("webhook-id", ID.to_owned()),
        ("webhook-timestamp", TIMESTAMP.to_string()),
        ("webhook-signature", SIGNATURE.to_owned()),
    ];
    let run = endpoint
        .accept("the library vector, verbatim", &headers, PAYLOAD)
        .await;
    assert_eq!(
        run["trigger_input"]["body"],
        json!({"test": 2_432_232_314_u64})
    );
    assert_eq!(run["trigger_input"]["headers"]["webhook-id"], ID, "{run:#}");
    // The run was stored at the server's (moved) clock: the vector was accepted because the
    // clock was near its timestamp, not because timestamps are not checked.
    let created_at = str_field(&run, "created_at");
    assert!(created_at.starts_with("2021-02-25T"), "{created_at}");
    endpoint
        .refuse(
            "the vector's signature on another body",
            &headers,
            r#"{"test": 2432232315}"#,
        )
        .await;
    endpoint.finish().await;
}

triggerd_tests::e2e_tests!(
    hmac_sha256_accepts_hex_with_or_without_the_sha256_prefix,
    github_documented_example_is_reproduced_and_accepted,
    github_signs_the_raw_body_and_requires_the_sha256_prefix,
    stripe_signs_timestamp_and_body_with_the_secret_as_given,
    slack_signs_version_timestamp_and_body,
    standard_webhooks_accepts_any_matching_v1_among_several,
    standard_webhooks_library_vector_is_accepted_verbatim,
);

// ---------------------------------------------------------------------------------------------
// The documented examples.

/// A sender's marked blocks in the documentation: the trigger to create and the command to run.
#[derive(Debug, Default)]
struct DocExample {
    config: Option<Value>,
    script: Option<String>,
}

/// The marked blocks of `markdown`, by sender name. Panics, naming the line, on a marker not
/// followed by a fenced block of the expected language, on an unclosed block or a duplicate.
fn doc_examples(markdown: &str) -> BTreeMap<String, DocExample> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut examples: BTreeMap<String, DocExample> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(marker) = line
            .trim()
            .strip_prefix("<!--")
            .and_then(|l| l.strip_suffix("-->"))
        else {
            continue;
        };
        let (language, name) = match marker.trim().split_once(':') {
            Some(("test-config", name)) => ("json", name.trim()),
            Some(("test", name)) => ("sh", name.trim()),
            _ => continue,
        };
        let fence = lines.get(i + 1).copied().unwrap_or_default();
        assert_eq!(
            fence,
            format!("```{language}"),
            "docs/webhooks.md line {}: the marker `{line}` must be followed by a ```{language} block",
            i + 1
        );
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .copied()
            .take_while(|l| *l != "```")
            .collect();
        assert!(
            i + 2 + body.len() < lines.len(),
            "docs/webhooks.md line {}: unclosed block",
            i + 2
        );
        let text = body.join("\n");
        let example = examples.entry(name.to_owned()).or_default();
        if language == "json" {
            let config = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("docs/webhooks.md line {}: `{name}` is not JSON: {e}", i + 3)
            });
            assert!(
                example.config.replace(config).is_none(),
                "two configurations for `{name}`"
            );
        } else {
            assert!(
                example.script.replace(text).is_none(),
                "two commands for `{name}`"
            );
        }
    }
    examples
}

#[test]
fn documented_blocks_are_found_with_their_markers() {
    let markdown = "intro\n<!-- test-config: a -->\n```json\n{\"x\": 1}\n```\n\n\
                    <!-- test: a -->\n```sh\necho one\necho two\n```\n<!-- other -->\n";
    let examples = doc_examples(markdown);
    assert_eq!(examples.len(), 1);
    assert_eq!(examples["a"].config, Some(json!({"x": 1})));
    assert_eq!(examples["a"].script.as_deref(), Some("echo one\necho two"));
}

/// Whether `program` is on the `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Runs `script` with `bash -euo pipefail` in `dir` with only `PATH` and `env` set (no proxy
/// variables, no `~/.curlrc`); panics with its output unless it succeeds within 30 s.
async fn run_script(
    name: &str,
    script: &str,
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> String {
    let mut command = tokio::process::Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("the `{name}` example did not finish within 30 s"))
        .unwrap_or_else(|e| panic!("cannot run bash for the `{name}` example: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the `{name}` example failed ({}):\n{script}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn documented_sender_examples_run_as_written() {
    for program in ["bash", "curl", "openssl"] {
        assert!(
            on_path(program),
            "the documented examples need `{program}` on the PATH"
        );
    }
    let markdown = std::fs::read_to_string(WEBHOOKS_DOC)
        .unwrap_or_else(|e| panic!("cannot read {WEBHOOKS_DOC}: {e}"));
    let examples = doc_examples(&markdown);
    let names: Vec<&str> = examples.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = DOCUMENTED_SENDERS.iter().map(|(name, _)| *name).collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "the marked senders of docs/webhooks.md");

    let server = TestServer::start(Backend::Sqlite).await;
    for (name, scheme) in DOCUMENTED_SENDERS {
        let example = &examples[*name];
        let body = example
            .config
            .clone()
            .unwrap_or_else(|| panic!("`{name}` has a command but no <!-- test-config -->"));
        let script = example
            .script
            .as_deref()
            .unwrap_or_else(|| panic!("`{name}` has a configuration but no <!-- test -->"));
        let config = &body["config"];

        // A workflow declaring each mapped input as a required string: a request the mapping
        // cannot fill gets 422, not a run.
        let mapped: Vec<String> = config["input_mapping"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let inputs: serde_json::Map<String, Value> = mapped
            .iter()
            .map(|input| (input.clone(), json!({"type": "string", "required": true})))
            .collect();
        let workflow = format!("doc-{name}");
        server
            .put_workflow(&workflow, json!({"name": workflow, "inputs": inputs}))
            .await;
        let deployment = str_field(&server.deploy(&workflow, "production").await, "id");
        let reply = send(
            server
                .client()
                .post(server.api(&format!("/deployments/{deployment}/triggers")))
                .json(&body),
        )
        .await;
        server.expect(
            &reply,
            201,
            &format!("create the `{name}` trigger of the docs"),
        );
        let trigger = reply.body;
        let trigger_id = str_field(&trigger, "id");
        assert_eq!(
            trigger["config"]["secret_configured"],
            scheme.is_some(),
            "`{name}`: {trigger:#}"
        );
        if let Some(scheme) = scheme {
            assert_eq!(
                trigger["config"]["signature"]["scheme"], *scheme,
                "`{name}`: {trigger:#}"
            );
        }

        let mut env = vec![("URL", str_field(&trigger, "url"))];
        if let Some(secret) = config["secret"].as_str() {
            env.push(("SECRET", secret.to_owned()));
        }
        if let Some(key) = config["api_keys"][0].as_str() {
            env.push(("API_KEY", key.to_owned()));
        }
        let dir = server.dir().join(format!("example-{name}"));
        std::fs::create_dir_all(&dir).expect("create the example's directory");
        let stdout = run_script(name, script, &dir, &env).await;

        // An accepted request is logged with its run before the answer is sent (a refused one
        // may be logged just after: then this finds no row, or the refusal, and fails too).
        let rows = server.trigger_requests(&trigger_id).await;
        assert!(
            !rows.is_empty(),
            "`{name}`: no request of the example is logged as accepted; it printed {stdout}"
        );
        for row in &rows {
            let status = row["status_code"].as_u64().unwrap_or_default();
            assert!(
                (200..300).contains(&status) && row["outcome"] == "accepted",
                "`{name}`: the example was answered {status}: {row:#}\nit printed: {stdout}"
            );
        }
        let runs = server.runs_of_trigger(&trigger_id).await;
        assert_eq!(
            runs.len(),
            rows.len(),
            "`{name}`: one run per request: {runs:#?}"
        );
        for run in &runs {
            for input in &mapped {
                assert!(
                    run["input"][input].as_str().is_some_and(|v| !v.is_empty()),
                    "`{name}`: input {input} is not filled: {run:#}"
                );
            }
        }
    }
}
