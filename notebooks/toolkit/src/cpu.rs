//! CPU time (user + system) from `getrusage`: of the whole process, of its waited-for
//! children, and of the calling thread. CPU time larger than wall time proves that several
//! cores worked at once.

use std::time::Duration;

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass; it fails only for an invalid `who`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (user + system) used so far by every thread of this process.
pub fn cpu_time() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time (user + system) used by this process's children that have ended *and been
/// waited for* (`wait()`, `output()`, `status()`); a running child does not count yet.
pub fn children_cpu_time() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

/// CPU time (user + system) used so far by the calling thread (Linux), or the process's
/// elsewhere.
pub fn thread_cpu_time() -> Duration {
    #[cfg(target_os = "linux")]
    {
        rusage(libc::RUSAGE_THREAD)
    }
    #[cfg(not(target_os = "linux"))]
    {
        rusage(libc::RUSAGE_SELF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn busy_loop_uses_cpu_time() {
        // Spin until this thread has used 40 ms of CPU (a busy machine may take longer in wall
        // time); the whole process must then have used at least as much.
        let before = cpu_time();
        let t_before = thread_cpu_time();
        let start = Instant::now();
        let mut x = 1u64;
        while thread_cpu_time() - t_before < Duration::from_millis(40) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "thread CPU time does not advance"
            );
        }
        assert!(cpu_time() - before >= Duration::from_millis(40));
    }

    #[test]
    fn sleeping_uses_little_thread_cpu() {
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_cpu_time() - before < Duration::from_millis(20));
    }
}
