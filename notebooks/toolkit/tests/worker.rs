//! The `tb-worker` binary computes exactly what `tb::work::run` computes, in all of its modes,
//! and reports the profile it was built with (using the binary cargo built for this test run).

use std::io::Write;
use std::process::{Command, Stdio};

const WORKER: &str = env!("CARGO_BIN_EXE_tb-worker");

fn use_test_worker() {
    // Every test sets the same value, so the order they run in does not matter.
    std::env::set_var("THREADBOOK_BIN_TB_WORKER", WORKER);
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
fn run_parallel_agrees_with_the_library_and_children_cpu_counts() {
    use_test_worker();
    let parts = tb::split(0, 30_000, 3);
    let before = tb::children_cpu_time();
    let by_procs = tb::procs::run_parallel("collatz_steps", &parts);
    assert_eq!(tb::work::combine(&by_procs), tb::work::collatz_steps(0, 30_000));
    let spins = tb::procs::run_parallel("spin", &[(20_000_000, 0), (20_000_000, 0)]);
    assert_eq!(spins, vec![tb::work::spin(20_000_000); 2]);
    let used = tb::children_cpu_time() - before;
    assert!(used >= std::time::Duration::from_millis(20), "children used {used:?}");
}

#[test]
fn profile_is_the_librarys() {
    let out = Command::new(WORKER).arg("--profile").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), tb::machine::profile());
}

#[test]
fn connect_mode_serves_a_coordinator_over_tcp() {
    use std::io::{BufRead, BufReader};
    use std::net::{Shutdown, TcpListener};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = Command::new(WORKER)
        .args(["--connect", &addr.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        format!("READY {}", child.id()),
        "introduces itself"
    );
    // One request at a time (a round trip each), then a batch sent before reading.
    for &(job, a, b) in CASES {
        writeln!(writer, "{job} {a} {b}").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim().parse::<u64>().unwrap(),
            tb::work::run(job, a, b).unwrap(),
            "{job}"
        );
    }
    writer
        .write_all(b"count_primes 0 100\n\nbogus 1 2\nsum_squares 0 10\n")
        .unwrap();
    let mut replies = Vec::new();
    for _ in 0..3 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        replies.push(line.trim().to_string());
    }
    assert_eq!(replies[0], "25");
    assert!(replies[1].starts_with("ERR unknown job"), "{replies:?}");
    assert_eq!(replies[2], "285");
    // Closing the connection ends the worker normally.
    writer.shutdown(Shutdown::Both).unwrap();
    assert!(child.wait().unwrap().success());
}

/// A loopback port bound but not listening: a connection to it is refused, and
/// while the returned socket is open no other socket (another test's listener)
/// can take the port. (A port bound and freed again can be handed out anew.)
fn refused_port() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket calls on a descriptor this function owns, with
    // pointers to live, correctly sized sockaddr_in values.
    unsafe {
        let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(raw);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sa = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
        assert_eq!(libc::bind(fd.as_raw_fd(), sa, len), 0, "bind: {}", std::io::Error::last_os_error());
        assert_eq!(libc::getsockname(fd.as_raw_fd(), sa, &mut len), 0);
        (fd, u16::from_be(addr.sin_port))
    }
}

#[test]
fn connect_mode_fails_when_nobody_listens() {
    let (_held, port) = refused_port();
    let out = Command::new(WORKER)
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn connect_mode_worker_dies_alone_when_killed() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::os::unix::process::ExitStatusExt;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(WORKER)
                .args(["--connect", &addr])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut conns: Vec<_> = (0..2)
        .map(|_| {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut hello = String::new();
            r.read_line(&mut hello).unwrap();
            let pid: u32 = hello
                .trim()
                .strip_prefix("READY ")
                .unwrap()
                .parse()
                .unwrap();
            (pid, r, s)
        })
        .collect();
    // Kill the first child; its connection reports end of file, the other one still answers.
    children[0].kill().unwrap();
    let status = children[0].wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    let dead = conns.iter().position(|c| c.0 == children[0].id()).unwrap();
    let mut line = String::new();
    let _ = writeln!(conns[dead].2, "count_primes 0 100");
    assert_eq!(conns[dead].1.read_line(&mut line).unwrap_or(0), 0, "EOF");
    let alive = 1 - dead;
    writeln!(conns[alive].2, "count_primes 0 100").unwrap();
    conns[alive].1.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "25");
    drop(conns);
    assert!(children[1].wait().unwrap().success());
}
