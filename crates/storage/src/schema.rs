//! The diesel schema, identical on both backends (see `migrations/{sqlite,postgres}`).
//!
//! Only SQL types that `MultiConnection` maps on both backends: `BigInt`, `Integer`, `Text`,
//! `Bool`, and `Nullable` of those.

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    workflows (name) {
        name -> Text,
        latest_version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    workflow_versions (workflow, version) {
        workflow -> Text,
        version -> BigInt,
        definition -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    deployments (id) {
        id -> Text,
        workflow -> Text,
        name -> Text,
        pinned_version -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    triggers (id) {
        id -> Text,
        deployment_id -> Text,
        name -> Nullable<Text>,
        trigger_type -> Text,
        enabled -> Bool,
        config -> Text,
        declared -> Bool,
        fire_count -> BigInt,
        last_fired_at -> Nullable<BigInt>,
        next_fire_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    webhook_tokens (token) {
        token -> Text,
        trigger_id -> Text,
        expires_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    runs (id) {
        id -> Text,
        deployment_id -> Text,
        workflow -> Text,
        workflow_version -> BigInt,
        trigger_id -> Nullable<Text>,
        source -> Text,
        status -> Text,
        input -> Text,
        trigger_input -> Text,
        context -> Text,
        step_executions -> Text,
        waiting_reason -> Nullable<Text>,
        waiting_payload -> Nullable<Text>,
        waiting_expires_at -> Nullable<BigInt>,
        final_output -> Nullable<Text>,
        error -> Nullable<Text>,
        created_at -> BigInt,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<BigInt>,
        awaited -> Bool,
    }
}

diesel::table! {
    activity (id) {
        id -> Text,
        trigger_id -> Text,
        received_at -> BigInt,
        method -> Text,
        status_code -> Integer,
        outcome -> Text,
        run_id -> Nullable<Text>,
        error -> Nullable<Text>,
        body_bytes -> BigInt,
        duration_ms -> BigInt,
        remote_addr -> Nullable<Text>,
        request -> Nullable<Text>,
        body -> Nullable<Binary>,
        body_truncated -> Bool,
        details -> Nullable<Text>,
        replay_of -> Nullable<Text>,
    }
}

diesel::table! {
    dedup_keys (trigger_id, key) {
        trigger_id -> Text,
        key -> Text,
        run_id -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    deployment_context (deployment_id, key) {
        deployment_id -> Text,
        key -> Text,
        value -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    cron_slots (trigger_id, scheduled_for) {
        trigger_id -> Text,
        scheduled_for -> BigInt,
        run_id -> Text,
        fired_at -> BigInt,
    }
}

diesel::table! {
    hooks (id) {
        id -> Text,
        scope -> Text,
        workflow -> Nullable<Text>,
        deployment_id -> Nullable<Text>,
        run_id -> Nullable<Text>,
        url -> Text,
        events -> Text,
        secret -> Text,
        origin -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        hook_id -> Text,
        event_id -> Text,
        event_type -> Text,
        run_id -> Text,
        occurred_at -> BigInt,
        status -> Text,
        attempts -> BigInt,
        next_attempt_at -> Nullable<BigInt>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    delivery_attempts (delivery_id, attempt) {
        delivery_id -> Text,
        attempt -> BigInt,
        attempted_at -> BigInt,
        status_code -> Nullable<Integer>,
        duration_ms -> BigInt,
        error -> Nullable<Text>,
        response_body -> Nullable<Text>,
    }
}

diesel::joinable!(workflow_versions -> workflows (workflow));
diesel::joinable!(triggers -> deployments (deployment_id));
diesel::joinable!(webhook_tokens -> triggers (trigger_id));

diesel::allow_tables_to_appear_in_same_query!(
    settings,
    workflows,
    workflow_versions,
    deployments,
    triggers,
    webhook_tokens,
    runs,
    activity,
    dedup_keys,
    deployment_context,
    cron_slots,
    hooks,
    deliveries,
    delivery_attempts,
);
