//! tb-demo: crashes, hangs and other things a notebook must not do in its own process, each a
//! scenario run in a child process (`tb::course::demo::run` runs it with a timeout and reports the exit
//! code or signal).
//!
//! ```text
//! tb-demo SCENARIO [ARGS]   run one scenario (see `tb-demo --list`)
//! tb-demo --list            list the scenarios
//! ```
//!
//! Every line is printed with `println!`, which flushes at each newline, so whatever a scenario
//! printed before it died reaches the parent.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use std::hint::black_box;

/// (name, arguments, what it does and how it ends)
const SCENARIOS: &[(&str, &str, &str)] = &[
    ("ok", "", "prints ok and its pid, exits 0"),
    ("exit", "[N]", "std::process::exit(N): exit code N"),
    ("panic-in-thread", "", "a thread panics; main's join() returns Err and main exits 0"),
    ("panic-in-thread-abort", "", "a thread panics under a hook that aborts, as panic = \"abort\" does: SIGABRT"),
    ("poisoned-mutex", "", "a thread panics holding a Mutex; main's lock() is Err(PoisonError), exits 0"),
    ("abort", "", "main calls std::process::abort(): SIGABRT"),
    ("abort-in-thread", "[MS]", "main ticks every 20 ms; after MS ms (60) a thread aborts: all die, SIGABRT"),
    ("segfault", "", "writes to address 0x8: SIGSEGV"),
    ("segfault-in-thread", "", "a spawned thread writes to address 0x8: the whole process dies, SIGSEGV"),
    ("stack-overflow", "", "endless recursion (1 KiB a call) on main's stack: Rust reports it, SIGABRT"),
    ("stack-overflow-thread", "[KIB]", "endless recursion in a thread with a KIB KiB stack (64): SIGABRT"),
    ("recurse", "[DEPTH] [KIB]", "DEPTH calls of 1 KiB in a thread with a KIB KiB stack (2048): depth, stack used"),
    ("deadlock", "", "two threads lock two mutexes in opposite order: hangs until killed"),
    ("spin", "[MS]", "keeps one core busy for MS ms (100) of wall time; prints the CPU time it got"),
    ("spin-threads", "[N] [ITERS]", "N threads (2) each run work::spin(ITERS); prints wall, CPU, CPU/wall, checksum"),
    ("sleep-threads", "[N] [MS]", "N threads (10) each sleep MS ms (100) at once; prints the wall time"),
    ("print-pid-tids", "[N]", "main and N threads (2) print pid, thread id, a local's address; /proc/self/task"),
    ("count-stdin", "", "reads stdin to the end, prints \"BYTES SUM\" (sum of the bytes, wrapping)"),
    ("echo", "", "copies stdin to stdout as it arrives"),
];

fn usage() -> String {
    let mut s = String::from("usage: tb-demo SCENARIO [ARGS] | tb-demo --list\nscenarios:\n");
    for (name, args, what) in SCENARIOS {
        let name = format!("{name} {args}");
        s.push_str(&format!("  {:<28} {what}\n", name.trim()));
    }
    s
}

fn num(words: &[&str], i: usize, default: u64) -> Result<u64, String> {
    match words.get(i) {
        None => Ok(default),
        Some(w) => w.parse().map_err(|_| format!("{w:?} is not a number")),
    }
}

/// One stack frame of about 1 KiB that the compiler cannot remove or turn into a loop.
#[inline(never)]
fn recurse(depth: u64, max: u64, deepest: &mut (u64, usize)) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let frame = black_box(&mut frame);
    let here = frame.as_ptr() as usize;
    if depth > deepest.0 {
        *deepest = (depth, here);
    }
    if depth >= max {
        return frame[0] as u64;
    }
    let below = recurse(depth + 1, max, deepest);
    below.wrapping_add(frame[(depth % 1024) as usize] as u64)
}

/// Recurses `max` levels (u64::MAX: until the stack overflows) and reports how deep it went.
fn recurse_report(max: u64) {
    let top = 0u8;
    let top_addr = &top as *const u8 as usize;
    let mut deepest = (0u64, top_addr);
    let sum = recurse(1, max, &mut deepest);
    let used = top_addr.abs_diff(deepest.1);
    println!(
        "reached depth {} in thread '{}': about {} KiB of stack used ({} bytes per call), checksum {}",
        deepest.0,
        thread::current().name().unwrap_or("?"),
        used / 1024,
        used as u64 / deepest.0.max(1),
        black_box(sum)
    );
}

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

fn tasks() -> Vec<String> {
    let mut t: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    t.sort_by_key(|s| s.parse::<u64>().unwrap_or(0));
    t
}

fn segfault() {
    println!("writing to address 0x8 (never mapped)…");
    // SAFETY: it is not safe: this is the crash being demonstrated. The volatile write cannot
    // be optimised away, and the first page of memory is never mapped, so the CPU faults and
    // the kernel sends SIGSEGV.
    unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u64>(8), 42) };
    println!("unreachable: the write succeeded?");
}

fn run(words: &[&str]) -> Result<ExitCode, String> {
    let Some(&name) = words.first() else {
        return Err("no scenario given".into());
    };
    match name {
        "ok" => println!("ok (pid {})", std::process::id()),
        "exit" => {
            let code = num(words, 1, 0)?;
            println!("calling std::process::exit({code})");
            std::process::exit(code as i32);
        }
        "panic-in-thread" => {
            let h = thread::Builder::new()
                .name("worker".into())
                .spawn(|| -> u64 { panic!("boom in worker") })
                .map_err(|e| e.to_string())?;
            let r = h.join();
            match &r {
                Ok(v) => println!("join() returned Ok({v})"),
                Err(e) => {
                    let msg = e
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| e.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    println!("join() returned Err(panic payload {msg:?})");
                }
            }
            println!("main thread: still alive, exiting normally");
        }
        "panic-in-thread-abort" => {
            // What `panic = "abort"` in Cargo.toml does: a panic anywhere ends the process.
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                default(info);
                std::process::abort();
            }));
            let h = thread::Builder::new()
                .name("worker".into())
                .spawn(|| -> u64 { panic!("boom in worker") })
                .map_err(|e| e.to_string())?;
            let r = h.join();
            println!("unreachable: join() returned (is_err = {})", r.is_err());
        }
        "poisoned-mutex" => {
            let m = Arc::new(Mutex::new(0u64));
            let m2 = Arc::clone(&m);
            let r = thread::Builder::new()
                .name("worker".into())
                .spawn(move || {
                    let mut g = m2.lock().unwrap();
                    *g += 1;
                    panic!("boom while holding the lock");
                })
                .map_err(|e| e.to_string())?
                .join();
            println!("join() is_err = {}", r.is_err());
            match m.lock() {
                Ok(g) => println!("lock() is Ok({})", *g),
                Err(poisoned) => {
                    println!(
                        "lock() is Err(PoisonError): a thread panicked while holding it; value inside = {}",
                        *poisoned.into_inner()
                    );
                }
            }
            println!("main thread: still alive, exiting normally");
        }
        "abort" => {
            println!("main thread: calling std::process::abort()");
            std::process::abort();
        }
        "abort-in-thread" => {
            let after = num(words, 1, 60)?;
            thread::Builder::new()
                .name("worker".into())
                .spawn(move || {
                    thread::sleep(Duration::from_millis(after));
                    println!("worker: calling std::process::abort()");
                    std::process::abort();
                })
                .map_err(|e| e.to_string())?;
            for tick in 1..=100 {
                println!("main: tick {tick}");
                thread::sleep(Duration::from_millis(20));
            }
            println!("main: finished all ticks (the abort did not happen?)");
        }
        "segfault" => segfault(),
        "segfault-in-thread" => {
            let h = thread::Builder::new()
                .name("worker".into())
                .spawn(segfault)
                .map_err(|e| e.to_string())?;
            let r = h.join();
            println!("unreachable: join() returned (is_err = {})", r.is_err());
        }
        "stack-overflow" => {
            println!("main thread: recursing without end (1 KiB per call)…");
            recurse_report(u64::MAX);
        }
        "stack-overflow-thread" => {
            let kib = num(words, 1, 64)?;
            println!("thread 'small' with a {kib} KiB stack: recursing without end…");
            let h = thread::Builder::new()
                .name("small".into())
                .stack_size(kib as usize * 1024)
                .spawn(|| recurse_report(u64::MAX))
                .map_err(|e| e.to_string())?;
            let r = h.join();
            println!("unreachable: join() returned (is_err = {})", r.is_err());
        }
        "recurse" => {
            let depth = num(words, 1, 100)?;
            let kib = num(words, 2, 2048)?;
            let h = thread::Builder::new()
                .name(format!("stack-{kib}KiB"))
                .stack_size(kib as usize * 1024)
                .spawn(move || recurse_report(depth))
                .map_err(|e| e.to_string())?;
            h.join()
                .map_err(|_| "the recursing thread panicked".to_string())?;
        }
        "deadlock" => {
            let a = Arc::new(Mutex::new(0u32));
            let b = Arc::new(Mutex::new(0u32));
            let both = Arc::new(Barrier::new(2));
            let t1 = {
                let (a, b, both) = (a.clone(), b.clone(), both.clone());
                thread::spawn(move || {
                    let _ga = a.lock().unwrap();
                    both.wait();
                    println!("thread 1: holds a, waits for b");
                    let _gb = b.lock().unwrap();
                })
            };
            let t2 = thread::spawn(move || {
                let _gb = b.lock().unwrap();
                both.wait();
                println!("thread 2: holds b, waits for a");
                let _ga = a.lock().unwrap();
            });
            let _ = t1.join();
            let _ = t2.join();
            println!("unreachable: both threads finished");
        }
        "spin" => {
            let ms = num(words, 1, 100)?;
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(ms) {
                x = black_box(tb::work::spin(10_000) ^ x);
            }
            println!(
                "spun {ms} ms of wall time, got {:.1} ms of CPU time (checksum {x})",
                tb::cpu_time().as_secs_f64() * 1e3
            );
        }
        "spin-threads" => {
            let n = num(words, 1, 2)?;
            let iters = num(words, 2, 10_000_000)?;
            let (cpu0, t0) = (tb::cpu_time(), Instant::now());
            let sum = thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .map(|_| s.spawn(move || tb::work::spin(iters)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(0))
                    .fold(0u64, u64::wrapping_add)
            });
            let (wall, cpu) = (t0.elapsed(), tb::cpu_time() - cpu0);
            println!(
                "{n} threads x spin({iters}): wall {:.1} ms, CPU {:.1} ms, CPU/wall {:.0} %, checksum {sum}",
                wall.as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e3,
                100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
            );
        }
        "sleep-threads" => {
            let n = num(words, 1, 10)?;
            let ms = num(words, 2, 100)?;
            let t0 = Instant::now();
            thread::scope(|s| {
                for _ in 0..n {
                    s.spawn(move || thread::sleep(Duration::from_millis(ms)));
                }
            });
            println!(
                "{n} threads each slept {ms} ms: wall {:.1} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
        "print-pid-tids" => {
            let n = num(words, 1, 2)?;
            let local = 0u64;
            println!(
                "main: pid {} tid {} local at {:#x}",
                std::process::id(),
                gettid(),
                &local as *const u64 as usize
            );
            let ready = Arc::new(Barrier::new(n as usize + 1));
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let ready = ready.clone();
                    thread::spawn(move || {
                        let local = i;
                        println!(
                            "thread {i}: pid {} tid {} local at {:#x}",
                            std::process::id(),
                            gettid(),
                            &local as *const u64 as usize
                        );
                        ready.wait(); // all alive at once …
                        ready.wait(); // … until main has listed them
                    })
                })
                .collect();
            ready.wait();
            println!("/proc/self/task: {}", tasks().join(" "));
            ready.wait();
            for h in handles {
                h.join().map_err(|_| "a thread panicked".to_string())?;
            }
        }
        "count-stdin" => {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 1 << 16];
            let (mut bytes, mut sum) = (0u64, 0u64);
            loop {
                let n = stdin.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
                sum = buf[..n].iter().fold(sum, |a, &b| a.wrapping_add(b as u64));
            }
            println!("{bytes} {sum}");
        }
        "echo" => {
            let mut stdin = std::io::stdin().lock();
            let mut stdout = std::io::stdout().lock();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = stdin.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
        _ => return Err(format!("unknown scenario {name:?}")),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["--list"] | ["--help"] | ["-h"] => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        _ => match run(&words) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("tb-demo: {e}\n{}", usage());
                ExitCode::from(2)
            }
        },
    }
}
