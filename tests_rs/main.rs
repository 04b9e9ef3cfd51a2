//! Behaviour tests of the anthill core: one test binary, one module per area.

mod backend_conformance;
mod backend_urls;
mod cancellation;
mod capped_reads;
mod compaction;
mod folder_pads;
mod format_fixture;
mod fuzz_regressions;
mod hardening;
mod index_cache;
mod index_journal;
mod log_history;
mod medium_writes;
mod memory_map;
mod open_cost;
mod ranged_reads;
mod reliability;
mod s3;
mod s3_failures;
mod secrets;
mod sim;
mod small_writes;
mod store;
mod store_handles;
mod store_ops;
mod stream;
mod torn_overwrites;
mod writers;

/// A name no other test (or earlier run) uses: for objects and stores that
/// outlive a test on a shared backend.
fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
