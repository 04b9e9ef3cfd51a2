//! anthill: items of any size stored in fixed-size, costly-to-create pads on a
//! backend, through a memory allocator that reuses space and reserves new pads
//! only after the caller confirms the cost.
//!
//! Architecture (see `docs/architecture.md`):
//! - [`pad_store`]: the pad network (memory, local folder, S3, simulation),
//!   behind the [`pad_store::Backend`] interface; its failures are
//!   [`backend_error::BackendError`]s.
//! - [`memory_map`]: the pure address space of pads, used and free blocks.
//! - [`allocator`]: the memory map plus I/O: concurrent expand, write, read.
//! - [`index`] and [`journal`]: the master index (key -> placement) and its
//!   durable, encrypted log.
//! - [`store`]: `store_item` and friends, the API the Python layer wraps.

pub mod allocator;
pub mod backend_error;
mod blocking;
pub mod crypto;
pub mod error;
pub mod events;
mod group_commit;
#[cfg(unix)]
pub mod held_files;
pub mod index;
pub mod journal;
pub mod memory_map;
pub mod meta;
pub mod pad;
mod pad_io;
pub mod pad_store;
pub mod retry;
pub mod seen_logs;
pub mod store;
mod writer_gate;

pub use error::{Error, Result};
pub use events::{Callback, EventSink, GetEvent, OperationProgress, PutEvent};
pub use store::{
    CompactReport, ItemInfo, PutOptions, StorageSummary, Store, StoreOptions, VerifyReport,
};

#[cfg(feature = "python")]
mod python;
