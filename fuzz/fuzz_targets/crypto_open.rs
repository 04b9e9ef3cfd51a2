//! `anthill::crypto::open`, which every sealed object (pads, index, metadata)
//! goes through.
//!
//! Input: `flags (1 byte: bit 0 = index key) | aad length (1 byte) | aad |
//! sealed`. Also seals the sealed part as a plaintext and checks that it
//! opens only with the same key and associated data.
#![no_main]

use anthill::crypto;
use anthill_fuzz::keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&aad_len, rest)) = rest.split_first() else {
        return;
    };
    let (aad, sealed) = rest.split_at((aad_len as usize).min(rest.len()));
    let keys = keys();
    let (cipher, other) = if flags & 1 == 1 {
        (keys.index(), keys.pads())
    } else {
        (keys.pads(), keys.index())
    };

    if let Ok(plaintext) = crypto::open(cipher, aad, sealed, "fuzz object") {
        assert_eq!(plaintext.len() + crypto::SEAL_OVERHEAD, sealed.len());
    }

    let resealed = crypto::seal(cipher, aad, sealed).expect("seal");
    assert_eq!(resealed.len(), sealed.len() + crypto::SEAL_OVERHEAD);
    assert_eq!(
        crypto::open(cipher, aad, &resealed, "fuzz object").expect("open what was sealed"),
        sealed
    );
    assert!(
        crypto::open(other, aad, &resealed, "x").is_err(),
        "opened with the other key"
    );
    let mut longer_aad = aad.to_vec();
    longer_aad.push(0);
    assert!(
        crypto::open(cipher, &longer_aad, &resealed, "x").is_err(),
        "aad not bound"
    );
    assert!(
        crypto::open(cipher, aad, &resealed[..resealed.len() - 1], "x").is_err(),
        "truncation went unnoticed"
    );
});
