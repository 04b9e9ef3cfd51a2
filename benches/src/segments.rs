//! The segment size of pad format 3 (docs/architecture.md, "Pads sealed in
//! segments"): for each candidate, how fast one core seals a 4 MiB pad in
//! segments of that size, the bytes the frames add to it, and the bytes a
//! read of 1 KiB and of 64 KiB at a random offset fetches on average. The
//! format's own size is also opened, whole, against format 2's one frame.

use std::time::Instant;

use anthill::crypto::StoreKeys;
use anthill::pad::{self, FRAME_OVERHEAD, PadId};
use serde_json::{Value, json};

use crate::rng::Rng;

const PAD: usize = 4 << 20;
const PADS: usize = 8;

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

/// Mean bytes fetched by a read of `len` bytes at a uniformly random offset
/// of a full pad sealed in segments of `segment` bytes.
fn fetched(segment: u64, len: u64) -> f64 {
    let frame = segment + FRAME_OVERHEAD as u64;
    let offsets = PAD as u64 - len;
    let mut total = 0u128;
    for start in (0..offsets).step_by(97) {
        let frames = (start + len).div_ceil(segment) - start / segment;
        total += (frames * frame) as u128;
    }
    total as f64 / offsets.div_ceil(97) as f64
}

pub fn run() -> Value {
    let data = Rng::new(9).bytes(PAD * PADS);
    let keys = StoreKeys::derive(b"secret", &[0; 16]);
    let id = PadId([3; 16]);
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    for segment in [16usize << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, PAD] {
        let seal = rate(PAD * PADS, || {
            for pad in data.chunks(PAD) {
                pad::encode_segments(&keys, &[0; 16], id, 1, pad, segment, &mut out).expect("seal");
                std::hint::black_box(&out);
            }
        });
        let frames = PAD.div_ceil(segment);
        sizes.push(json!({
            "segment": segment,
            "seal_bytes_per_s": seal,
            "overhead_bytes_per_pad": frames * FRAME_OVERHEAD,
            "fetched_for_1kib": fetched(segment as u64, 1 << 10),
            "fetched_for_64kib": fetched(segment as u64, 64 << 10),
        }));
    }
    let sealed: Vec<Vec<u8>> = data
        .chunks(PAD)
        .map(|pad| pad::encode(&keys, &[0; 16], id, 1, pad).expect("seal"))
        .collect();
    let open3 = rate(PAD * PADS, || {
        for object in &sealed {
            let opened = pad::open(&keys, &[0; 16], id, 1, PAD as u64, object.clone());
            std::hint::black_box(opened.expect("open"));
        }
    });
    let sealed2: Vec<Vec<u8>> = data
        .chunks(PAD)
        .map(|pad| pad::encode_format2(&keys, &[0; 16], id, 1, pad).expect("seal"))
        .collect();
    let open2 = rate(PAD * PADS, || {
        for object in &sealed2 {
            let opened = pad::open(&keys, &[0; 16], id, 1, PAD as u64, object.clone());
            std::hint::black_box(opened.expect("open"));
        }
    });
    json!({
        "pad": PAD,
        "sizes": sizes,
        "open_format3_bytes_per_s": open3,
        "open_format2_bytes_per_s": open2,
    })
}
