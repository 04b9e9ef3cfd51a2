//! [`SimPadStore`]: a simulated pad network around any [`Backend`].
//!
//! It adds what a real pad network has and a local folder lacks: latency,
//! transient failures (including lost acknowledgements: the object was
//! created or written although the call failed) and a price per new pad. It
//! also counts every operation, so demos can show costs and tests can assert
//! counts, peak concurrency and ordering. Chosen with a `sim+<url>` URL.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use self::faults::{ArmedFault, Fault, FaultTiming, simulated};
use self::pad_writes::PadWrite;
use super::{Backend, BackendError, Capabilities, PutReceipt, WriterLock, WriterLocking};
use crate::pad::PadId;

mod faults;
mod pad_writes;

/// The most entries [`SimPadStore::op_log`] keeps; later ones are dropped
/// until [`SimPadStore::clear_log`].
pub const OP_LOG_CAPACITY: usize = 1_000_000;

/// Names of pad objects, the only ones a network charges for (`PadId`'s
/// object names; kept here so a backend does not reach up to the pad layer).
const PAD_PREFIX: &str = "p/";

/// How a [`SimPadStore`] behaves. The default simulates nothing: no latency,
/// no failures, no price.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SimConfig {
    /// Delay added to every operation, in milliseconds.
    pub latency_ms: f64,
    /// Extra delay drawn uniformly from `[0, jitter_ms]` per operation.
    pub jitter_ms: f64,
    /// Probability in `[0, 1]` that an operation fails with a transient error.
    pub fail_rate: f64,
    /// Price of one new pad (a successful `reserve`), reported as the cost.
    pub pad_price: Option<f64>,
    /// Seed of the random draws, for reproducible runs; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Model a network where a pad once paid for stays paid for (URL
    /// `pads_refund=false`): compaction then keeps emptied pads as free
    /// space instead of deleting them.
    pub pads_never_refund: bool,
    /// Append a line per pad write to this file (URL `record_pad_writes=PATH`):
    /// `<writer> <object> <version> <start_ns> <end_ns>`, the writer a
    /// process id and handle, the version the pad's header gives, the times
    /// from the system clock. Processes writing one store may share the file
    /// (each line is one append): tests check from it that no two writes of
    /// a pad ever overlapped and that its versions only grew.
    pub record_pad_writes: Option<std::path::PathBuf>,
    /// Model a service whose interrupted overwrites lose the object (URL
    /// `torn_overwrites=true`), as Garage 2.x does when the writer's
    /// connection closes while it commits (docs/s3.md): a put over an
    /// existing pad object deletes it first, so a writer killed during the
    /// put leaves neither version.
    pub torn_overwrites: bool,
}

/// The operations of a [`Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    Reserve,
    Put,
    /// A put that must reach stable storage (`Backend::put_durable`).
    DurablePut,
    Verify,
    Get,
    List,
    Delete,
}

impl OpKind {
    /// All kinds, in declaration order.
    pub const ALL: [OpKind; 7] = [
        OpKind::Reserve,
        OpKind::Put,
        OpKind::DurablePut,
        OpKind::Verify,
        OpKind::Get,
        OpKind::List,
        OpKind::Delete,
    ];
}

/// Counters of one [`OpKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that failed with a transient or permanent error, simulated or
    /// real. `NotFound` and `AlreadyExists` are answers, not failures.
    pub failures: u64,
    /// Calls running now.
    pub in_flight: u64,
    /// The most calls that ran at once (since the start or [`SimPadStore::reset_peaks`]).
    pub peak_in_flight: u64,
    /// Payload bytes sent (`reserve`, `put`) or received (`get`). Bytes sent
    /// count when the backend took them, even if the acknowledgement was lost.
    pub bytes: u64,
}

/// Counters of a [`SimPadStore`], per operation kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    pub reserve: OpStats,
    pub put: OpStats,
    pub durable_put: OpStats,
    pub verify: OpStats,
    pub get: OpStats,
    pub list: OpStats,
    pub delete: OpStats,
    /// Pads the backend created: reserves of pads (`p/` objects) that
    /// reached it, including those whose acknowledgement was lost (the
    /// network charged for them). Index objects are created with `reserve`
    /// too (only if absent), but are not pads.
    pub pads_reserved: u64,
    /// `pads_reserved` times the pad price (0 without a price).
    pub cost: f64,
    /// Pads deleted (deletes of pads' first objects that succeeded): pads
    /// a compaction released.
    pub pads_deleted: u64,
}

impl SimStats {
    /// The counters of `kind`.
    pub fn op(&self, kind: OpKind) -> &OpStats {
        match kind {
            OpKind::Reserve => &self.reserve,
            OpKind::Put => &self.put,
            OpKind::DurablePut => &self.durable_put,
            OpKind::Verify => &self.verify,
            OpKind::Get => &self.get,
            OpKind::List => &self.list,
            OpKind::Delete => &self.delete,
        }
    }

    fn op_mut(&mut self, kind: OpKind) -> &mut OpStats {
        match kind {
            OpKind::Reserve => &mut self.reserve,
            OpKind::Put => &mut self.put,
            OpKind::DurablePut => &mut self.durable_put,
            OpKind::Verify => &mut self.verify,
            OpKind::Get => &mut self.get,
            OpKind::List => &mut self.list,
            OpKind::Delete => &mut self.delete,
        }
    }
}

/// Whether an [`OpRecord`] marks the start or the end of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Start,
    End,
}

/// One entry of the operation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub kind: OpKind,
    pub phase: Phase,
    /// The object name (the prefix for `list`).
    pub name: String,
    /// At `End`: whether the call succeeded (false too when the call was
    /// dropped before it finished). Always true at `Start`.
    pub ok: bool,
}

/// Everything mutable of a [`SimPadStore`], behind one lock.
#[derive(Debug)]
struct SimState {
    rng: StdRng,
    fail_rate: f64,
    stats: SimStats,
    armed: Vec<ArmedFault>,
    log: Vec<OpRecord>,
}

impl SimState {
    fn log(&mut self, record: OpRecord) {
        if self.log.len() < OP_LOG_CAPACITY {
            self.log.push(record);
        }
    }
}

/// A [`Backend`] that adds latency, failures, a pad price and counters to
/// another one. See the module documentation.
#[derive(Debug)]
pub struct SimPadStore {
    inner: Arc<dyn Backend>,
    config: SimConfig,
    /// The inner backend's, with the simulation's price and refunds, and
    /// without direct folder writes or pads created on first write: the
    /// simulation sees (and counts, and prices) every reservation and put.
    capabilities: Capabilities,
    /// Counters, random generator, armed faults and log. Held only for
    /// bookkeeping, never across an `.await`.
    state: Mutex<SimState>,
    /// Names this handle in the pad write record: process id and a random
    /// number.
    writer_id: String,
}

impl SimPadStore {
    /// Wraps `inner`. Out-of-range settings are clamped: negative or
    /// non-finite delays to 0, `fail_rate` into `[0, 1]` (`open` rejects them
    /// instead).
    pub fn new(inner: Arc<dyn Backend>, config: SimConfig) -> Self {
        let config = SimConfig {
            latency_ms: non_negative(config.latency_ms),
            jitter_ms: non_negative(config.jitter_ms),
            fail_rate: probability(config.fail_rate),
            ..config
        };
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let of_inner = inner.capabilities();
        let capabilities = Capabilities {
            atomic_create: of_inner.atomic_create,
            pads_created_on_first_write: false,
            missing_pads_read_empty: of_inner.missing_pads_read_empty,
            deleting_pads_refunds: !config.pads_never_refund && of_inner.deleting_pads_refunds,
            price_per_pad: config.pad_price.or(of_inner.price_per_pad),
            // A model of a network service: reads check the log as on one.
            read_staleness: of_inner.read_staleness.max(super::NETWORK_READ_STALENESS),
            ranged_reads: of_inner.ranged_reads,
            range_read_granule: of_inner.range_read_granule,
            acknowledged_puts_visible: of_inner.acknowledged_puts_visible,
            overwrites_atomic: of_inner.overwrites_atomic && !config.torn_overwrites,
            folder_writer: None,
        };
        SimPadStore {
            inner,
            capabilities,
            state: Mutex::new(SimState {
                rng,
                fail_rate: config.fail_rate,
                stats: SimStats::default(),
                armed: Vec::new(),
                log: Vec::new(),
            }),
            config,
            writer_id: format!(
                "{}-{:08x}",
                std::process::id(),
                u32::from_le_bytes(crate::crypto::os_random())
            ),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// `backend` as a simulation, if it is one (a `sim+` URL), for its
    /// counters and fault injection.
    pub fn of(backend: &dyn Backend) -> Option<&SimPadStore> {
        let backend: &dyn std::any::Any = backend;
        backend.downcast_ref()
    }

    /// The settings in use (with the fail rate given at creation).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The operation log: a `Start` and an `End` record per call, in the order
    /// they happened (at most [`OP_LOG_CAPACITY`] entries).
    pub fn op_log(&self) -> Vec<OpRecord> {
        self.lock().log.clone()
    }

    /// Empties the operation log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// Resets every peak to the number of calls in flight now (0 when idle).
    pub fn reset_peaks(&self) {
        let mut state = self.lock();
        for kind in OpKind::ALL {
            let op = state.stats.op_mut(kind);
            op.peak_in_flight = op.in_flight;
        }
    }

    /// The current counters.
    pub fn sim_stats(&self) -> SimStats {
        let mut stats = self.lock().stats.clone();
        stats.cost = stats.pads_reserved as f64 * self.config.pad_price.unwrap_or(0.0);
        stats
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // The state stays consistent even if a holder panicked: every critical
        // section is a few counter updates.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a call: counts it, logs it, draws its delay and its fault.
    fn begin(&self, kind: OpKind, name: &str) -> (InFlight<'_>, Duration, Option<Fault>) {
        let mut state = self.lock();
        let op = state.stats.op_mut(kind);
        op.calls += 1;
        op.in_flight += 1;
        op.peak_in_flight = op.peak_in_flight.max(op.in_flight);
        state.log(OpRecord {
            kind,
            phase: Phase::Start,
            name: name.to_owned(),
            ok: true,
        });

        let mut delay_ms = self.config.latency_ms;
        if self.config.jitter_ms > 0.0 {
            delay_ms += state.rng.random_range(0.0..=self.config.jitter_ms);
        }

        let mut fault = None;
        let mut fired = None;
        for (index, armed) in state.armed.iter_mut().enumerate() {
            if armed.kind == kind && name.starts_with(&armed.prefix) {
                armed.countdown -= 1;
                if armed.countdown == 0 && fired.is_none() {
                    fired = Some(index);
                }
            }
        }
        if let Some(index) = fired {
            fault = Some(state.armed.remove(index).fault);
        }
        // A zero-countdown fault that lost to another one fires next call.
        for armed in state.armed.iter_mut() {
            armed.countdown = armed.countdown.max(1);
        }
        if fault.is_none() && state.fail_rate > 0.0 && state.rng.random::<f64>() < state.fail_rate {
            // A lost acknowledgement only matters where the operation has an
            // effect: half of the reserve and put failures strike after it.
            let after = matches!(kind, OpKind::Reserve | OpKind::Put | OpKind::DurablePut)
                && state.rng.random_bool(0.5);
            fault = Some(Fault {
                timing: if after {
                    FaultTiming::After
                } else {
                    FaultTiming::Before
                },
                permanent: false,
            });
        }
        drop(state);

        let guard = InFlight {
            sim: self,
            kind,
            name: name.to_owned(),
            ok: false,
        };
        let delay = Duration::from_secs_f64(delay_ms / 1000.0);
        (guard, delay, fault)
    }

    /// Runs one call of `kind` on `name` through latency and fault injection.
    /// `sent` is the payload size; `received` measures a result's payload.
    async fn run<T, Fut>(
        &self,
        kind: OpKind,
        name: &str,
        sent: u64,
        received: impl Fn(&T) -> u64,
        op: Fut,
    ) -> Result<T, BackendError>
    where
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let (mut guard, delay, fault) = self.begin(kind, name);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let result = match fault {
            Some(
                fault @ Fault {
                    timing: FaultTiming::Before,
                    ..
                },
            ) => Err(simulated(kind, name, fault)),
            _ => {
                let result = op.await;
                if result.is_ok() {
                    let mut state = self.lock();
                    let bytes = sent + result.as_ref().map_or(0, &received);
                    state.stats.op_mut(kind).bytes += bytes;
                    // A pad's first object: its other one, where versions
                    // alternate (`PadId::object_name_for`), is the same pad.
                    let first_object =
                        PadId::from_object_name(name).is_some_and(|id| id.object_name() == name);
                    if kind == OpKind::Delete && first_object {
                        state.stats.pads_deleted += 1;
                    }
                    if kind == OpKind::Reserve && name.starts_with(PAD_PREFIX) {
                        state.stats.pads_reserved += 1;
                    }
                }
                match (result, fault) {
                    (Ok(_), Some(fault)) => Err(simulated(kind, name, fault)),
                    (result, _) => result,
                }
            }
        };
        if matches!(
            result,
            Err(BackendError::Transient(_) | BackendError::Permanent(_))
        ) {
            self.lock().stats.op_mut(kind).failures += 1;
        }
        guard.ok = result.is_ok();
        result
    }
}

/// Ends a call when dropped, also when its future is dropped mid-way: takes
/// it out of the in-flight count and logs its end.
struct InFlight<'a> {
    sim: &'a SimPadStore,
    kind: OpKind,
    name: String,
    ok: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.sim.lock();
        let op = state.stats.op_mut(self.kind);
        op.in_flight = op.in_flight.saturating_sub(1);
        state.log(OpRecord {
            kind: self.kind,
            phase: Phase::End,
            name: std::mem::take(&mut self.name),
            ok: self.ok,
        });
    }
}

fn non_negative(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

fn probability(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    }
}

#[async_trait]
impl Backend for SimPadStore {
    async fn reserve(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        let (sent, write) = (content.len() as u64, PadWrite::start(name, &content));
        let op = self.inner.reserve(name, content);
        let done = self.run(OpKind::Reserve, name, sent, |_| 0, op).await;
        self.record(write, &done);
        done
    }

    async fn reserve_durable(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        let (sent, write) = (content.len() as u64, PadWrite::start(name, &content));
        let op = self.inner.reserve_durable(name, content);
        let done = self.run(OpKind::Reserve, name, sent, |_| 0, op).await;
        self.record(write, &done);
        done
    }

    async fn put(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        let (sent, write) = (content.len() as u64, PadWrite::start(name, &content));
        self.tear(name).await;
        let op = self.inner.put(name, content);
        let done = self.run(OpKind::Put, name, sent, |_| 0, op).await;
        self.record(write, &done);
        done
    }

    async fn put_durable(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        let (sent, write) = (content.len() as u64, PadWrite::start(name, &content));
        self.tear(name).await;
        let op = self.inner.put_durable(name, content);
        let done = self.run(OpKind::DurablePut, name, sent, |_| 0, op).await;
        self.record(write, &done);
        done
    }

    async fn head(&self, name: &str) -> Result<PutReceipt, BackendError> {
        // A HEAD, as `verify` is.
        let op = self.inner.head(name);
        self.run(OpKind::Verify, name, 0, |_| 0, op).await
    }

    async fn verify(&self, name: &str, receipt: &PutReceipt) -> Result<(), BackendError> {
        let op = self.inner.verify(name, receipt);
        self.run(OpKind::Verify, name, 0, |_| 0, op).await
    }

    async fn get(&self, name: &str) -> Result<Bytes, BackendError> {
        let op = self.inner.get(name);
        self.run(OpKind::Get, name, 0, |data: &Bytes| data.len() as u64, op)
            .await
    }

    async fn get_capped(&self, name: &str, max_size: u64) -> Result<Bytes, BackendError> {
        let op = self.inner.get_capped(name, max_size);
        self.run(OpKind::Get, name, 0, |data: &Bytes| data.len() as u64, op)
            .await
    }

    async fn get_range(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, BackendError> {
        // One read request, counting the bytes it fetched.
        let op = self.inner.get_range(name, range);
        self.run(OpKind::Get, name, 0, |data: &Bytes| data.len() as u64, op)
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        let op = self.inner.list(prefix);
        self.run(OpKind::List, prefix, 0, |_| 0, op).await
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        let op = self.inner.delete(name);
        self.run(OpKind::Delete, name, 0, |_| 0, op).await
    }

    async fn remove_partial_writes(&self) -> Result<usize, BackendError> {
        self.inner.remove_partial_writes().await
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        let inner = self.inner.describe();
        let mut params = Vec::new();
        let config = &self.config;
        if config.latency_ms > 0.0 {
            params.push(format!("latency_ms={}", config.latency_ms));
        }
        if config.jitter_ms > 0.0 {
            params.push(format!("jitter_ms={}", config.jitter_ms));
        }
        let fail_rate = self.lock().fail_rate;
        if fail_rate > 0.0 {
            params.push(format!("fail_rate={fail_rate}"));
        }
        if let Some(price) = config.pad_price {
            params.push(format!("pad_price={price}"));
        }
        if let Some(seed) = config.seed {
            params.push(format!("seed={seed}"));
        }
        if config.pads_never_refund {
            params.push("pads_refund=false".into());
        }
        if params.is_empty() {
            return format!("sim+{inner}");
        }
        let separator = if inner.contains('?') { '&' } else { '?' };
        format!("sim+{inner}{separator}{}", params.join("&"))
    }
}

#[async_trait]
impl WriterLocking for SimPadStore {
    async fn lock_writer(&self, holder: &[u8; 16]) -> Result<Box<dyn WriterLock>, BackendError> {
        self.inner.lock_writer(holder).await
    }

    async fn try_lock_writer(
        &self,
        holder: &[u8; 16],
    ) -> Result<Option<Box<dyn WriterLock>>, BackendError> {
        self.inner.try_lock_writer(holder).await
    }

    fn writer_lock_linger(&self) -> std::time::Duration {
        self.inner.writer_lock_linger()
    }

    fn writer_lock_handover(&self) -> std::time::Duration {
        self.inner.writer_lock_handover()
    }
}

#[cfg(test)]
mod tests;
