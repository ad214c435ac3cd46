//! tb-cluster: a word count on the timely dataflow engine. The same program runs in every
//! process of the "cluster"; timely's own options say how many there are and which one this is.
//!
//! ```text
//! tb-cluster FILE [combine]                         one process, one worker
//! tb-cluster FILE -w 2                              one process, two worker threads
//! tb-cluster FILE -n 2 -p 0 -h HOSTS   (and -p 1)   two processes, connected over TCP
//! ```
//!
//! HOSTS lists one `host:port` per process. Every worker (all threads of all processes, numbered
//! 0..workers) reads the lines of FILE whose number modulo `workers` is its index and splits them
//! into words. Then `exchange` sends each word to worker `hash(word) % workers`, which counts it:
//! to a thread of the same process through memory, to another process over TCP. With `combine`
//! each worker first adds up its own words and sends one (word, count) per distinct word.
//!
//! At the end each worker prints one line (`worker 0 of 2 · process 0 · read … words · …`) and
//! writes its counts to `FILE.counts.W` (`word count` per line) to be checked; then the process
//! prints what its network threads sent and received, as timely's communication log counts it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Input;
use timely::communication::logging::{CommunicationEvent, CommunicationEventBuilder};
use timely::communication::Hooks;
use timely::dataflow::InputHandle;
use timely::logging_core::Logger;

/// Bytes and messages this process's network threads sent and received.
static SENT: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static RECEIVED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// A logger for one network thread: adds up the messages it sends or receives.
fn network_logger() -> Logger<CommunicationEventBuilder> {
    Logger::new(Instant::now(), Duration::ZERO, |_, events: &mut Option<Vec<(Duration, CommunicationEvent)>>| {
        for (_, event) in events.iter().flatten() {
            if let CommunicationEvent::Message(m) = event {
                let counter = if m.is_send { &SENT } else { &RECEIVED };
                counter[0].fetch_add(m.header.length as u64, Ordering::Relaxed);
                counter[1].fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// FNV-1a: a hash that is the same in every process and every run.
fn hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// CPU time (user + system) in ms of this process (`RUSAGE_SELF`) or thread (`RUSAGE_THREAD`).
fn cpu_ms(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args.get(1).filter(|a| !a.starts_with('-')).cloned().expect("usage: tb-cluster FILE [combine] [timely options]");
    let combine = args.iter().any(|a| a == "combine");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let process_index = args.iter().position(|a| a == "-p").and_then(|i| args.get(i + 1)).cloned().unwrap_or("0".into());

    let config = timely::Config::from_args(args.clone().into_iter()).unwrap_or_else(|e| panic!("timely: {e}"));
    let hooks = Hooks { log_fn: Arc::new(|_setup| Some(network_logger())), ..Default::default() };
    let (allocators, others) = config.communication.try_build_with(hooks).unwrap_or_else(|e| panic!("timely: {e}"));
    let me_process = process_index.clone();
    let guards = timely::execute::execute_from(allocators, others, config.worker, move |worker| {
        let (me, workers) = (worker.index(), worker.peers());
        // Start the clock when every worker of every process is ready: timely's processes connect
        // at different moments (the listening one polls for connections once a second).
        timely::synchronization::Barrier::new(worker).wait();
        let start = Instant::now();
        let cpu0 = cpu_ms(libc::RUSAGE_THREAD);
        let counts: Rc<RefCell<HashMap<String, u64>>> = Default::default();
        let mut input = InputHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let counts = counts.clone();
            scope
                .input_from(&mut input)
                .sink(Exchange::new(|x: &(String, u64)| hash(&x.0)), "Count", move |(input, _)| {
                    input.for_each(|_time, data| {
                        let mut c = counts.borrow_mut();
                        for (word, n) in data.drain(..) {
                            *c.entry(word).or_insert(0) += n;
                        }
                    });
                });
        });

        // Read my lines, split them into words, send every word (or every distinct word's count).
        let (mut read, mut sent_away) = (0u64, 0u64);
        let mut mine: HashMap<&str, u64> = HashMap::new();
        for line in text.lines().enumerate().filter(|(i, _)| i % workers == me).map(|(_, l)| l) {
            for word in line.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()) {
                read += 1;
                if combine {
                    *mine.entry(word).or_insert(0) += 1;
                } else {
                    sent_away += (hash(word) % workers as u64 != me as u64) as u64;
                    input.send((word.to_ascii_lowercase(), 1));
                }
            }
        }
        for (word, n) in mine.drain() {
            sent_away += (hash(word) % workers as u64 != me as u64) as u64;
            input.send((word.to_ascii_lowercase(), n));
        }
        drop(input); // no more input: the dataflow finishes once every word has been counted
        while worker.step() {}

        let counts = counts.borrow();
        let counted: u64 = counts.values().sum();
        let mut out = std::io::BufWriter::new(std::fs::File::create(format!("{file}.counts.{me}")).expect("counts file"));
        for (word, n) in counts.iter() {
            writeln!(out, "{word} {n}").expect("write counts");
        }
        format!(
            "worker {me} of {workers} · process {me_process} · read {read} words · sent {sent_away} records \
             to other workers · counted {counted} words ({} distinct) · {:.1} ms · worker CPU {:.1} ms",
            counts.len(),
            start.elapsed().as_secs_f64() * 1e3,
            cpu_ms(libc::RUSAGE_THREAD) - cpu0,
        )
    })
    .unwrap_or_else(|e| panic!("timely: {e}"));
    // Joining the workers also stops the network threads, which flush their logs.
    for line in guards.join() {
        println!("{}", line.unwrap_or_else(|e| panic!("a worker failed: {e}")));
    }
    println!(
        "process {process_index} · pid {} · network: sent {} bytes in {} messages, received {} bytes in {} messages · process CPU {:.1} ms",
        std::process::id(),
        SENT[0].load(Ordering::Relaxed),
        SENT[1].load(Ordering::Relaxed),
        RECEIVED[0].load(Ordering::Relaxed),
        RECEIVED[1].load(Ordering::Relaxed),
        cpu_ms(libc::RUSAGE_SELF),
    );
}
