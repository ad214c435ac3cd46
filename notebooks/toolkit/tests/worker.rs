//! The `tb-worker` binary computes exactly what `tb::work::run` computes, in both of its modes,
//! and `tb::procs` drives it (using the binary cargo built for this test run).

use std::io::Write;
use std::process::{Command, Stdio};

const WORKER: &str = env!("CARGO_BIN_EXE_tb-worker");

fn use_test_worker() {
    // Every test sets the same value, so the order they run in does not matter.
    std::env::set_var("THREADBOOK_WORKER", WORKER);
}

const CASES: &[(&str, u64, u64)] = &[
    ("spin", 100_000, 0),
    ("count_primes", 0, 100),
    ("count_primes", 1_000, 20_000),
    ("sum_squares", 0, 100_000),
    ("collatz_steps", 1, 10_000),
    ("mem_sum", 1, 3),
    ("sleep", 1, 0),
];

#[test]
fn every_job_is_covered() {
    for job in tb::work::JOBS {
        assert!(
            CASES.iter().any(|c| c.0 == job.name),
            "no case for {}",
            job.name
        );
    }
}

#[test]
fn argument_mode_agrees_with_the_library() {
    for &(job, a, b) in CASES {
        let out = Command::new(WORKER)
            .args([job, &a.to_string(), &b.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{job}: {out:?}");
        let got: u64 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(got, tb::work::run(job, a, b).unwrap(), "{job} {a} {b}");
    }
}

#[test]
fn unknown_job_fails_with_exit_code_2() {
    let out = Command::new(WORKER)
        .args(["nope", "1", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown job \"nope\""));
}

#[test]
fn stdin_mode_answers_one_line_per_request() {
    let mut child = Command::new(WORKER)
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for &(job, a, b) in CASES {
        input.push_str(&format!("{job} {a} {b}\n"));
    }
    input.push_str("bogus 1 2\n\ncount_primes 0\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CASES.len() + 2, "{text}");
    for (line, &(job, a, b)) in lines.iter().zip(CASES) {
        assert_eq!(
            line.parse::<u64>().unwrap(),
            tb::work::run(job, a, b).unwrap(),
            "{job}"
        );
    }
    assert!(lines[CASES.len()].starts_with("ERR unknown job"));
    assert_eq!(lines[CASES.len() + 1], "0", "B defaults to 0");
}

#[test]
fn procs_run_and_run_parallel_agree_with_threads() {
    use_test_worker();
    assert_eq!(tb::procs::run("count_primes", 0, 100), 25);
    let parts = tb::procs::split(0, 30_000, 3);
    let before = tb::children_cpu_time();
    let by_procs = tb::procs::run_parallel("collatz_steps", &parts);
    let by_threads = tb::work::run_threads("collatz_steps", &parts);
    assert_eq!(by_procs, by_threads);
    assert_eq!(
        tb::work::combine(&by_procs),
        tb::work::collatz_steps(0, 30_000)
    );
    // Waited-for children's CPU time shows up in children_cpu_time.
    let spins = tb::procs::run_parallel("spin", &[(20_000_000, 0), (20_000_000, 0)]);
    assert_eq!(spins, vec![tb::work::spin(20_000_000); 2]);
    let used = tb::children_cpu_time() - before;
    assert!(
        used >= std::time::Duration::from_millis(20),
        "children used {used:?}"
    );
}

#[test]
fn procs_report_worker_errors() {
    use_test_worker();
    let err = tb::procs::try_run("nope", 1, 2).unwrap_err();
    assert!(err.contains("unknown job"), "{err}");
    let err = tb::procs::try_run_parallel("nope", &[(0, 1), (1, 2)]).unwrap_err();
    assert!(err.contains("unknown job"), "{err}");
}

#[test]
fn long_lived_worker_round_trips() {
    use_test_worker();
    let mut w = tb::procs::Worker::spawn();
    assert_ne!(w.pid(), std::process::id());
    for n in [10, 100, 1000] {
        assert_eq!(w.call("count_primes", 0, n), tb::work::count_primes(0, n));
    }
    assert!(w
        .try_call("nope", 0, 0)
        .unwrap_err()
        .contains("ERR unknown job"));
    assert!(w.finish().unwrap().success());
}
