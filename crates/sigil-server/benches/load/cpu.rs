//! CPU time, to state issuance "per core" as certificates per CPU-second the issuer itself
//! burns: robust to the other load on a shared machine, and free of the simulated callers' own
//! cost (their TLS, HTTP/2 and protobuf run on threads of their own, subtracted here).

use std::path::Path;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of process `pid` (`"self"` for this one), threads that already
/// exited included.
pub fn process_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name: state is the first, utime the 12th, stime
    // the 13th.
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / USER_HZ
}

/// CPU seconds of this process's live threads whose name starts with `prefix`.
pub fn threads_secs(prefix: &str) -> f64 {
    let mut nanos = 0_u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end().starts_with(prefix) {
            nanos += on_cpu_nanos(&dir);
        }
    }
    nanos as f64 / 1e9
}

fn on_cpu_nanos(task: &Path) -> u64 {
    std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
