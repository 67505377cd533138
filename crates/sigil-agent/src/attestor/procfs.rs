//! Bounded reads of `/proc/<pid>/status` and `/proc/<pid>/stat`: the ids a process runs as, its
//! supplementary groups and its start time (which, with the pid, names one process for good).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use super::AttestError;

/// `/proc` files read here are small; more than this is not a real procfs file.
const MAX_PROC_FILE_BYTES: u64 = 64 * 1024;

/// What `/proc/<pid>/status` and `/proc/<pid>/stat` say about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessFacts {
    pub(super) effective_uid: u32,
    pub(super) effective_gid: u32,
    pub(super) supplementary_gids: Vec<u32>,
    /// Clock ticks after boot at which the process started (`stat` field 22).
    pub(super) start_time: u64,
}

/// `/proc/<pid>/<name>`.
pub(super) fn proc_path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// Reads the facts of process `pid`.
pub(super) fn read_facts(pid: i32) -> Result<ProcessFacts, AttestError> {
    let status_path = proc_path(pid, "status");
    let status = read_small(pid, &status_path)?;
    let stat_path = proc_path(pid, "stat");
    let stat = read_small(pid, &stat_path)?;
    let malformed = |p: &PathBuf| AttestError::Malformed {
        path: p.display().to_string(),
    };
    let effective_uid = id_field(&status, "Uid:").ok_or_else(|| malformed(&status_path))?;
    let effective_gid = id_field(&status, "Gid:").ok_or_else(|| malformed(&status_path))?;
    let supplementary_gids = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let start_time = start_time(&stat).ok_or_else(|| malformed(&stat_path))?;
    Ok(ProcessFacts {
        effective_uid,
        effective_gid,
        supplementary_gids,
        start_time,
    })
}

/// The start time of process `pid` (one read of `/proc/<pid>/stat`).
pub(super) fn read_start_time(pid: i32) -> Result<u64, AttestError> {
    let stat_path = proc_path(pid, "stat");
    let stat = read_small(pid, &stat_path)?;
    start_time(&stat).ok_or_else(|| AttestError::Malformed {
        path: stat_path.display().to_string(),
    })
}

/// Reads a procfs text file of process `pid`, bounded.
fn read_small(pid: i32, path: &PathBuf) -> Result<String, AttestError> {
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(MAX_PROC_FILE_BYTES).read_to_string(&mut text))
        .map_err(|e| io_error(pid, path, e))?;
    Ok(text)
}

/// Maps an I/O error on a file of process `pid`: a missing file means the process is gone.
pub(super) fn io_error(pid: i32, path: &std::path::Path, e: io::Error) -> AttestError {
    match e.kind() {
        io::ErrorKind::NotFound => AttestError::ProcessGone { pid },
        // ESRCH: the process exited while the file was open.
        _ if e.raw_os_error() == Some(3) => AttestError::ProcessGone { pid },
        _ => AttestError::Proc {
            path: path.display().to_string(),
            source: e,
        },
    }
}

/// The effective id (second column) of a `Uid:`/`Gid:` line of `status`.
fn id_field(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Field 22 of `stat`. The command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`: the next field is field 3.
fn start_time(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_ids_and_groups_from_status() {
        let status =
            "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t20\t21\t22\t23\nGroups:\t4 24 27 \n";
        assert_eq!(id_field(status, "Uid:"), Some(1001));
        assert_eq!(id_field(status, "Gid:"), Some(21));
    }

    #[test]
    fn start_time_survives_parentheses_and_spaces_in_the_command_name() {
        let mut stat = String::from("42 (a) b (c) R 1");
        for i in 5..=21 {
            stat.push_str(&format!(" {i}"));
        }
        stat.push_str(" 987654 23 24");
        assert_eq!(start_time(&stat), Some(987_654));
    }

    #[test]
    fn reads_the_current_process() {
        let facts = read_facts(i32::try_from(std::process::id()).unwrap()).unwrap();
        assert_eq!(facts.effective_uid, nix::unistd::geteuid().as_raw());
        assert_eq!(facts.effective_gid, nix::unistd::getegid().as_raw());
        assert!(facts.start_time > 0);
    }

    #[test]
    fn missing_process_is_reported_as_gone() {
        assert!(matches!(
            read_facts(1 << 30),
            Err(AttestError::ProcessGone { .. })
        ));
    }
}
