//! `memory::json_heap_bytes` against what serde_json really allocates, counted by a wrapping
//! global allocator (the reason this is a test binary of its own: one allocator per binary, one
//! test, so no other thread allocates while it counts).

use std::alloc::System;

use serde_json::Value;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use triggerd_domain::memory::{json_heap_bytes, shapes};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes a parse of `text` holds once done (requested sizes, without the allocator's overhead).
fn measured(text: &str) -> u64 {
    let region = Region::new(GLOBAL);
    let value: Value = serde_json::from_str(text).unwrap();
    let change = region.change();
    drop(value);
    // stats_alloc counts a realloc's growth in `bytes_allocated` (and its shrinking in
    // `bytes_deallocated`) as well as in `bytes_reallocated`.
    let held = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    held.max(0) as u64
}

#[test]
fn the_estimate_bounds_what_a_parse_holds_for_every_shape() {
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    for bytes in [1_000, 200_000] {
        for (name, text) in shapes(bytes) {
            let real = measured(&text);
            let estimate = json_heap_bytes(text.as_bytes());
            report.push(format!(
                "{name} ({} bytes): parsed {real}, estimated {estimate} ({:.2}x)",
                text.len(),
                estimate as f64 / real.max(1) as f64
            ));
            if estimate < real {
                failures.push(format!(
                    "{name} of {} bytes: estimated {estimate} < {real} really held",
                    text.len()
                ));
            }
            // Not a wild overestimate for the shapes real senders post.
            if ["orders", "push events", "one long string"].contains(&name)
                && bytes > 1_000
                && estimate > real * 2
            {
                failures.push(format!(
                    "{name}: estimated {estimate}, more than twice the {real} held"
                ));
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{failures:#?}");
}
