//! `procs::worker_path` really builds `tb-worker` with cargo (a release build: slow, so
//! ignored by default; run with `cargo test --test build_worker -- --ignored`).

#[test]
#[ignore = "release-builds the toolkit (about a minute)"]
fn worker_path_builds_the_worker_with_cargo() {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("toolkit-target");
    std::env::remove_var("THREADBOOK_WORKER");
    std::env::set_var("THREADBOOK_TOOLKIT_TARGET", &target);
    let path = tb::procs::worker_path();
    assert!(path.starts_with(&target), "{}", path.display());
    assert!(path.is_file());
    assert_eq!(tb::procs::run("count_primes", 0, 100), 25);
    assert_eq!(
        tb::procs::run_parallel("sum_squares", &tb::split(0, 1000, 3))
            .iter()
            .sum::<u64>(),
        332_833_500
    );
}
