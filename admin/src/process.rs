//! The process's own figures (memory, CPU, file descriptors), read from Linux's `/proc`
//! at scrape time; elsewhere only the start time is known.

use std::time::{SystemTime, UNIX_EPOCH};

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (Linux's `USER_HZ`, fixed at 100
/// for what the kernel shows user space).
const USER_HZ: f64 = 100.0;

/// What the process uses now; each figure `None` where it cannot be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    /// Resident memory.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory.
    pub virtual_memory_bytes: Option<u64>,
    /// User and system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// OS threads.
    pub threads: Option<u64>,
    /// When the process started, since the Unix epoch.
    pub start_time_seconds: f64,
}

impl Process {
    /// Reads the process's figures now; `started` is when it started.
    #[must_use]
    pub fn read(started: SystemTime) -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // The command name may hold spaces: fields are counted after its ')'.
                let rest = &stat[stat.rfind(')')? + 1..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = f.get(11)?.parse().ok()?;
                let stime: f64 = f.get(12)?.parse().ok()?;
                Some((utime + stime) / USER_HZ)
            });
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            });
        Self {
            resident_memory_bytes: field("VmRSS:").map(|kb| kb * 1024),
            virtual_memory_bytes: field("VmSize:").map(|kb| kb * 1024),
            cpu_seconds,
            open_fds,
            max_fds,
            threads: field("Threads:"),
            start_time_seconds: started
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_reads_itself() {
        let p = Process::read(SystemTime::now());
        assert!(p.resident_memory_bytes.is_some_and(|r| r > 0));
        assert!(p.open_fds.is_some_and(|n| n >= 3));
        assert!(p.max_fds.is_some_and(|n| n > 0));
        assert!(p.cpu_seconds.is_some());
        assert!(p.threads.is_some_and(|n| n >= 1));
    }
}
