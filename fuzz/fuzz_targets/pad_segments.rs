//! `anthill::pad::open_frames` (the frames a ranged read of a format 3 pad
//! fetched) on arbitrary bytes.
//!
//! Input: `first (u64 LE) | min_version (u64 LE) | flags (u8: bit 0, the
//! frames end the object) | fetched` (shorter inputs are all `fetched`, from
//! frame 0, ending the object). The seeds are genuine pads sealed with the
//! fuzz keys. The input's bytes are also sealed as a pad's plaintext and
//! read back by frames around an offset the input picks: that round-trips,
//! and a flipped byte, a frame of another index or pad, or the frames cut
//! short of the object's end are refused.
#![no_main]

use anthill::pad::{self, FramesAt, PadId, SEGMENT};
use anthill_fuzz::{PAD_ID, STORE_ID, keys, take_u64};
use libfuzzer_sys::fuzz_target;

const PAD_SIZE: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let parsed = (|| {
        let first = take_u64(&mut rest)?;
        let min_version = take_u64(&mut rest)?;
        let (&flags, fetched) = rest.split_first()?;
        Some((
            first % (PAD_SIZE / SEGMENT + 2),
            min_version,
            flags & 1 == 1,
            fetched,
        ))
    })();
    let (first, min_version, ends_object, fetched) = parsed.unwrap_or((0, 0, true, data));
    let keys = keys();

    let at = FramesAt { first, ends_object };
    let opened = pad::open_frames(
        keys,
        &STORE_ID,
        PAD_ID,
        at,
        min_version,
        PAD_SIZE,
        fetched.to_vec(),
    );
    if let Ok((version, plaintext, tags)) = opened {
        assert!(version >= min_version, "accepted a rolled-back segment");
        assert!(
            first * SEGMENT + plaintext.len() as u64 <= PAD_SIZE,
            "past the pad"
        );
        assert!(
            plaintext.len() <= fetched.len(),
            "more plaintext than bytes"
        );
        assert_eq!(tags.len() % 16, 0);
    }

    // The input as a genuine pad, read by the frames under one byte of it.
    let plaintext = &data[..data.len().min(PAD_SIZE as usize)];
    let sealed = pad::encode(keys, &STORE_ID, PAD_ID, 5, plaintext).expect("encode");
    let at_byte = if plaintext.is_empty() {
        0
    } else {
        (first * 7919) % plaintext.len() as u64
    };
    let (first, range) = pad::frames_of(at_byte..at_byte + 1);
    let end = (range.end as usize).min(sealed.len());
    let frames = sealed[range.start as usize..end].to_vec();
    let at = FramesAt {
        first,
        ends_object: end == sealed.len(),
    };
    let (version, bytes, _) =
        pad::open_frames(keys, &STORE_ID, PAD_ID, at, 5, PAD_SIZE, frames.clone())
            .expect("a genuine frame opens");
    assert_eq!(version, 5);
    let start = (first * SEGMENT) as usize;
    assert_eq!(
        bytes[..],
        plaintext[start..start + bytes.len()],
        "round trip"
    );
    let refused = |at: FramesAt, pad: PadId, min_version: u64, frames: Vec<u8>| {
        pad::open_frames(keys, &STORE_ID, pad, at, min_version, PAD_SIZE, frames).is_err()
    };
    let mut flipped = frames.clone();
    let flip = (min_version as usize) % flipped.len();
    flipped[flip] ^= 0x40;
    assert!(refused(at, PAD_ID, 5, flipped), "a flipped byte at {flip}");
    let moved = FramesAt {
        first: first + 1,
        ..at
    };
    assert!(
        refused(moved, PAD_ID, 5, frames.clone()),
        "a frame at another index"
    );
    assert!(
        refused(at, PadId([0x11; 16]), 5, frames.clone()),
        "another pad's frame"
    );
    assert!(refused(at, PAD_ID, 6, frames.clone()), "a rollback");
    if at.ends_object {
        let cut = frames[..frames.len() - 1].to_vec();
        assert!(refused(at, PAD_ID, 5, cut), "a pad cut short");
    }
});
