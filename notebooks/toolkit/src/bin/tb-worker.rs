//! tb-worker: runs one of the toolkit's workloads (`tb::work`) in its own process, so a
//! notebook can compare threads with child processes doing exactly the same work.
//!
//! ```text
//! tb-worker JOB A [B]     print the u64 result of JOB(A, B) on stdout
//! tb-worker --stdin       read lines "JOB A B" from stdin, answer one line each
//!                         (a number, or "ERR message"); stops at end of input
//! tb-worker --connect HOST:PORT
//!                         connect to a coordinator over TCP, send "READY <pid>", then
//!                         answer "JOB A B" lines like --stdin; stops when the coordinator
//!                         closes the connection
//! tb-worker --profile     print how it was compiled (the same profile as the notebook's cells)
//! tb-worker --list        list the jobs
//! ```
//!
//! The work itself is `tb::work::run`, the same function the threads in the notebook call.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;

fn usage() -> String {
    let mut s =
        String::from("usage: tb-worker JOB A [B] | tb-worker --stdin | tb-worker --connect HOST:PORT | tb-worker --list\njobs:\n");
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

/// Answers one line per request line ("JOB A B" → a number or "ERR message") until the input
/// ends; fails if the input or the output breaks (e.g. the other side went away).
fn serve(input: impl BufRead, mut out: impl Write) -> ExitCode {
    for line in input.lines() {
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

fn serve_stdin() -> ExitCode {
    let stdin = std::io::stdin();
    serve(stdin.lock(), std::io::stdout().lock())
}

/// A worker node of a hand-rolled cluster: connects to the coordinator, introduces itself with
/// `READY <pid>`, then serves requests over the connection.
fn serve_tcp(addr: &str) -> ExitCode {
    let stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tb-worker: cannot connect to {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One small line per message: send it at once instead of waiting to fill a packet.
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = match stream.try_clone() {
        Ok(w) => (BufReader::new(stream), w),
        Err(e) => {
            eprintln!("tb-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    if writeln!(writer, "READY {}", std::process::id())
        .and_then(|_| writer.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    serve(reader, writer)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["--stdin"] => serve_stdin(),
        ["--profile"] => {
            println!("{}", tb::machine::profile());
            ExitCode::SUCCESS
        }
        ["--connect", addr] => serve_tcp(addr),
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
