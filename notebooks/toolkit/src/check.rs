//! What an exercise's checking cell uses to test the concurrency, not only the value: a
//! [`Meeting`] that the parts of a solution must all reach *at the same time*. A solution that
//! runs its parts one after another never gets them all there, and the check fails.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A meeting point for `n` threads, with a timeout: `arrive()` waits until all `n` are there.
pub struct Meeting {
    n: usize,
    timeout: Duration,
    // TIDs that arrived; how many wait now; all n waited at once; someone gave up waiting
    state: Mutex<(Vec<u64>, usize, bool, bool)>,
    all_here: Condvar,
}

impl Meeting {
    /// A meeting of `n` threads; each waits at most `timeout` for the others.
    pub fn new(n: usize, timeout: Duration) -> Meeting {
        Meeting { n, timeout, state: Mutex::new((Vec::new(), 0, false, false)), all_here: Condvar::new() }
    }

    /// Records the calling thread and waits until `n` threads are here (true), or the timeout has
    /// passed (false; later arrivals then return false at once, so a sequential solution fails fast).
    pub fn arrive(&self) -> bool {
        let deadline = Instant::now() + self.timeout;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.push(crate::os_tid());
        s.1 += 1;
        if s.1 >= self.n {
            s.2 = true;
            self.all_here.notify_all();
        }
        while !s.2 && !s.3 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                s.3 = true;
                break;
            }
            s = self.all_here.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        s.1 -= 1;
        s.2
    }

    /// Distinct threads (TIDs) that arrived.
    pub fn threads(&self) -> usize {
        let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner()).0.clone();
        t.sort();
        t.dedup();
        t.len()
    }

    /// Panics, naming `what`, unless all `n` parts were alive at the same time on distinct threads.
    pub fn check(&self, what: &str) {
        let (arrived, met) = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (s.0.len(), s.2)
        };
        assert!(
            met,
            "{what}: the {} parts were never all running at the same time ({arrived} arrived, \
             each waited {:?} for the others): they ran one after another",
            self.n, self.timeout
        );
        assert!(
            self.threads() >= self.n,
            "{what}: the {} parts ran on {} thread(s), not on {} threads",
            self.n,
            self.threads(),
            self.n
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_meet_and_a_sequence_does_not() {
        let m = Meeting::new(3, Duration::from_secs(5));
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| assert!(m.arrive()));
            }
        });
        m.check("three threads");
        let seq = Meeting::new(2, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(!std::thread::scope(|s| s.spawn(|| seq.arrive()).join().unwrap()));
        }
        assert_eq!(seq.threads(), 2);
        let why = std::panic::catch_unwind(|| seq.check("one after another")).unwrap_err();
        let msg = why.downcast_ref::<String>().unwrap();
        assert!(msg.contains("never all running at the same time"), "{msg}");
        let one = Meeting::new(1, Duration::from_millis(50));
        assert!(one.arrive() && one.arrive());
        let two = Meeting::new(2, Duration::from_millis(50));
        std::thread::scope(|s| {
            s.spawn(|| two.arrive());
            two.arrive();
        });
        two.check("two threads");
    }
}
