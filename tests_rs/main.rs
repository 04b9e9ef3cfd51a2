//! Behaviour tests of the anthill core: one test binary, one module per area.

mod backend_conformance;
mod fuzz_regressions;
mod index_journal;
mod memory_map;
mod reliability;
mod s3;
mod store;
