//! Tokio multi-thread scheduler workloads, shaped like Tokio's
//! `benches/rt_multi_threaded.rs`, as a plain binary without a benchmark
//! harness.
//!
//! Every workload gets a fresh multi-thread runtime with `--workers N`
//! workers, runs `--warmups` unmeasured iterations (default 2) and then
//! `--iters K` measured ones (default 20), and prints one line:
//!
//!   workload=<name> workers=<N> iters=<K> median_ns=<ns> per_op_ns=<ns> min_ns=<ns> max_ns=<ns>
//!
//! A workload runs on its own thread. When it does not finish within
//! `--timeout-s S` seconds, its line reads
//!
//!   workload=<name> workers=<N> iters=<K> TIMEOUT timeout_s=<S> completed_iters=<c>
//!
//! its background load is told to stop, and the program goes on with the next
//! workload. The process ends with `std::process::exit`, so a workload thread
//! that is still stuck never keeps it alive.

use std::process;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;

const NUM_SPAWN: usize = 10_000;
const NUM_SPAWN_BUSY2: usize = 1_000;
const NUM_PINGS: usize = 1_000;
const YIELD_TASKS: usize = 200;
const YIELDS_PER_TASK: usize = 1_000;
const CHAIN_LEN: usize = 1_000;
const STALL_DUR: Duration = Duration::from_micros(10);

/// Grace period after a timeout for the workload thread to wind down once its
/// background load has been told to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Config {
    workers: usize,
    iters: usize,
    warmups: usize,
    only: Option<Vec<String>>,
    timeout: Duration,
    busy1_tasks: Option<usize>,
    busy2_tasks: Option<usize>,
}

/// Shared between the main thread and a workload thread.
#[derive(Clone)]
struct Control {
    /// Set by the main thread when the workload ran out of time: the
    /// measurement loop stops and background tasks wind down.
    stop: Arc<AtomicBool>,
    /// Measured iterations completed so far.
    done: Arc<AtomicUsize>,
}

type WorkloadFn = fn(&Runtime, &Config, &Control) -> Vec<u64>;

struct Workload {
    name: &'static str,
    ops: usize,
    run: WorkloadFn,
}

const WORKLOADS: &[Workload] = &[
    Workload { name: "spawn_many_local", ops: NUM_SPAWN, run: spawn_many_local },
    Workload { name: "spawn_many_remote_idle", ops: NUM_SPAWN, run: spawn_many_remote_idle },
    Workload { name: "spawn_many_remote_busy1", ops: NUM_SPAWN, run: spawn_many_remote_busy1 },
    Workload { name: "spawn_many_remote_busy2", ops: NUM_SPAWN_BUSY2, run: spawn_many_remote_busy2 },
    Workload { name: "ping_pong", ops: NUM_PINGS, run: ping_pong },
    Workload { name: "yield_many", ops: YIELD_TASKS * YIELDS_PER_TASK, run: yield_many },
    Workload { name: "chained_spawn", ops: CHAIN_LEN, run: chained_spawn },
];

fn rt(cfg: &Config) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(cfg.workers)
        .enable_all()
        .build()
        .expect("failed to build the Tokio runtime")
}

/// Busy-wait for `STALL_DUR`, yielding the OS thread in between, as the
/// upstream benchmark's `stall()` does.
fn stall() {
    let start = Instant::now();
    while start.elapsed() < STALL_DUR {
        thread::yield_now();
    }
}

/// Runs `body` `cfg.warmups` times unmeasured, then `cfg.iters` times
/// measured. Returns the measured durations in nanoseconds. Stops early when
/// the control's stop flag is raised.
fn measure(cfg: &Config, ctl: &Control, mut body: impl FnMut()) -> Vec<u64> {
    for _ in 0..cfg.warmups {
        if ctl.stop.load(Relaxed) {
            return Vec::new();
        }
        body();
    }
    let mut out = Vec::with_capacity(cfg.iters);
    for _ in 0..cfg.iters {
        if ctl.stop.load(Relaxed) {
            break;
        }
        let start = Instant::now();
        body();
        out.push(start.elapsed().as_nanos() as u64);
        ctl.done.fetch_add(1, Relaxed);
    }
    out
}

/// 10,000 tasks spawned from inside a running task (so they go through a
/// worker's own queue). The last one to finish signals through a std channel.
fn spawn_many_local(rt: &Runtime, cfg: &Config, ctl: &Control) -> Vec<u64> {
    let (tx, rx) = mpsc::sync_channel::<()>(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    measure(cfg, ctl, || {
        rem.store(NUM_SPAWN, Relaxed);
        let tx = tx.clone();
        let rem = rem.clone();
        rt.spawn(async move {
            for _ in 0..NUM_SPAWN {
                let tx = tx.clone();
                let rem = rem.clone();
                tokio::spawn(async move {
                    if rem.fetch_sub(1, Relaxed) == 1 {
                        tx.send(()).unwrap();
                    }
                });
            }
        });
        rx.recv().unwrap();
    })
}

/// Spawns `NUM_SPAWN` empty tasks from outside the runtime and awaits all
/// their join handles from `block_on`.
fn remote_spawn_and_join(rt: &Runtime, handles: &mut Vec<tokio::task::JoinHandle<()>>, n: usize) {
    for _ in 0..n {
        handles.push(rt.spawn(async {}));
    }
    rt.block_on(async {
        for handle in handles.drain(..) {
            handle.await.unwrap();
        }
    });
}

/// 10,000 spawns from outside the runtime onto idle workers.
fn spawn_many_remote_idle(rt: &Runtime, cfg: &Config, ctl: &Control) -> Vec<u64> {
    let mut handles = Vec::with_capacity(NUM_SPAWN);
    measure(cfg, ctl, || remote_spawn_and_join(rt, &mut handles, NUM_SPAWN))
}

/// 10,000 spawns from outside the runtime while background tasks loop:
/// yield to the scheduler, then stall for about 10 µs. Upstream starts
/// 2 × NUM_WORKERS such tasks (8 with its 4 workers); `--busy1-tasks`
/// overrides the count.
fn spawn_many_remote_busy1(rt: &Runtime, cfg: &Config, ctl: &Control) -> Vec<u64> {
    let mut handles = Vec::with_capacity(NUM_SPAWN);
    let flag = Arc::new(AtomicBool::new(true));
    let busy = cfg.busy1_tasks.unwrap_or(2 * cfg.workers);

    for _ in 0..busy {
        let flag = flag.clone();
        let stop = ctl.stop.clone();
        rt.spawn(async move {
            while flag.load(Relaxed) && !stop.load(Relaxed) {
                tokio::task::yield_now().await;
                stall();
            }
        });
    }

    let out = measure(cfg, ctl, || remote_spawn_and_join(rt, &mut handles, NUM_SPAWN));
    flag.store(false, Relaxed);
    out
}

fn respawn_busy(flag: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        if flag.load(Relaxed) && !stop.load(Relaxed) {
            stall();
            respawn_busy(flag, stop);
        }
    });
}

/// 1,000 spawns from outside the runtime while background tasks each stall
/// about 10 µs and then spawn their own successor. Upstream starts
/// NUM_WORKERS such chains (4 with its 4 workers); `--busy2-tasks` overrides
/// the count.
fn spawn_many_remote_busy2(rt: &Runtime, cfg: &Config, ctl: &Control) -> Vec<u64> {
    let mut handles = Vec::with_capacity(NUM_SPAWN_BUSY2);
    let flag = Arc::new(AtomicBool::new(true));
    let busy = cfg.busy2_tasks.unwrap_or(cfg.workers);

    for _ in 0..busy {
        let flag = flag.clone();
        let stop = ctl.stop.clone();
        rt.spawn(async move {
            respawn_busy(flag, stop);
        });
    }

    let out = measure(cfg, ctl, || remote_spawn_and_join(rt, &mut handles, NUM_SPAWN_BUSY2));
    flag.store(false, Relaxed);
    out
}

/// 1,000 pings. A task spawned from `block_on` spawns one task per ping; that
/// task spawns a partner, sends it a oneshot message and waits for the reply
/// on a second oneshot. The last ping to complete signals a std channel.
fn ping_pong(rt: &Runtime, cfg: &Config, ctl: &Control) -> Vec<u64> {
    let (done_tx, done_rx) = mpsc::sync_channel::<()>(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    measure(cfg, ctl, || {
        let done_tx = done_tx.clone();
        let rem = rem.clone();
        rem.store(NUM_PINGS, Relaxed);

        rt.block_on(async {
            tokio::spawn(async move {
                for _ in 0..NUM_PINGS {
                    let rem = rem.clone();
                    let done_tx = done_tx.clone();

                    tokio::spawn(async move {
                        let (tx1, rx1) = oneshot::channel::<()>();
                        let (tx2, rx2) = oneshot::channel::<()>();

                        tokio::spawn(async move {
                            rx1.await.unwrap();
                            tx2.send(()).unwrap();
                        });

                        tx1.send(()).unwrap();
                        rx2.await.unwrap();

                        if rem.fetch_sub(1, Relaxed) == 1 {
                            done_tx.send(()).unwrap();
                        }
                    });
                }
            });

            done_rx.recv().unwrap();
        });
    })
}

/// 200 tasks spawned from outside the runtime, each calling `yield_now` 1,000
/// times, then reporting on a std channel.
fn yield_many(rt: &Runtime, cfg: &Config, ctl: &Control) -> Vec<u64> {
    let (tx, rx) = mpsc::sync_channel::<()>(YIELD_TASKS);

    measure(cfg, ctl, || {
        for _ in 0..YIELD_TASKS {
            let tx = tx.clone();
            rt.spawn(async move {
                for _ in 0..YIELDS_PER_TASK {
                    tokio::task::yield_now().await;
                }
                tx.send(()).unwrap();
            });
        }
        for _ in 0..YIELD_TASKS {
            rx.recv().unwrap();
        }
    })
}

fn chain(done_tx: mpsc::SyncSender<()>, n: usize) {
    if n == 0 {
        done_tx.send(()).unwrap();
    } else {
        tokio::spawn(async move {
            chain(done_tx, n - 1);
        });
    }
}

/// A chain of 1,000 tasks, each spawning the next; the last one signals a std
/// channel.
fn chained_spawn(rt: &Runtime, cfg: &Config, ctl: &Control) -> Vec<u64> {
    let (done_tx, done_rx) = mpsc::sync_channel::<()>(1000);

    measure(cfg, ctl, || {
        let done_tx = done_tx.clone();
        rt.block_on(async {
            tokio::spawn(async move {
                chain(done_tx, CHAIN_LEN);
            });
            done_rx.recv().unwrap();
        });
    })
}

fn median(sorted: &[u64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2] as f64
    } else {
        (sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0
    }
}

enum Outcome {
    Done(Vec<u64>),
    Timeout { completed: usize },
    Failed(String),
}

fn run_workload(w: &Workload, cfg: &Config) -> Outcome {
    let ctl = Control { stop: Arc::new(AtomicBool::new(false)), done: Arc::new(AtomicUsize::new(0)) };
    let (tx, rx) = mpsc::channel::<Vec<u64>>();
    let thread_cfg = cfg.clone();
    let thread_ctl = ctl.clone();
    let run = w.run;
    let spawned = thread::Builder::new().name(format!("wl-{}", w.name)).spawn(move || {
        let runtime = rt(&thread_cfg);
        let samples = run(&runtime, &thread_cfg, &thread_ctl);
        drop(runtime);
        let _ = tx.send(samples);
    });
    if let Err(e) = spawned {
        return Outcome::Failed(format!("cannot start workload thread: {e}"));
    }

    match rx.recv_timeout(cfg.timeout) {
        Ok(samples) => Outcome::Done(samples),
        Err(mpsc::RecvTimeoutError::Disconnected) => Outcome::Failed("workload thread panicked".into()),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let completed = ctl.done.load(Relaxed);
            ctl.stop.store(true, Relaxed);
            if rx.recv_timeout(STOP_GRACE).is_err() {
                eprintln!(
                    "tokio-sched: {} still running {}s after being told to stop; later results may be disturbed",
                    w.name,
                    STOP_GRACE.as_secs()
                );
            }
            Outcome::Timeout { completed }
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: tokio-sched [--workers N] [--iters K] [--warmups W] [--only NAME[,NAME...]] [--timeout-s S]\n\
         \x20                  [--busy1-tasks N] [--busy2-tasks N] [--list]\n\
         workloads: {}",
        WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>().join(" ")
    );
    process::exit(2);
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    match v.as_deref().map(str::parse::<T>) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("tokio-sched: {flag} needs a number");
            usage();
        }
    }
}

fn parse_args() -> Config {
    let mut cfg = Config {
        workers: 4,
        iters: 20,
        warmups: 2,
        only: None,
        timeout: Duration::from_secs(30),
        busy1_tasks: None,
        busy2_tasks: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--workers" => cfg.workers = parse_num(&flag, value()),
            "--iters" => cfg.iters = parse_num(&flag, value()),
            "--warmups" => cfg.warmups = parse_num(&flag, value()),
            "--timeout-s" => {
                let s: f64 = parse_num(&flag, value());
                if !s.is_finite() || s <= 0.0 {
                    eprintln!("tokio-sched: --timeout-s must be positive");
                    usage();
                }
                cfg.timeout = Duration::from_secs_f64(s);
            }
            "--only" => {
                let names: Vec<String> = match value() {
                    Some(v) => v.split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
                    None => usage(),
                };
                for n in &names {
                    if !WORKLOADS.iter().any(|w| w.name == n) {
                        eprintln!("tokio-sched: unknown workload '{n}'");
                        usage();
                    }
                }
                cfg.only.get_or_insert_with(Vec::new).extend(names);
            }
            "--busy1-tasks" => cfg.busy1_tasks = Some(parse_num(&flag, value())),
            "--busy2-tasks" => cfg.busy2_tasks = Some(parse_num(&flag, value())),
            "--list" => {
                for w in WORKLOADS {
                    println!("{}", w.name);
                }
                process::exit(0);
            }
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("tokio-sched: unknown argument '{a}'");
                usage();
            }
        }
    }
    if cfg.workers == 0 || cfg.iters == 0 {
        eprintln!("tokio-sched: --workers and --iters must be at least 1");
        usage();
    }
    cfg
}

fn main() {
    let cfg = parse_args();
    let mut failed = false;

    for w in WORKLOADS {
        if let Some(only) = &cfg.only {
            if !only.iter().any(|n| n == w.name) {
                continue;
            }
        }
        let ops = w.ops;
        let head = format!("workload={} workers={} iters={}", w.name, cfg.workers, cfg.iters);
        match run_workload(w, &cfg) {
            Outcome::Done(mut samples) if !samples.is_empty() => {
                samples.sort_unstable();
                let med = median(&samples);
                println!(
                    "{head} median_ns={:.0} per_op_ns={:.2} min_ns={} max_ns={}",
                    med,
                    med / ops as f64,
                    samples[0],
                    samples[samples.len() - 1]
                );
            }
            Outcome::Done(_) => {
                println!("{head} FAILED reason=no_samples");
                failed = true;
            }
            Outcome::Timeout { completed } => {
                println!("{head} TIMEOUT timeout_s={} completed_iters={completed}", cfg.timeout.as_secs_f64());
            }
            Outcome::Failed(why) => {
                eprintln!("tokio-sched: {}: {why}", w.name);
                println!("{head} FAILED");
                failed = true;
            }
        }
    }

    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Leave without joining any workload thread that is still stuck.
    process::exit(if failed { 1 } else { 0 });
}
