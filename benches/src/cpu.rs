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
        "seal_and_write_1gib_s": seal_and_write(&keys, cores),
    })
}

/// Seconds to seal 1 GiB as 4 MiB pads and write each to a file of its own
/// (no rename, no fsync) on every core, best of 3: the work a large put on a
/// folder store cannot avoid, as a floor for P2.
fn seal_and_write(keys: &StoreKeys, cores: usize) -> f64 {
    const PAD: usize = 4 << 20;
    let data = Rng::new(8).bytes(1 << 30);
    let scratch = std::env::var_os("ANTHILL_BENCH_SCRATCH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scratch"))
        .join("seal-and-write");
    (0..3)
        .map(|_| {
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch).expect("scratch folder");
            let started = Instant::now();
            std::thread::scope(|scope| {
                for core in 0..cores {
                    let (data, scratch) = (&data, &scratch);
                    scope.spawn(move || {
                        let mut sealed = Vec::new();
                        for (i, pad) in data.chunks(PAD).enumerate().skip(core).step_by(cores) {
                            sealed.clear();
                            crypto::seal_into(keys.pads(), b"aad", pad, &mut sealed).expect("seal");
                            std::fs::write(scratch.join(format!("{i}")), &sealed).expect("write");
                        }
                    });
                }
            });
            let seconds = started.elapsed().as_secs_f64();
            let _ = std::fs::remove_dir_all(&scratch);
            seconds
        })
        .fold(f64::INFINITY, f64::min)
}
