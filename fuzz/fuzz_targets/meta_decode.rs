//! `anthill::meta::Meta::decode` and `Meta::unlock` on arbitrary metadata
//! objects. Seeds are genuine metadata sealed with the fuzz secret.
#![no_main]

use anthill::meta::Meta;
use anthill_fuzz::SECRET;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = Meta::decode(data) else {
        return;
    };
    let encoded = meta.encode().expect("encode");
    assert_eq!(Meta::decode(&encoded).expect("decode again"), meta);
    let right = meta.unlock(SECRET).is_ok();
    let wrong = meta.unlock(b"not the fuzz secret").is_ok();
    assert!(!(right && wrong), "metadata unlocks with two secrets");
});
