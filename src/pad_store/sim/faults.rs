//! The simulation's fault model: faults armed for a given call, the rate of
//! random transient failures, torn overwrites, and the errors they give.
//! Which fault strikes a call is drawn when it starts (`SimPadStore::begin`).

use super::{OpKind, SimPadStore, probability};
use crate::pad::PadId;
use crate::pad_store::BackendError;

/// When a failure strikes relative to the inner operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FaultTiming {
    /// Nothing reached the backend.
    Before,
    /// The backend performed the operation; the acknowledgement was lost.
    After,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Fault {
    pub(super) timing: FaultTiming,
    pub(super) permanent: bool,
}

/// A fault armed by [`SimPadStore::fail_next`] or [`SimPadStore::lose_ack_next`].
#[derive(Debug)]
pub(super) struct ArmedFault {
    pub(super) kind: OpKind,
    /// Only calls on names starting with this count ("" = every call).
    pub(super) prefix: String,
    /// Calls of `kind` still to come before the one that fails (1 = the next).
    pub(super) countdown: u64,
    pub(super) fault: Fault,
}

impl SimPadStore {
    /// With `torn_overwrites`: deletes the pad object a put is about to
    /// replace, so that until the put lands there is none (see
    /// `SimConfig::torn_overwrites`). Not a request of the client's: the
    /// model of what the service does with one.
    pub(super) async fn tear(&self, name: &str) {
        if self.config.torn_overwrites && name.starts_with(PadId::PREFIX) {
            let _ = self.inner.delete(name).await;
        }
    }

    /// Makes the `nth` call of `kind` from now (1 = the next one) fail once,
    /// before reaching the backend, with a permanent or transient error.
    /// `nth = 0` counts as 1.
    pub fn fail_next(&self, kind: OpKind, nth: u64, permanent: bool) {
        self.arm(kind, "", nth, FaultTiming::Before, permanent);
    }

    /// Like `fail_next` for the next call of `kind` on an object whose name
    /// starts with `prefix` (such as `j/`, the index log).
    pub fn fail_next_on(&self, kind: OpKind, prefix: &str, permanent: bool) {
        self.arm(kind, prefix, 1, FaultTiming::Before, permanent);
    }

    /// Makes the `nth` call of `kind` from now (1 = the next one) perform its
    /// operation on the backend and then fail with a transient error, as when
    /// an acknowledgement is lost: a `reserve` or `put` took effect although
    /// the caller saw a failure. `nth = 0` counts as 1.
    pub fn lose_ack_next(&self, kind: OpKind, nth: u64) {
        self.arm(kind, "", nth, FaultTiming::After, false);
    }

    /// Like `lose_ack_next` for the next call of `kind` on an object whose
    /// name starts with `prefix`: a write that lands and still reports
    /// failure, the case a writer must not mistake for "not written".
    pub fn lose_ack_next_on(&self, kind: OpKind, prefix: &str) {
        self.arm(kind, prefix, 1, FaultTiming::After, false);
    }

    fn arm(&self, kind: OpKind, prefix: &str, nth: u64, timing: FaultTiming, permanent: bool) {
        self.lock().armed.push(ArmedFault {
            kind,
            prefix: prefix.to_owned(),
            countdown: nth.max(1),
            fault: Fault { timing, permanent },
        });
    }

    /// Disarms every fault armed by `fail_next` or `lose_ack_next` that has not
    /// struck yet; returns how many there were.
    pub fn disarm_faults(&self) -> usize {
        std::mem::take(&mut self.lock().armed).len()
    }

    /// Changes the probability of random transient failures (clamped to `[0, 1]`).
    pub fn set_fail_rate(&self, rate: f64) {
        self.lock().fail_rate = probability(rate);
    }
}

pub(super) fn simulated(kind: OpKind, name: &str, fault: Fault) -> BackendError {
    let when = match fault.timing {
        FaultTiming::Before => "before reaching the backend",
        FaultTiming::After => "after the backend acted (acknowledgement lost)",
    };
    let message = format!("simulated failure of {kind:?} {name:?} {when}");
    if fault.permanent {
        BackendError::Permanent(message)
    } else {
        BackendError::Transient(message)
    }
}
