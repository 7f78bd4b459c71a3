//! CPU time of threads and processes from Linux's `/proc`, to compare work per CPU-second
//! rather than per wall-clock second on a machine shared with other work.
//!
//! `schedstat`'s first field (nanoseconds on a CPU) is preferred; where the kernel has no
//! scheduler statistics, `stat`'s utime + stime (USER_HZ ticks, 10 ms) stand in.

/// CPU time (user and system) of the calling thread so far, seconds; 0 where
/// `/proc/thread-self` cannot be read.
pub fn thread_seconds() -> f64 {
    seconds_of("/proc/thread-self").unwrap_or(0.0)
}

/// CPU time (user and system) of process `pid` so far, seconds (every thread of it); `None`
/// where its `/proc` entry cannot be read (another host, or gone).
pub fn process_seconds(pid: u32) -> Option<f64> {
    seconds_of(&format!("/proc/{pid}"))
}

fn seconds_of(dir: &str) -> Option<f64> {
    if let Some(ns) = std::fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
    {
        return Some(ns as f64 / 1e9);
    }
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    // Linux reports these in USER_HZ, 100 on every platform it runs on.
    Some((ticks(14)? + ticks(15)?) / 100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_busy_thread_uses_cpu_time() {
        let before = super::thread_seconds();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let used = super::thread_seconds() - before;
        assert!(used > 0.0 && used < 1.0, "{used}");
        assert!(super::process_seconds(std::process::id()).is_some_and(|s| s >= used));
    }
}
