//! Structure-aware: builds records from the input (mostly valid, referring to
//! the same few pads and keys, with edge values mixed in), encodes them as a
//! journal batch, decodes, applies to an index, checkpoints after a prefix,
//! re-encodes and decodes again: every step must give equal values.
#![no_main]

use anthill_fuzz::{PAD_SIZES, check_records, records};
use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(pad_size) = u.choose(&PAD_SIZES).copied() else {
        return;
    };
    let Ok(split) = u.int_in_range(0..=64usize) else {
        return;
    };
    let Ok(records) = records(&mut u, pad_size, 256) else {
        return;
    };
    check_records(&records, split, pad_size);
});
