//! P1 pipelining: one put that needs 64 new pads, through a simulated
//! network with 50 ms per call, at 20 reservations / 20 uploads in flight,
//! against the critical path of the calls such a put must make.
//!
//! The sim's op log says which calls anthill makes (per new pad: `reserve`,
//! `put`, `verify`; for the index: `put` + `verify` of a journal object; and
//! anything else, such as the writer gate's `list`s). The bound is the
//! makespan of the ideal schedule of the calls a put cannot do without, every
//! call taking the sim's latency (see `ideal_makespan`):
//!
//!   reservations in waves of R        ceil(N / R) * L
//!   + the last pad's upload (put)     L
//!   + its commit (verify)             L
//!   + index persistence (put+verify)  2 L
//!
//! (when U >= R, uploads keep pace with reservations; otherwise the list
//! schedule below accounts for the upload limit). The two-phase figure is the
//! same calls with every upload waiting for the last reservation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use anthill::pad_store::sim::{OpRecord, Phase};
use anthill::pad_store::{self, BackendOptions, OpKind, SimConfig, SimPadStore};
use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::rng::Rng;
use crate::timing::{TimedCall, TimedPadStore};

const PADS: u64 = 64;
const LATENCY_MS: f64 = 50.0;
const RESERVATIONS: usize = 20;
const UPLOADS: usize = 20;
const PAD_SIZE: u64 = 4 << 20;
const SMALL_PAD_SIZE: u64 = 4 << 10;

/// Start times of `jobs` (each ready at `ready[i]`, in that order) on
/// `slots` parallel slots, each job holding its slot for `hold`.
fn list_schedule(ready: &[f64], slots: usize, hold: f64) -> Vec<f64> {
    let mut free = vec![0.0f64; slots];
    let mut order: Vec<usize> = (0..ready.len()).collect();
    order.sort_by(|&a, &b| ready[a].total_cmp(&ready[b]));
    let mut start = vec![0.0; ready.len()];
    for i in order {
        let (slot, at) = free
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one slot");
        start[i] = ready[i].max(at);
        free[slot] = start[i] + hold;
    }
    start
}

/// The makespan of the ideal schedule of a put needing `n` new pads:
/// `n` reserves (at most `r` in flight), then per pad a put (at most `u` in
/// flight; with `slot_covers_commit` the upload slot is held through the
/// verify too, as anthill's upload permit is) and a verify, then the index
/// write (put + verify). `pipelined`: a pad's upload may start as soon as the
/// pad is reserved; otherwise only after the last reservation.
pub fn ideal_makespan(
    n: usize,
    r: usize,
    u: usize,
    latency: f64,
    pipelined: bool,
    slot_covers_commit: bool,
) -> f64 {
    let reserve_start = list_schedule(&vec![0.0; n], r, latency);
    let reserved: Vec<f64> = reserve_start.iter().map(|s| s + latency).collect();
    let all_reserved = reserved.iter().copied().fold(0.0, f64::max);
    let ready: Vec<f64> = if pipelined {
        reserved
    } else {
        vec![all_reserved; n]
    };
    let hold = if slot_covers_commit {
        2.0 * latency
    } else {
        latency
    };
    let put_start = list_schedule(&ready, u, hold);
    let committed = put_start
        .iter()
        .map(|s| s + 2.0 * latency)
        .fold(0.0, f64::max);
    committed + 2.0 * latency
}

/// The schedule the op log implies with CPU time taken out: every call takes
/// exactly the latency and starts when the call that preceded its start in
/// the log ended. Returns the time of the last end.
fn schedule_from_log(log: &[OpRecord], latency: f64) -> f64 {
    let mut clock = 0.0f64;
    let mut open: HashMap<(OpKind, &str), VecDeque<f64>> = HashMap::new();
    for record in log {
        let key = (record.kind, record.name.as_str());
        match record.phase {
            Phase::Start => open.entry(key).or_default().push_back(clock),
            Phase::End => {
                let start = open
                    .get_mut(&key)
                    .and_then(VecDeque::pop_front)
                    .unwrap_or(clock);
                clock = clock.max(start + latency);
            }
        }
    }
    clock
}

/// What an object name is: a pad, an index log or checkpoint object, the
/// metadata.
fn object_class(name: &str) -> &'static str {
    if name.starts_with("p/") {
        "pad"
    } else if name.starts_with("j/") {
        "index log"
    } else if name.starts_with("c/") {
        "index checkpoint"
    } else if name == "meta" {
        "meta"
    } else {
        "other"
    }
}

fn kind_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Reserve => "reserve",
        OpKind::Put => "put",
        OpKind::DurablePut => "durable put",
        OpKind::Verify => "verify",
        OpKind::Get => "get",
        OpKind::List => "list",
        OpKind::Delete => "delete",
        // `OpKind` is non-exhaustive: a kind added later.
        _ => "other",
    }
}

/// Calls per (class, kind), from the op log's start records.
fn call_counts(log: &[OpRecord]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for record in log.iter().filter(|r| r.phase == Phase::Start) {
        let key = format!("{} {}", object_class(&record.name), kind_name(record.kind));
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Phases of the put, from the timed calls: when each group of calls ran.
fn phases(calls: &[TimedCall]) -> Vec<Value> {
    let mut groups: BTreeMap<String, (f64, f64, u64)> = BTreeMap::new();
    let mut journal: Vec<Value> = Vec::new();
    for call in calls {
        let class = object_class(&call.name);
        if class == "index log" || class == "index checkpoint" {
            journal.push(json!({
                "call": format!("{} {} {}", class, kind_name(call.kind), call.name),
                "start_ms": call.start * 1e3,
                "end_ms": call.end * 1e3,
            }));
            continue;
        }
        let group = groups
            .entry(format!("{class} {}", kind_name(call.kind)))
            .or_insert((f64::MAX, 0.0, 0));
        group.0 = group.0.min(call.start);
        group.1 = group.1.max(call.end);
        group.2 += 1;
    }
    let mut out: Vec<Value> = groups
        .into_iter()
        .map(|(name, (first, last, calls))| {
            json!({"call": name, "calls": calls, "start_ms": first * 1e3, "end_ms": last * 1e3})
        })
        .collect();
    out.extend(journal);
    let start = |v: &Value| v["start_ms"].as_f64().unwrap_or(0.0);
    out.sort_by(|a, b| start(a).total_cmp(&start(b)));
    out
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run(runs: usize) -> anthill::Result<Value> {
    let latency = LATENCY_MS / 1e3;
    let n = PADS as usize;
    let bound = ideal_makespan(n, RESERVATIONS, UPLOADS, latency, true, false);
    let two_phase = ideal_makespan(n, RESERVATIONS, UPLOADS, latency, false, false);
    let bound_slot = ideal_makespan(n, RESERVATIONS, UPLOADS, latency, true, true);
    let two_phase_slot = ideal_makespan(n, RESERVATIONS, UPLOADS, latency, false, true);
    let data = Bytes::from(Rng::new(1).bytes((PADS * PAD_SIZE) as usize));
    let mut measured = Vec::new();
    let mut from_log = Vec::new();
    let mut last = Value::Null;
    for run in 0..runs {
        let (elapsed, steps, details) = put_once(&data, PAD_SIZE, run as u64).await?;
        measured.push(elapsed);
        from_log.push(steps);
        last = details;
    }
    // The same put with 4 KiB pads: the same calls with next to no CPU work
    // (hashing, sealing, copying 256 KiB), so its time is the schedule's.
    let small = Bytes::from(Rng::new(2).bytes((PADS * SMALL_PAD_SIZE) as usize));
    let mut small_measured = Vec::new();
    for run in 0..runs {
        small_measured.push(put_once(&small, SMALL_PAD_SIZE, run as u64).await?.0);
    }
    let measured_median = median(&mut measured.clone());
    Ok(json!({
        "pads": PADS,
        "pad_size": PAD_SIZE,
        "latency_ms": LATENCY_MS,
        "reservation_concurrency": RESERVATIONS,
        "upload_concurrency": UPLOADS,
        "runs_s": measured,
        "measured_s": measured_median,
        "bound_s": bound,
        "two_phase_s": two_phase,
        "bound_if_slot_covers_commit_s": bound_slot,
        "two_phase_if_slot_covers_commit_s": two_phase_slot,
        "log_schedule_s": median(&mut from_log),
        "small_pad_size": SMALL_PAD_SIZE,
        "small_pads_measured_s": median(&mut small_measured),
        "last_run": last,
    }))
}

/// One put of `data` into a fresh store with `pad_size` pads: its time, the
/// schedule its op log implies, and the calls it made.
async fn put_once(data: &Bytes, pad_size: u64, seed: u64) -> anthill::Result<(f64, f64, Value)> {
    let latency = LATENCY_MS / 1e3;
    let memory = pad_store::open("memory://", &BackendOptions::default()).await?;
    let mut config = SimConfig::default();
    config.latency_ms = LATENCY_MS;
    config.seed = Some(seed);
    let sim = Arc::new(SimPadStore::new(memory, config));
    let timed = Arc::new(TimedPadStore::new(sim.clone()));
    let mut options = StoreOptions::default();
    options.secret = b"anthill benchmark secret".to_vec();
    options.pad_size = Some(pad_size);
    options.reservation_concurrency = RESERVATIONS;
    options.upload_concurrency = UPLOADS;
    let store =
        Store::open_with_backend("sim+memory://?latency_ms=50", timed.clone(), options).await?;
    assert_eq!(
        store.check_allocation_possible(data.len() as u64).await?,
        Some(PADS)
    );
    sim.clear_log();
    timed.reset();
    let started = Instant::now();
    store
        .store_item("p1", data.clone(), PutOptions::default(), None)
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let log = sim.op_log();
    let steps = schedule_from_log(&log, latency);
    let calls = timed.calls();
    if std::env::var_os("ANTHILL_BENCH_TRACE").is_some() {
        for call in &calls {
            eprintln!(
                "{:8.1} {:8.1} {:7.1} {:?} {}",
                call.start * 1e3,
                call.end * 1e3,
                (call.end - call.start) * 1e3,
                call.kind,
                call.name
            );
        }
    }
    let details = json!({
        "calls": call_counts(&log),
        "phases": phases(&calls),
    });
    Ok((elapsed, steps, details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_formula() {
        // 4 waves of reservations, put, verify, index put + verify.
        let l = 0.05;
        assert!((ideal_makespan(64, 20, 20, l, true, false) - 8.0 * l).abs() < 1e-9);
        // 4 waves, then 4 waves of puts, the last verify, the index.
        assert!((ideal_makespan(64, 20, 20, l, false, false) - 11.0 * l).abs() < 1e-9);
        // Slots held through the commit: 4 rounds of 2 L after the first wave.
        assert!((ideal_makespan(64, 20, 20, l, true, true) - 11.0 * l).abs() < 1e-9);
    }
}
