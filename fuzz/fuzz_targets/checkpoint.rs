//! `anthill::index::from_bytes::<Index>` on arbitrary checkpoints (the
//! plaintext of a `c/<seq>` object), then a round trip, the allocator's map
//! rebuild, and a few records applied on top.
#![no_main]

use anthill::index::{self, Index, Record};
use anthill_fuzz::{PAD_SIZES, apply_all, check_index};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut index) = index::from_bytes::<Index>(data, "index checkpoint") else {
        return;
    };
    let pad_size = PAD_SIZES[data.len() % PAD_SIZES.len()];
    check_index(&index, pad_size);
    // Records a later log would hold, touching the checkpoint's keys.
    let mut later = Vec::new();
    // A decoded checkpoint holds its items in memory: reading them cannot fail.
    let keys = index.items.keys().expect("items in memory");
    for key in keys.iter().chain(index.pending.keys()).take(4) {
        later.push(Record::ClearPending { key: key.clone() });
        later.push(Record::Remove { key: key.clone() });
    }
    apply_all(&mut index, &later);
    check_index(&index, pad_size);
});
