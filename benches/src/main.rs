//! `anthill-bench <p1|p3|c1|cpu|segments> [--quick]`: the Rust side of the benchmark
//! suite. Prints one JSON object on stdout; `benches/suite.py` runs it and
//! writes docs/benchmarks.md.

mod allocator;
mod churn;
mod cpu;
mod pipelining;
mod rng;
mod segments;
mod timing;

/// The allocator the Python package uses (src/python/mod.rs), so that the
/// figures are those of what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("p1") => runtime.block_on(pipelining::run(if quick { 1 } else { 3 })),
        Some("p3") => Ok(allocator::run(quick)),
        Some("c1") => runtime.block_on(churn::run(if quick { 1_000 } else { 10_000 })),
        Some("cpu") => Ok(cpu::run()),
        Some("segments") => Ok(segments::run()),
        _ => {
            eprintln!("usage: anthill-bench <p1|p3|c1|cpu|segments> [--quick]");
            std::process::exit(2);
        }
    };
    match result {
        Ok(value) => println!("{value}"),
        Err(error) => {
            eprintln!("benchmark failed: {error}");
            std::process::exit(1);
        }
    }
}
