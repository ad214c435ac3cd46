//! Shows every kind of display the toolkit makes, as a notebook cell would.
//!
//! `cargo run --release --example demo` prints them in evcxr's format (or the threadbook
//! format when THREADBOOK_KERNEL is set); `… --example demo -- DIR` also writes the SVG charts
//! to DIR to look at.

use rayon::prelude::*;
use tb::*;

fn main() {
    let out_dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    show_context();

    let n = 3_000_000u64;
    let cmp = Compare::new("sum of squares, 0..3M: one thread vs threads vs rayon vs processes")
        .variant("sequential", || work::sum_squares(0, n))
        .variant("2 threads", || {
            work::combine(&work::run_threads("sum_squares", &split(0, n, 2)))
        })
        .variant("rayon", || {
            split(0, n, 64)
                .par_iter()
                .map(|&(a, b)| work::sum_squares(a, b))
                .reduce(|| 0, u64::wrapping_add)
        })
        .variant("2 processes", || {
            work::combine(&procs::run_parallel("sum_squares", &split(0, n, 2)))
        })
        .samples(8)
        .run();
    println!("speedup of rayon: {:.2}", cmp.speedup("rayon"));

    let sweep = Sweep::new("collatz steps 1..300k, rayon pool of N threads")
        .serial_fraction(0.1)
        .samples(5)
        .run(|t| {
            with_pool(t, || {
                (1..300_000u64).into_par_iter().map(work::collatz).sum()
            })
        });

    let tl = Timeline::new();
    std::thread::scope(|s| {
        for i in 0..6 {
            let tl = tl.clone();
            std::thread::Builder::new()
                .name(format!("busy {i}"))
                .spawn_scoped(s, move || {
                    for k in 0..3 {
                        let _span = tl.start(format!("chunk {k}"));
                        black_box(work::spin(3_000_000));
                    }
                })
                .expect("spawn");
        }
    });
    tl.show("6 busy threads on the available cores");

    let stats = Bench::new("count_primes(0, 200k)")
        .items(200_000)
        .run(|| work::count_primes(0, 200_000));
    stats.show();
    show_table(
        &["job", "args"],
        &work::JOBS
            .iter()
            .map(|j| vec![j.name.to_string(), j.args.to_string()])
            .collect::<Vec<_>>(),
    );

    // Crashes, safely: each in a `tb-demo` child process (built on first use, like tb-worker).
    tb::demo::show_outcomes(&tb::demo::run_all(
        &["panic-in-thread", "abort-in-thread", "segfault"],
        std::time::Duration::from_secs(10),
    ));

    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir).expect("create output dir");
        std::fs::write(dir.join("compare.svg"), cmp.chart()).expect("write");
        std::fs::write(dir.join("sweep.svg"), sweep.chart()).expect("write");
        std::fs::write(dir.join("timeline.svg"), tl.chart("6 busy threads")).expect("write");
    }
}
