//! `anthill::index::from_bytes::<Vec<Record>>` on arbitrary journal batches
//! (the plaintext of a `j/<seq>` object), then replay onto an index
//! (`Index::apply`), the allocator's map rebuild, and round trips.
#![no_main]

use anthill::index::{self, Record};
use anthill_fuzz::{PAD_SIZES, check_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = index::from_bytes::<Vec<Record>>(data, "index log") else {
        return;
    };
    let pad_size = PAD_SIZES[data.len() % PAD_SIZES.len()];
    check_records(&records, data.len() / 7, pad_size);
});
