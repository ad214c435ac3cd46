//! `course::bins` really builds `tb-worker` with cargo, with the toolkit's own profile (a
//! release build: slow, so ignored by default; `cargo test --test build_worker -- --ignored`).

#[test]
#[ignore = "release-builds the toolkit (about a minute)"]
fn worker_path_builds_the_worker_with_the_toolkits_profile() {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("toolkit-target");
    std::env::remove_var("THREADBOOK_BIN_TB_WORKER");
    std::env::set_var("THREADBOOK_TOOLKIT_TARGET", &target);
    let path = tb::course::bins::worker_path();
    assert!(path.starts_with(&target), "{}", path.display());
    let out = std::process::Command::new(&path).arg("--profile").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), tb::machine::profile());
    assert_eq!(tb::procs::run_parallel("sum_squares", &tb::split(0, 1000, 3)).iter().sum::<u64>(), 332_833_500);
}
