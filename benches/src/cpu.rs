//! CPU reference figures for the analysis (not rows of the table): how fast
//! this machine seals a pad, hashes data and copies memory, on one core.

use std::time::Instant;

use anthill::crypto::{self, StoreKeys};
use serde_json::{Value, json};

use crate::rng::Rng;

/// Bytes per second of `f` over `bytes` bytes, best of 5.
fn rate(bytes: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            f();
            bytes as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

pub fn run() -> Value {
    const PAD: usize = 4 << 20;
    const PADS: usize = 16;
    let data = Rng::new(7).bytes(PAD * PADS);
    let keys = StoreKeys::derive(b"secret", &[0; 16]);
    let seal = rate(PAD * PADS, || {
        for pad in data.chunks(PAD) {
            std::hint::black_box(crypto::seal(keys.pads(), b"aad", pad).expect("seal"));
        }
    });
    let hash = rate(data.len(), || {
        std::hint::black_box(crypto::piece_digest(&data));
    });
    let mut target = vec![0u8; data.len()];
    let copy = rate(data.len(), || {
        target.copy_from_slice(&data);
        std::hint::black_box(&target);
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "cores": cores,
        "seal_bytes_per_s": seal,
        "hash_bytes_per_s": hash,
        "copy_bytes_per_s": copy,
    })
}
