//! Behaviour tests of the anthill core: one test binary, one module per area.

mod backend_conformance;
mod memory_map;
mod store;
