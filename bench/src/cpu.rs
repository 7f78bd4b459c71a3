//! CPU time of threads and processes from Linux's `/proc`, to compare work per CPU-second
//! rather than per wall-clock second on a machine shared with other work.
//!
//! A thread's: `schedstat`'s first field (nanoseconds on a CPU), or where the kernel has no
//! scheduler statistics, `stat`'s utime + stime (USER_HZ ticks, 10 ms). A process's: `stat`'s
//! utime + stime, which count every thread of it, ended ones too (its `schedstat` is only its
//! main thread's).

/// CPU time (user and system) of the calling thread so far, seconds; 0 where
/// `/proc/thread-self` cannot be read.
pub fn thread_seconds() -> f64 {
    let dir = "/proc/thread-self";
    schedstat_seconds(dir).or_else(|| stat_seconds(dir)).unwrap_or(0.0)
}

/// CPU time (user and system) of process `pid` so far, seconds (every thread of it); `None`
/// where its `/proc` entry cannot be read (another host, or gone).
pub fn process_seconds(pid: u32) -> Option<f64> {
    stat_seconds(&format!("/proc/{pid}"))
}

fn schedstat_seconds(dir: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
    Some(text.split_whitespace().next()?.parse::<u64>().ok()? as f64 / 1e9)
}

fn stat_seconds(dir: &str) -> Option<f64> {
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
        // Ticks of 10 ms: the process's count may lag this thread's nanoseconds by one.
        let process = super::process_seconds(std::process::id()).expect("own /proc");
        assert!(process >= used - 0.011, "process {process} s, this thread {used} s");
    }
}
