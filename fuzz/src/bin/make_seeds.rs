//! Writes seed inputs for the fuzz targets: genuine objects sealed with the
//! fuzz keys, so that the fuzzer starts from inputs that pass authentication
//! and decoding and mutates them from there.
//!
//! Usage: `make_seeds <corpus dir>`; writes `<dir>/<target>/seed-*`.
//! (`scripts/fuzz.sh` runs it; it is built along with the targets.)

use std::fs;
use std::path::Path;

use anthill::crypto;
use anthill::index::{self, Index};
use anthill::meta::Meta;
use anthill::pad;
use anthill_fuzz::{PAD_ID, SECRET, STORE_ID, apply_all, keys, sample_records};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: make_seeds <corpus dir>");
    let dir = Path::new(&dir);
    let keys = keys();

    // pad_decode: min_version | pad_size | sealed pad.
    for (name, version, plaintext) in [
        ("empty", 0u64, &b""[..]),
        ("small", 3, &b"hello pad"[..]),
        ("zeros", 7, &[0u8; 700][..]),
    ] {
        let mut input = Vec::new();
        input.extend_from_slice(&version.to_le_bytes());
        input.extend_from_slice(&4096u64.to_le_bytes());
        input.extend(pad::encode(keys, &STORE_ID, PAD_ID, version, plaintext).expect("pad"));
        write(dir, "pad_decode", name, &input);
    }

    // pad_segments: first | min_version | flags | frames.
    let segmented: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sealed = pad::encode(keys, &STORE_ID, PAD_ID, 4, &segmented).expect("pad");
    for (name, first, ends) in [("first", 0u64, false), ("last", 3, true)] {
        let (_, range) = pad::frames_of(first * pad::SEGMENT..first * pad::SEGMENT + 1);
        let end = (range.end as usize).min(sealed.len());
        let mut input = first.to_le_bytes().to_vec();
        input.extend_from_slice(&4u64.to_le_bytes());
        input.push(u8::from(ends));
        input.extend_from_slice(&sealed[range.start as usize..end]);
        write(dir, "pad_segments", name, &input);
    }

    // crypto_open: flags | aad length | aad | sealed.
    for (name, flags, aad, plaintext) in [
        ("pads", 0u8, &b"anthill pad"[..], &b"content"[..]),
        ("index", 1, &b"anthill journal"[..], &b""[..]),
    ] {
        let cipher = if flags & 1 == 1 {
            keys.index()
        } else {
            keys.pads()
        };
        let mut input = vec![flags, aad.len() as u8];
        input.extend_from_slice(aad);
        input.extend(crypto::seal(cipher, aad, plaintext).expect("seal"));
        write(dir, "crypto_open", name, &input);
    }

    // meta_decode: genuine metadata of a few pad sizes.
    for size in [512u64, 4 << 20, 1 << 30] {
        let meta = Meta::new(SECRET, size).expect("meta");
        write(
            dir,
            "meta_decode",
            &size.to_string(),
            &meta.encode().expect("encode"),
        );
    }

    // journal_records and checkpoint: a plausible history and its index,
    // and each prefix of it.
    let records = sample_records();
    for n in 0..=records.len() {
        let batch = &records[..n];
        write(
            dir,
            "journal_records",
            &n.to_string(),
            &index::to_bytes(&batch.to_vec()).expect("encode"),
        );
        let mut index = Index::default();
        apply_all(&mut index, batch);
        write(
            dir,
            "checkpoint",
            &n.to_string(),
            &index::to_bytes(&index).expect("encode"),
        );
    }

    // The structure-aware targets read raw entropy; a few varied buffers.
    for target in ["records_roundtrip", "store_open"] {
        for (name, len) in [("short", 64usize), ("long", 4096)] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
                .collect();
            write(dir, target, name, &bytes);
        }
    }
    println!("seeds written to {}", dir.display());
}
