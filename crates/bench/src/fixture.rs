//! What the scenarios send: a step-less workflow with typed inputs (and, for `steps`, the same
//! with one `http` step), webhook triggers with an `hmac-sha256` secret and an input mapping, and
//! ~300-byte signed JSON bodies.

use std::net::SocketAddr;

use http::{HeaderName, HeaderValue, Method};
use serde_json::{Value, json};
use triggerd_domain::signature::sign_hmac_sha256_hex;

use crate::Error;
use crate::api::ApiClient;
use crate::load::Prepared;

/// The workflow every scenario deploys: four inputs, no steps, an output template (so a run's
/// completion renders something, as a real one would).
pub fn workflow(name: &str) -> Value {
    json!({
        "name": name,
        "description": "triggerd-bench: an order webhook",
        "inputs": {
            "email": {"type": "string", "required": true},
            "value": {"type": "integer", "required": true},
            "currency": {"type": "string", "default": "EUR", "enum": ["EUR", "USD"]},
            "event": {"type": "string"}
        },
        "output": {
            "summary": "order of {{ input.value }} {{ input.currency }} from {{ input.email }}",
            "event": "{{ input.event }}"
        }
    })
}

/// The `steps` scenario's workflow: [`workflow`]'s inputs, and one `http` step that POSTs
/// `{"n": <input.value>, "email": <input.email>}` to `url`; the output is the step's status.
pub fn step_workflow(name: &str, url: &str) -> Value {
    let mut w = workflow(name);
    w["description"] = json!("triggerd-bench: an order webhook forwarded by one http step");
    w["steps"] = json!([{
        "id": "call",
        "type": "http",
        "request": {
            "method": "POST",
            "url": url,
            "body": {"n": "{{ input.value }}", "email": "{{ input.email }}"}
        }
    }]);
    w["output"] = json!({"status": "{{ steps.call.output.status }}"});
    w
}

/// A webhook trigger's configuration: signed, mapped from body, query and a header, and no rate
/// limit (the benchmark measures throughput, not the limiter's refusals).
pub fn trigger_config(secret: &str) -> Value {
    json!({
        "secret": secret,
        "signature": {"scheme": "hmac-sha256"},
        "input_mapping": {
            "email": "customer.email",
            "value": "amount",
            "currency": "$query.currency",
            "event": "$headers.x-shop-event"
        },
        "rate_limit_per_minute": 0,
        "methods": ["POST"],
        "response": {"mode": "async"}
    })
}

/// The `i`-th order body: about 300 bytes of JSON, different per `i`.
pub fn order_body(i: usize) -> String {
    let body = json!({
        "id": format!("ord_{i:08}"),
        "event": "order.created",
        "customer": {
            "email": format!("customer{}@example.com", i % 9973),
            "name": "Ada Lovelace",
            "tier": if i % 3 == 0 { "gold" } else { "standard" }
        },
        "amount": 1000 + (i % 50_000),
        "items": [
            {"sku": format!("SKU-{:04}", i % 7919), "qty": 1 + i % 4, "price": 2450},
            {"sku": "SKU-0042", "qty": 1, "price": 1999}
        ],
        "shipping": {"country": "DE", "method": "express"},
        "created_at": "2025-05-01T12:00:00Z"
    });
    body.to_string()
}

/// A webhook trigger the scenario created.
#[derive(Debug, Clone)]
pub struct Hook {
    /// `trg_...`.
    pub id: String,
    /// `wht_...`.
    pub token: String,
    /// The signing secret.
    pub secret: String,
}

/// Puts [`workflow`], deploys it, and creates `triggers` webhook triggers on the deployment,
/// `concurrency` at a time (on separate connections, so the server batches their writes).
pub async fn setup(
    addr: SocketAddr,
    admin_token: &str,
    triggers: usize,
    concurrency: usize,
) -> Result<Vec<Hook>, Error> {
    setup_workflow(
        addr,
        admin_token,
        &workflow("bench-order"),
        triggers,
        concurrency,
    )
    .await
}

/// Like [`setup`], with the workflow `definition` (named by its `name`; it must accept
/// [`workflow`]'s inputs, which the triggers map).
pub async fn setup_workflow(
    addr: SocketAddr,
    admin_token: &str,
    definition: &Value,
    triggers: usize,
    concurrency: usize,
) -> Result<Vec<Hook>, Error> {
    let mut api = ApiClient::connect(addr, admin_token).await?;
    let deployment_id = deploy(&mut api, definition).await?;

    let workers = concurrency.clamp(1, triggers.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let deployment_id = deployment_id.clone();
        let admin_token = admin_token.to_owned();
        tasks.spawn(async move {
            let mut api = ApiClient::connect(addr, &admin_token).await?;
            let mut hooks = Vec::new();
            for i in (w..triggers).step_by(workers) {
                let secret = format!("bench-secret-{i:05}-a-long-random-string");
                let (id, token) = webhook(
                    &mut api,
                    &deployment_id,
                    &format!("bench-{i}"),
                    &trigger_config(&secret),
                )
                .await?;
                hooks.push((i, Hook { id, token, secret }));
            }
            Ok::<_, Error>(hooks)
        });
    }
    let mut all = Vec::with_capacity(triggers);
    while let Some(joined) = tasks.join_next().await {
        let hooks = joined.map_err(|e| Error::new(format!("setup task failed: {e}")))??;
        all.extend(hooks);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, h)| h).collect())
}

/// Puts the workflow `definition` (named by its `name`) and deploys it as `bench`; returns the
/// deployment's id.
pub async fn deploy(api: &mut ApiClient, definition: &Value) -> Result<String, Error> {
    let name = definition["name"]
        .as_str()
        .ok_or_else(|| Error::new("a workflow definition without a name"))?;
    api.expect(
        Method::PUT,
        &format!("/workflows/{name}"),
        Some(definition),
        200,
    )
    .await?;
    let deployment = api
        .expect(
            Method::POST,
            &format!("/workflows/{name}/deployments"),
            Some(&json!({"name": "bench"})),
            201,
        )
        .await?;
    deployment["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::new(format!("deployment without id: {deployment}")))
}

/// Creates a webhook trigger `name` with `config` on the deployment; returns its id and token.
pub async fn webhook(
    api: &mut ApiClient,
    deployment_id: &str,
    name: &str,
    config: &Value,
) -> Result<(String, String), Error> {
    let body = json!({"trigger_type": "webhook", "name": name, "config": config});
    let trigger = api
        .expect(
            Method::POST,
            &format!("/deployments/{deployment_id}/triggers"),
            Some(&body),
            201,
        )
        .await?;
    let field = |k: &str| {
        trigger[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::new(format!("trigger without {k}: {trigger}")))
    };
    Ok((field("id")?, field("token")?))
}

/// `count` signed webhook requests spread round-robin over `hooks` (request `i` goes to hook
/// `i % hooks.len()` with body `i`), all built and signed now.
pub fn signed_requests(hooks: &[Hook], count: usize) -> Vec<Prepared> {
    let event = HeaderName::from_static("x-shop-event");
    let signature = HeaderName::from_static("x-webhook-signature");
    (0..count)
        .map(|i| {
            let hook = &hooks[i % hooks.len()];
            let body = order_body(i);
            let sig = format!(
                "sha256={}",
                sign_hmac_sha256_hex(hook.secret.as_bytes(), body.as_bytes())
            );
            let currency = if i % 2 == 0 { "EUR" } else { "USD" };
            let mut req = Prepared::post_json(
                &format!("/api/webhooks/{}?currency={currency}", hook.token),
                body,
            );
            req.headers
                .insert(event.clone(), HeaderValue::from_static("order.created"));
            if let Ok(v) = HeaderValue::from_str(&sig) {
                req.headers.insert(signature.clone(), v);
            }
            req
        })
        .collect()
}

/// The same bodies, unsigned, to any path (for the baseline).
pub fn plain_requests(path: &str, count: usize) -> Vec<Prepared> {
    (0..count)
        .map(|i| {
            let mut req = Prepared::post_json(path, order_body(i));
            req.headers.insert(
                HeaderName::from_static("x-shop-event"),
                HeaderValue::from_static("order.created"),
            );
            req
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_about_300_bytes_and_distinct() {
        for i in [0, 1, 999, 123_456] {
            let len = order_body(i).len();
            assert!((250..=350).contains(&len), "body {i} is {len} bytes");
        }
        assert_ne!(order_body(1), order_body(2));
    }

    #[test]
    fn the_step_workflow_posts_the_input_to_the_url() {
        let w = step_workflow("s", "http://127.0.0.1:9/");
        assert_eq!(w["inputs"], workflow("s")["inputs"]);
        assert_eq!(w["steps"][0]["type"], "http");
        assert_eq!(w["steps"][0]["request"]["url"], "http://127.0.0.1:9/");
        assert_eq!(w["steps"][0]["request"]["body"]["n"], "{{ input.value }}");
        assert_eq!(w["output"]["status"], "{{ steps.call.output.status }}");
    }

    #[test]
    fn requests_rotate_over_hooks_and_carry_a_valid_signature() {
        let hooks: Vec<Hook> = (0..3)
            .map(|i| Hook {
                id: format!("trg_{i}"),
                token: format!("wht_{i}"),
                secret: format!("secret-{i}"),
            })
            .collect();
        let reqs = signed_requests(&hooks, 7);
        assert_eq!(reqs.len(), 7);
        assert!(reqs[4].uri.path().ends_with("wht_1"));
        let sig = reqs[4].headers["x-webhook-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            format!(
                "sha256={}",
                sign_hmac_sha256_hex(b"secret-1", &reqs[4].body)
            )
        );
    }
}
