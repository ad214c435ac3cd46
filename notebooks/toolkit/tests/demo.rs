//! Every `tb-demo` scenario ends the way the notebooks say it does, run through
//! `tb::course::demo` (using the binary cargo built for this test run).

use std::time::Duration;

use tb::course::demo::{self, DemoOutcome};

const DEMO: &str = env!("CARGO_BIN_EXE_tb-demo");
const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;
const SIGSEGV: i32 = 11;

fn run(scenario: &str) -> DemoOutcome {
    // Every test sets the same value, so the order they run in does not matter.
    std::env::set_var("THREADBOOK_BIN_TB_DEMO", DEMO);
    demo::run(scenario, Duration::from_secs(20))
}

fn exited(o: &DemoOutcome, code: i32) {
    assert_eq!(o.exit_code, Some(code), "{o}");
    assert_eq!(o.signal, None, "{o}");
    assert!(!o.timed_out, "{o}");
}

fn killed_by(o: &DemoOutcome, signal: i32) {
    assert_eq!(o.signal, Some(signal), "{o}");
    assert_eq!(o.exit_code, None, "{o}");
    assert!(!o.timed_out, "{o}");
}

#[test]
fn the_binary_is_found_through_bins() {
    std::env::set_var("THREADBOOK_BIN_TB_DEMO", DEMO);
    assert_eq!(tb::course::bins::demo_path(), std::path::PathBuf::from(DEMO));
}

#[test]
fn list_names_the_scenarios() {
    let out = std::process::Command::new(DEMO).arg("--list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["deadlock", "segfault-in-thread", "count-stdin", "print-pid-tids"] {
        assert!(text.contains(name), "{name} missing from
{text}");
    }
}

#[test]
fn unknown_scenario_exits_2() {
    let o = run("nope");
    exited(&o, 2);
    assert!(o.stderr.contains("unknown scenario \"nope\""), "{o}");
}

#[test]
fn ok_and_exit_codes() {
    let o = run("ok");
    exited(&o, 0);
    assert!(o.success());
    assert!(o.stdout.starts_with("ok (pid "), "{o}");
    exited(&run("exit 3"), 3);
    exited(&run("exit"), 0);
    assert_eq!(run("exit 3").verdict(), "exited with code 3");
}

#[test]
fn panic_in_thread_is_reported_by_join_and_the_process_lives() {
    let o = run("panic-in-thread");
    exited(&o, 0);
    assert!(
        o.stderr.contains("thread 'worker'") && o.stderr.contains("boom in worker"),
        "{o}"
    );
    assert!(
        o.stdout
            .contains("join() returned Err(panic payload \"boom in worker\")"),
        "{o}"
    );
    assert!(o.stdout.contains("still alive"), "{o}");
}

#[test]
fn backtraces_are_left_out_of_demonstrations() {
    // Even when the parent asks for backtraces, a demonstration shows the panic message only.
    std::env::set_var("RUST_BACKTRACE", "full");
    let o = run("panic-in-thread");
    exited(&o, 0);
    assert!(o.stderr.contains("boom in worker"), "{o}");
    assert!(!o.stderr.contains("stack backtrace"), "{o}");
}

#[test]
fn panic_in_thread_with_an_aborting_hook_kills_the_process() {
    let o = run("panic-in-thread-abort");
    killed_by(&o, SIGABRT);
    assert!(o.stderr.contains("boom in worker"), "{o}");
    assert!(!o.stdout.contains("unreachable"), "{o}");
}

#[test]
fn poisoned_mutex_is_reported_to_the_next_locker() {
    let o = run("poisoned-mutex");
    exited(&o, 0);
    assert!(o.stdout.contains("join() is_err = true"), "{o}");
    assert!(
        o.stdout.contains("Err(PoisonError)") && o.stdout.contains("value inside = 1"),
        "{o}"
    );
}

#[test]
fn abort_gives_sigabrt() {
    let o = run("abort");
    killed_by(&o, SIGABRT);
    assert_eq!(o.signal_name(), Some("SIGABRT"));
    assert_eq!(o.verdict(), "killed by signal 6 (SIGABRT)");
}

#[test]
fn abort_in_a_thread_kills_main_too() {
    let o = run("abort-in-thread 60");
    killed_by(&o, SIGABRT);
    assert!(o.stdout.contains("main: tick 1\n"), "{o}");
    assert!(
        o.stdout.contains("worker: calling std::process::abort()"),
        "{o}"
    );
    assert!(!o.stdout.contains("finished all ticks"), "{o}");
    // 100 ticks of 20 ms would take 2 s; the abort after 60 ms stops them early.
    assert!(!o.stdout.contains("main: tick 100\n"), "{o}");
}

#[test]
fn segfaults_give_sigsegv_in_main_and_in_a_thread() {
    for s in ["segfault", "segfault-in-thread"] {
        let o = run(s);
        killed_by(&o, SIGSEGV);
        assert_eq!(o.signal_name(), Some("SIGSEGV"));
        assert!(o.stdout.contains("writing to address 0x8"), "{o}");
        assert!(!o.stdout.contains("unreachable"), "{o}");
    }
}

#[test]
fn stack_overflow_in_main_is_reported_and_aborts() {
    let o = run("stack-overflow");
    killed_by(&o, SIGABRT);
    // "thread 'main' has overflowed its stack" (recent Rust adds the thread id after the name).
    assert!(o.stderr.contains("thread 'main'"), "{o}");
    assert!(o.stderr.contains("has overflowed its stack"), "{o}");
}

#[test]
fn stack_overflow_in_a_small_thread_aborts_the_process() {
    let o = run("stack-overflow-thread 64");
    killed_by(&o, SIGABRT);
    assert!(o.stderr.contains("thread 'small'"), "{o}");
    assert!(o.stderr.contains("has overflowed its stack"), "{o}");
    assert!(!o.stdout.contains("unreachable"), "{o}");
}

#[test]
fn bounded_recursion_fits_its_stack() {
    let o = run("recurse 200 2048");
    exited(&o, 0);
    assert!(
        o.stdout
            .contains("reached depth 200 in thread 'stack-2048KiB'"),
        "{o}"
    );
    // 200 calls of at least 1 KiB each.
    let kib: u64 = o
        .stdout
        .split("about ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{o}"));
    assert!((200..2048).contains(&kib), "{o}");
    // The same depth does not fit in a 64 KiB stack.
    killed_by(&run("recurse 200 64"), SIGABRT);
}

#[test]
fn deadlock_hangs_until_the_timeout_kills_it() {
    std::env::set_var("THREADBOOK_BIN_TB_DEMO", DEMO);
    let o = demo::run("deadlock", Duration::from_millis(500));
    assert!(o.timed_out, "{o}");
    assert_eq!(o.signal, Some(SIGKILL), "{o}");
    assert_eq!(o.exit_code, None);
    assert!(o.elapsed >= Duration::from_millis(500), "{o}");
    assert!(o.stdout.contains("thread 1: holds a, waits for b"), "{o}");
    assert!(o.stdout.contains("thread 2: holds b, waits for a"), "{o}");
    assert!(
        o.verdict().starts_with("hung: killed after the"),
        "{}",
        o.verdict()
    );
}

#[test]
fn spin_finishes() {
    let o = run("spin 20");
    exited(&o, 0);
    assert!(o.stdout.starts_with("spun 20 ms of wall time, got "), "{o}");
}

#[test]
fn spin_and_sleep_threads() {
    let o = run("spin-threads 3 1000");
    exited(&o, 0);
    let one = tb::work::spin(1000);
    let sum = one.wrapping_add(one).wrapping_add(one);
    assert!(o.stdout.starts_with("3 threads x spin(1000): wall "), "{o}");
    assert!(
        o.stdout.trim_end().ends_with(&format!("checksum {sum}")),
        "{o}"
    );
    let o = run("sleep-threads 5 40");
    exited(&o, 0);
    assert!(
        o.stdout.starts_with("5 threads each slept 40 ms: wall "),
        "{o}"
    );
    // Five sleeps at once take about one sleep, not five.
    assert!(o.elapsed < Duration::from_millis(40 * 5), "{o}");
}

#[test]
fn pid_and_tids() {
    let o = run("print-pid-tids 3");
    exited(&o, 0);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{o}");
    let pid = |l: &str| {
        l.split("pid ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let tid = |l: &str| {
        l.split("tid ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let pids: Vec<String> = lines[..4].iter().map(|l| pid(l)).collect();
    assert!(pids.iter().all(|p| *p == pids[0]), "one pid: {o}");
    assert_ne!(
        pids[0],
        std::process::id().to_string(),
        "not the parent's pid"
    );
    let mut tids: Vec<String> = lines[..4].iter().map(|l| tid(l)).collect();
    assert_eq!(tids[0], pids[0], "main's thread id is the pid: {o}");
    tids.sort();
    tids.dedup();
    assert_eq!(tids.len(), 4, "four thread ids: {o}");
    let task = lines[4]
        .strip_prefix("/proc/self/task: ")
        .expect("task line");
    assert_eq!(task.split_whitespace().count(), 4, "{o}");
}

#[test]
fn pipes_count_and_echo() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let expected_sum: u64 = data.iter().map(|&b| b as u64).sum();
    for (scenario, check) in [("count-stdin", 0), ("echo", 1)] {
        let mut child = Command::new(DEMO)
            .arg(scenario)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let d = data.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&d).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        if check == 0 {
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                format!("{} {expected_sum}\n", data.len())
            );
        } else {
            assert_eq!(out.stdout, data);
        }
    }
}

#[test]
fn a_crash_matrix_has_one_outcome_per_scenario() {
    std::env::set_var("THREADBOOK_BIN_TB_DEMO", DEMO);
    let all = demo::run_all(&["panic-in-thread", "abort-in-thread", "segfault"], Duration::from_secs(20));
    let verdicts: Vec<String> = all.iter().map(|o| o.verdict()).collect();
    assert_eq!(verdicts, ["exited with code 0", "killed by signal 6 (SIGABRT)", "killed by signal 11 (SIGSEGV)"]);
}
