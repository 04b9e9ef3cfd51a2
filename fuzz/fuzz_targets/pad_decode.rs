//! `anthill::pad::decode` on arbitrary pad objects.
//!
//! Input: `min_version (u64 LE) | pad_size (u64 LE) | object` (shorter inputs
//! are all object, with min_version 0 and a 1 MiB pad). The seeds are valid
//! pads sealed with the fuzz keys, so mutations exercise every check; the
//! object is also sealed as a pad of its own and decoded back, to cover the
//! checks that follow authentication (rollback, oversize).
#![no_main]

use anthill::pad::{self, PadId};
use anthill_fuzz::{PAD_ID, STORE_ID, keys, take_u64};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let (min_version, pad_size) = match (take_u64(&mut rest), take_u64(&mut rest)) {
        (Some(min), Some(size)) => (min, size),
        _ => {
            rest = data;
            (0, 1 << 20)
        }
    };
    let object = rest;
    let keys = keys();

    if let Ok((version, plaintext)) =
        pad::decode(keys, &STORE_ID, PAD_ID, min_version, pad_size, object)
    {
        assert!(version >= min_version, "accepted a rolled-back pad");
        assert!(
            plaintext.len() as u64 <= pad_size,
            "accepted an oversized pad"
        );
    }

    // The same bytes as the plaintext of a genuine pad of version min_version.
    let sealed = pad::encode(keys, &STORE_ID, PAD_ID, min_version, object).expect("encode");
    match pad::decode(keys, &STORE_ID, PAD_ID, min_version, pad_size, &sealed) {
        Ok((version, plaintext)) => {
            assert_eq!(version, min_version);
            assert_eq!(plaintext, object, "pad round trip changed the content");
        }
        Err(error) => assert!(
            object.len() as u64 > pad_size,
            "a genuine pad within the size was refused: {error}"
        ),
    }
    if let Some(newer) = min_version.checked_add(1) {
        assert!(
            pad::decode(keys, &STORE_ID, PAD_ID, newer, u64::MAX, &sealed).is_err(),
            "rollback not detected"
        );
    }
    let other = PadId([0x11; 16]);
    assert!(
        pad::decode(keys, &STORE_ID, other, 0, u64::MAX, &sealed).is_err(),
        "a pad opened under another pad's name"
    );
    let mut flipped = sealed;
    let at = object.len() % flipped.len();
    flipped[at] ^= 0x80;
    assert!(
        pad::decode(keys, &STORE_ID, PAD_ID, 0, u64::MAX, &flipped).is_err(),
        "a bit flip at byte {at} went unnoticed"
    );
});
