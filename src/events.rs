//! Progress events of puts and gets, and the sink that hands them to the
//! user's callback one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;

use crate::error::{Error, Result};

/// Declares event types once: the Rust type itself and, from the same
/// lines, its [`EventSchema`] (name and fields, in order) and
/// `into_fields`, which the Python layer turns into instances of its
/// classes of the same names. A field added here reaches every consumer,
/// and a test of the Python package checks its dataclasses against the
/// schema.
macro_rules! declare_events {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $variant:ident $({ $($field:ident : $ty:ty),* $(,)? })? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $variant $({ $($field: $ty),* })? ),*
        }

        impl $name {
            /// Every variant with its fields, in declaration order.
            pub const SCHEMA: &'static [EventSchema] = &[
                $( EventSchema {
                    name: stringify!($variant),
                    fields: &[ $($( (stringify!($field), <$ty as EventField>::KIND) ),*)? ],
                } ),*
            ];

            /// The variant's name and its fields' values, in schema order.
            pub fn into_fields(self) -> (&'static str, Vec<(&'static str, FieldValue)>) {
                match self {
                    $( Self::$variant $({ $($field),* })? => (
                        stringify!($variant),
                        vec![ $($( (stringify!($field), EventField::into_value($field)) ),*)? ],
                    ) ),*
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)? }
    ) => {
        $(#[$meta])*
        pub struct $name { $( $(#[$field_meta])* pub $field: $ty ),* }

        impl $name {
            /// The type with its fields, in declaration order.
            pub const SCHEMA: &'static [EventSchema] = &[EventSchema {
                name: stringify!($name),
                fields: &[ $( (stringify!($field), <$ty as EventField>::KIND) ),* ],
            }];

            /// The type's name and its fields' values, in schema order.
            pub fn into_fields(self) -> (&'static str, Vec<(&'static str, FieldValue)>) {
                let Self { $($field),* } = self;
                (
                    stringify!($name),
                    vec![ $( (stringify!($field), EventField::into_value($field)) ),* ],
                )
            }
        }
    };
}

/// One event type as other languages see it: its name and its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSchema {
    pub name: &'static str,
    pub fields: &'static [(&'static str, FieldKind)],
}

/// The kinds of value an event field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A count of bytes, pads or units (`u64`).
    Count,
    /// A text (a name of an operation).
    Text,
    /// A text that may be absent.
    OptionalText,
}

/// The value of one event field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Count(u64),
    Text(&'static str),
    OptionalText(Option<String>),
}

/// A type an event field may have.
pub trait EventField {
    const KIND: FieldKind;
    fn into_value(self) -> FieldValue;
}

impl EventField for u64 {
    const KIND: FieldKind = FieldKind::Count;
    fn into_value(self) -> FieldValue {
        FieldValue::Count(self)
    }
}

impl EventField for &'static str {
    const KIND: FieldKind = FieldKind::Text;
    fn into_value(self) -> FieldValue {
        FieldValue::Text(self)
    }
}

impl EventField for Option<String> {
    const KIND: FieldKind = FieldKind::OptionalText;
    fn into_value(self) -> FieldValue {
        FieldValue::OptionalText(self)
    }
}

declare_events! {
    /// Events of a `store_item` call, in the order a put emits them.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum PutEvent {
        ReservingScratchpads {
            needed: u64,
        },
        ConfirmReservation {
            needed: u64,
            data_size: u64,
            total_space: u64,
            free_space: u64,
            current_scratchpads: u64,
            estimated_cost: Option<String>,
        },
        ReservationProgress {
            current: u64,
            total: u64,
        },
        StartingUpload {
            total_bytes: u64,
            total_pads: u64,
        },
        UploadProgress {
            bytes_written: u64,
            total_bytes: u64,
        },
        ScratchpadUploadComplete {
            index: u64,
            total: u64,
        },
        ScratchpadCommitComplete {
            index: u64,
            total: u64,
        },
        UploadFinished,
        StoreComplete,
    }
}

declare_events! {
    /// Events of a `fetch_item` call.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum GetEvent {
        StartingDownload { total_bytes: u64 },
        DownloadProgress { bytes_read: u64, total_bytes: u64 },
        DownloadFinished,
    }
}

declare_events! {
    /// Progress of a store-wide operation (`verify`, `compact`): `done` of
    /// `total` units (pads checked, pads emptied) of the named operation.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct OperationProgress {
        pub operation: &'static str,
        pub done: u64,
        pub total: u64,
    }
}

/// A user callback: `Ok(true)` continues, `Ok(false)` cancels, `Err` aborts
/// with that error.
pub type Callback<E> = Arc<dyn Fn(E) -> BoxFuture<'static, Result<bool>> + Send + Sync>;

/// Delivers the events of one operation to its callback, one at a time.
///
/// Concurrent tasks of an operation (reservations, uploads) emit through one
/// sink. The mutex serialises delivery so that the counters computed inside
/// `emit` reach the callback in increasing order; it is held across the
/// callback, never across backend I/O. After the first failure or after the
/// final event the sink is closed and emits nothing more.
pub struct EventSink<E> {
    callback: Option<Callback<E>>,
    delivery: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl<E> EventSink<E> {
    pub fn new(callback: Option<Callback<E>>) -> Self {
        Self {
            callback,
            delivery: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        }
    }

    /// A sink that drops every event.
    pub fn silent() -> Self {
        Self::new(None)
    }

    /// Builds the event with `make` (while holding the delivery lock, so
    /// counters it reads are in order) and delivers it. A callback answering
    /// `false` turns into [`Error::Cancelled`]; either failure closes the sink.
    pub async fn emit(&self, make: impl FnOnce() -> E) -> Result<()> {
        let _delivery = self.delivery.lock().await;
        let event = make();
        let Some(callback) = &self.callback else {
            return Ok(());
        };
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        match callback(event).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.close();
                Err(Error::Cancelled("the callback returned False".into()))
            }
            Err(error) => {
                self.close();
                Err(error)
            }
        }
    }

    /// Emits the final event of an operation and closes the sink.
    pub async fn finish(&self, event: E) -> Result<()> {
        let result = self.emit(|| event).await;
        self.close();
        result
    }

    /// Stops all further delivery (after an error, or when the operation ends).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names and fields `into_fields` hands over are those of the schema.
    fn assert_follows_schema(
        schema: &[EventSchema],
        (name, fields): (&str, Vec<(&str, FieldValue)>),
    ) {
        let declared = schema
            .iter()
            .find(|event| event.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the schema"));
        let names: Vec<&str> = fields.iter().map(|(field, _)| *field).collect();
        let declared_names: Vec<&str> = declared.fields.iter().map(|(field, _)| *field).collect();
        assert_eq!(names, declared_names, "{name}");
    }

    #[test]
    fn every_event_hands_over_the_fields_its_schema_declares() {
        let puts = [
            PutEvent::ReservingScratchpads { needed: 1 },
            PutEvent::ConfirmReservation {
                needed: 1,
                data_size: 2,
                total_space: 3,
                free_space: 4,
                current_scratchpads: 5,
                estimated_cost: None,
            },
            PutEvent::ReservationProgress {
                current: 1,
                total: 2,
            },
            PutEvent::StartingUpload {
                total_bytes: 1,
                total_pads: 2,
            },
            PutEvent::UploadProgress {
                bytes_written: 1,
                total_bytes: 2,
            },
            PutEvent::ScratchpadUploadComplete { index: 1, total: 2 },
            PutEvent::ScratchpadCommitComplete { index: 1, total: 2 },
            PutEvent::UploadFinished,
            PutEvent::StoreComplete,
        ];
        assert_eq!(puts.len(), PutEvent::SCHEMA.len());
        for event in puts {
            assert_follows_schema(PutEvent::SCHEMA, event.into_fields());
        }
        let gets = [
            GetEvent::StartingDownload { total_bytes: 1 },
            GetEvent::DownloadProgress {
                bytes_read: 1,
                total_bytes: 2,
            },
            GetEvent::DownloadFinished,
        ];
        assert_eq!(gets.len(), GetEvent::SCHEMA.len());
        for event in gets {
            assert_follows_schema(GetEvent::SCHEMA, event.into_fields());
        }
        let progress = OperationProgress {
            operation: "verify",
            done: 1,
            total: 2,
        };
        assert_follows_schema(OperationProgress::SCHEMA, progress.into_fields());
    }

    #[test]
    fn field_values_keep_their_kind() {
        let (_, fields) = PutEvent::ConfirmReservation {
            needed: 7,
            data_size: 0,
            total_space: 0,
            free_space: 0,
            current_scratchpads: 0,
            estimated_cost: Some("0.02".into()),
        }
        .into_fields();
        assert_eq!(fields[0], ("needed", FieldValue::Count(7)));
        assert_eq!(
            fields[5],
            (
                "estimated_cost",
                FieldValue::OptionalText(Some("0.02".into()))
            )
        );
        assert_eq!(
            PutEvent::SCHEMA[1].fields[5],
            ("estimated_cost", FieldKind::OptionalText)
        );
    }
}
