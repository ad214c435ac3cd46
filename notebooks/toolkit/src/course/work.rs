//! Course scaffolding: deterministic workloads that threads, rayon and child processes
//! (`tb-worker`) all run, so their times compare the same work. Each takes plain integers and
//! returns a `u64` checksum.
//!
//! The range jobs (`count_primes`, `sum_squares`, `collatz_steps`) work on the half-open range
//! `[lo, hi)` and are *additive*: the results of the parts of a range, summed with
//! `wrapping_add` ([`combine`]), equal the result of the whole range.

// `n % 2 == 0` reads more plainly to learners than `n.is_multiple_of(2)`.
#![allow(clippy::manual_is_multiple_of)]

use std::time::Duration;

/// A job that [`run`] and `tb-worker` know by name.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub name: &'static str,
    /// What `a` and `b` mean.
    pub args: &'static str,
    /// Whether results over parts of a range add up to the result over the whole range.
    pub additive: bool,
}

/// Every job [`run`] accepts.
pub const JOBS: &[Job] = &[
    Job {
        name: "spin",
        args: "a = iterations of a xorshift loop (b ignored)",
        additive: false,
    },
    Job {
        name: "count_primes",
        args: "primes in [a, b)",
        additive: true,
    },
    Job {
        name: "sum_squares",
        args: "sum of i*i for i in [a, b), wrapping",
        additive: true,
    },
    Job {
        name: "collatz_steps",
        args: "total Collatz steps of every n in [a, b)",
        additive: true,
    },
    Job {
        name: "mem_sum",
        args: "a = MiB buffer summed b times (memory-bound)",
        additive: false,
    },
    Job {
        name: "sleep",
        args: "sleep a ms, return a (waiting, not computing)",
        additive: false,
    },
];

/// Runs the job called `job` with arguments `a`, `b`; `None` if there is no such job.
pub fn run(job: &str, a: u64, b: u64) -> Option<u64> {
    Some(match job {
        "spin" => spin(a),
        "count_primes" => count_primes(a, b),
        "sum_squares" => sum_squares(a, b),
        "collatz_steps" => collatz_steps(a, b),
        "mem_sum" => mem_sum(a, b),
        "sleep" => sleep_ms(a),
        _ => return None,
    })
}

/// The names of all jobs, for error messages.
pub fn job_names() -> String {
    JOBS.iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
}

/// Seed of [`spin`].
pub const SPIN_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// `iters` steps of a xorshift64 generator from a fixed seed: pure CPU work, no memory, that no
/// compiler can shortcut. Returns the final state.
pub fn spin(iters: u64) -> u64 {
    let mut x = SPIN_SEED;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Whether `n` is prime (trial division by 2, 3 and 6k ± 1).
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n % 2 == 0 || n % 3 == 0 {
        return false;
    }
    let mut d = 5u64;
    while d.saturating_mul(d) <= n {
        if n % d == 0 || n % (d + 2) == 0 {
            return false;
        }
        d += 6;
    }
    true
}

/// Number of primes in `[lo, hi)` by trial division. Later numbers cost more (√n), so equal
/// sub-ranges are not equal work.
pub fn count_primes(lo: u64, hi: u64) -> u64 {
    (lo..hi).filter(|&n| is_prime(n)).count() as u64
}

/// Σ i² for i in `[lo, hi)`, wrapping on overflow. (Each `i` passes through `black_box`, so
/// the compiler cannot replace the loop by the closed formula; it stays linear work.)
pub fn sum_squares(lo: u64, hi: u64) -> u64 {
    let mut acc = 0u64;
    for i in lo..hi {
        let i = std::hint::black_box(i);
        acc = acc.wrapping_add(i.wrapping_mul(i));
    }
    acc
}

/// Collatz steps to reach 1 from `n` (0 for n ≤ 1).
pub fn collatz(mut n: u64) -> u64 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 {
            n / 2
        } else {
            n.wrapping_mul(3).wrapping_add(1)
        };
        steps += 1;
    }
    steps
}

/// Total Collatz steps of every n in `[lo, hi)`; uneven work per number.
pub fn collatz_steps(lo: u64, hi: u64) -> u64 {
    (lo..hi).map(collatz).fold(0u64, |a, s| a.wrapping_add(s))
}

/// Fills a buffer of `mib` MiB with 0, 1, 2, … (as u64) and sums it `passes` times, wrapping.
/// Memory-bound: bandwidth, not arithmetic, limits it, so it scales worse with threads.
pub fn mem_sum(mib: u64, passes: u64) -> u64 {
    let n = (mib * 1024 * 1024 / 8) as usize;
    let buf: Vec<u64> = (0..n as u64).collect();
    let buf = std::hint::black_box(buf);
    let mut acc = 0u64;
    for _ in 0..passes {
        let s = buf.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        acc = acc.wrapping_add(std::hint::black_box(s));
    }
    acc
}

/// Sleeps `ms` milliseconds and returns `ms`: waiting (like I/O), not computing.
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Splits `[lo, hi)` into `parts` contiguous ranges (at least 1) whose lengths differ by at
/// most one; together they cover the range exactly. Some are empty if `parts` > length.
pub fn split(lo: u64, hi: u64, parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u64;
    let len = hi.saturating_sub(lo);
    let (base, extra) = (len / parts, len % parts);
    let mut start = lo;
    (0..parts)
        .map(|i| {
            let end = start + base + u64::from(i < extra);
            let r = (start, end);
            start = end;
            r
        })
        .collect()
}

/// Combines the results of the parts of an additive job (wrapping sum).
pub fn combine(results: &[u64]) -> u64 {
    results.iter().fold(0u64, |a, &r| a.wrapping_add(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_results() {
        assert_eq!(count_primes(0, 100), 25);
        assert_eq!(count_primes(0, 10_000), 1229);
        assert_eq!(count_primes(100, 200), 21);
        assert_eq!(sum_squares(0, 10), 285);
        assert_eq!(sum_squares(0, 1000), 332_833_500);
        assert_eq!(collatz(27), 111);
        assert_eq!(collatz_steps(1, 10), 61);
        assert_eq!(collatz_steps(0, 2), 0);
        assert_eq!(mem_sum(1, 2), 131_072 * 131_071);
        assert_eq!(spin(0), SPIN_SEED);
        assert_eq!(spin(1_000_000), spin(1_000_000));
        assert_ne!(spin(1), spin(2));
    }

    #[test]
    fn spin_matches_a_hand_step() {
        let mut x = SPIN_SEED;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert_eq!(spin(1), x);
    }

    #[test]
    fn run_dispatches_by_name() {
        assert_eq!(run("count_primes", 0, 100), Some(25));
        assert_eq!(run("sum_squares", 0, 10), Some(285));
        assert_eq!(run("collatz_steps", 1, 10), Some(61));
        assert_eq!(run("spin", 5, 0), Some(spin(5)));
        assert_eq!(run("sleep", 1, 0), Some(1));
        assert_eq!(run("nope", 1, 2), None);
        for job in JOBS {
            assert!(run(job.name, 1, 3).is_some(), "{} not dispatched", job.name);
        }
    }

    #[test]
    fn split_covers_the_range_exactly() {
        for (lo, hi, parts) in [
            (0, 100, 3),
            (5, 6, 4),
            (10, 10, 2),
            (0, 1_000_003, 7),
            (3, 1, 2),
        ] {
            let s = split(lo, hi, parts);
            assert_eq!(s.len(), parts);
            assert_eq!(s[0].0, lo);
            assert_eq!(s.last().unwrap().1, hi.max(lo));
            for w in s.windows(2) {
                assert_eq!(w[0].1, w[1].0, "contiguous");
            }
            let lens: Vec<u64> = s.iter().map(|(a, b)| b - a).collect();
            let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            assert!(max - min <= 1, "{lens:?}");
            assert_eq!(lens.iter().sum::<u64>(), hi.saturating_sub(lo));
        }
        assert_eq!(split(0, 10, 3), vec![(0, 4), (4, 7), (7, 10)]);
        assert_eq!(split(0, 10, 0), vec![(0, 10)]);
    }

    #[test]
    fn additive_jobs_add_up_over_parts() {
        for job in JOBS.iter().filter(|j| j.additive) {
            let whole = run(job.name, 0, 5000).unwrap();
            let parts: Vec<u64> = split(0, 5000, 4)
                .iter()
                .map(|&(a, b)| run(job.name, a, b).unwrap())
                .collect();
            assert_eq!(combine(&parts), whole, "{}", job.name);
        }
    }
}
