//! tb-worker: runs one of the toolkit's workloads (`tb::work`) in its own process, so a
//! notebook can compare threads with child processes doing exactly the same work.
//!
//! ```text
//! tb-worker JOB A [B]     print the u64 result of JOB(A, B) on stdout
//! tb-worker --stdin       read lines "JOB A B" from stdin, answer one line each
//!                         (a number, or "ERR message"); stops at end of input
//! tb-worker --list        list the jobs
//! ```
//!
//! The work itself is `tb::work::run`, the same function the threads in the notebook call.

use std::io::{BufRead, Write};
use std::process::ExitCode;

fn usage() -> String {
    let mut s =
        String::from("usage: tb-worker JOB A [B] | tb-worker --stdin | tb-worker --list\njobs:\n");
    for job in tb::work::JOBS {
        s.push_str(&format!("  {:<14} {}\n", job.name, job.args));
    }
    s
}

/// Parses `JOB A [B]` and runs it.
fn answer(words: &[&str]) -> Result<u64, String> {
    let (job, a, b) = match words {
        [job, a] => (*job, *a, "0"),
        [job, a, b] => (*job, *a, *b),
        _ => return Err(format!("expected JOB A [B], got {:?}", words.join(" "))),
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{s:?} is not a number"))
    };
    tb::work::run(job, num(a)?, num(b)?)
        .ok_or_else(|| format!("unknown job {job:?}; jobs: {}", tb::work::job_names()))
}

fn serve_stdin() -> ExitCode {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else {
            return ExitCode::FAILURE;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let reply = match answer(&words) {
            Ok(v) => v.to_string(),
            Err(e) => format!("ERR {e}"),
        };
        if writeln!(out, "{reply}").and_then(|_| out.flush()).is_err() {
            return ExitCode::FAILURE; // the parent went away
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["--stdin"] => serve_stdin(),
        ["--list"] | ["--help"] | ["-h"] => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        _ => match answer(&words) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tb-worker: {e}\n{}", usage());
                ExitCode::from(2)
            }
        },
    }
}
