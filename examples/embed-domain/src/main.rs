//! Embedding `triggerd-domain`: validate a workflow definition, verify a webhook signature, and map
//! a webhook body into the workflow's typed inputs — all without a server.
//!
//! ```sh
//! cargo run -p embed-domain -- examples/embed-domain/workflow.json examples/embed-domain/data/webhook-body.json
//! ```

use std::process::ExitCode;

use serde_json::{Value, json};
use triggerd_domain::definition::{Definition, DefinitionError};
use triggerd_domain::mapping::{headers_to_map, trigger_input};
use triggerd_domain::signature::{SignatureScheme, sign_hmac_sha256_hex};
use triggerd_domain::trigger::TriggerConfig;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(definition_path), Some(body_path)) = (args.next(), args.next()) else {
        eprintln!("usage: embed-domain DEFINITION.(json|toml) BODY.json");
        return ExitCode::from(2);
    };
    let read =
        |path: &str| std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"));
    let (text, body) = match (read(&definition_path), read(&body_path)) {
        (Ok(t), Ok(b)) => (t, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    // 1. Validate the definition: every problem is reported at once, with its path.
    let parsed = if definition_path.ends_with(".toml") {
        Definition::from_toml_str(&text)
    } else {
        Definition::from_json_str(&text)
    };
    let definition = match parsed {
        Ok(d) => d,
        Err(DefinitionError::Invalid(problems)) => {
            eprintln!("{definition_path} is not a valid workflow definition:");
            for p in problems {
                eprintln!("  {}: {}", p.path, p.message);
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{definition_path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "definition \"{}\" is valid: {} input(s), {} step(s)",
        definition.name,
        definition.inputs.len(),
        definition.steps.len()
    );

    // 2. Take its first webhook trigger.
    let Some((name, webhook)) = definition.triggers.iter().find_map(|t| match &t.config {
        TriggerConfig::Webhook(w) => Some((&t.name, w)),
        TriggerConfig::Cron(_) => None,
    }) else {
        eprintln!("the definition declares no webhook trigger");
        return ExitCode::FAILURE;
    };

    // 3. A sender signs the body; we verify it in constant time (hmac-sha256: hex in X-Webhook-Signature).
    let secret = webhook.secret.clone().unwrap_or_default();
    let signature = sign_hmac_sha256_hex(secret.as_bytes(), body.as_bytes());
    let headers = [
        ("content-type", "application/json"),
        ("x-webhook-signature", signature.as_str()),
    ];
    if webhook.secret.is_some() {
        match webhook
            .scheme
            .verify(&secret, &headers[..], body.as_bytes(), 0)
        {
            Ok(()) => println!("signature ({}) verified", webhook.scheme),
            Err(e) => {
                eprintln!("signature refused: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    // 4. Build trigger_input (headers lower-cased, signature redacted) and map it to the inputs.
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{body_path}: malformed JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let header_bytes = headers.iter().map(|(n, v)| (*n, v.as_bytes()));
    let headers = Value::Object(headers_to_map(
        header_bytes,
        SignatureScheme::HmacSha256.header_names(),
    ));
    let request = trigger_input("POST", "", json!({}), headers, body);
    match webhook.input_mapping.apply(&definition.inputs, &request) {
        Ok(input) => {
            println!(
                "trigger \"{name}\" maps the body to input: {}",
                Value::Object(input.clone())
            );
            let output = definition.render_output(&json!({"input": input, "trigger": request}));
            match output {
                Ok(out) => println!("a run without steps would complete with output: {out}"),
                Err(e) => println!("the output template fails: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            println!(
                "the request would get 422 invalid_input: {}",
                json!(problems)
            );
            ExitCode::FAILURE
        }
    }
}
