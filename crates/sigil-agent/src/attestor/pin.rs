//! [`PinnedPeer`]: the process at the other end of a Workload API connection, captured once when
//! the agent accepts the connection, so that attestation describes that process as it was then
//! and later calls can cheaply check it is still the same process.
//!
//! Captured at accept: the credentials the kernel recorded at `connect()` (`SO_PEERCRED`), the
//! start time of that pid (which, with the pid, names one process for good), its groups, the
//! path of its binary and an open handle on the binary itself (through `/proc/<pid>/exe`, so
//! the very inode it runs). A later `exec` changes none of these; a pid reused by another
//! process has another start time.
//!
//! Liveness: a pidfd (`pidfd_open`) taken at accept and bound to the pinned process by the start
//! time re-read after it was opened; each call polls it (one syscall, no `/proc` path walk), and
//! it turns readable when the process exits, even while it is an unreaped zombie. On a kernel
//! without `pidfd_open` (before 5.3) each call re-reads the start time instead. Not
//! `SO_PEERPIDFD` (which would also close the window between `connect()` and accept): no crate
//! in the tree exposes it through a safe API at the versions used (nix 0.29, rustix 1.1,
//! socket2 0.6; nix ≥ 0.30 has `sockopt::PeerPidfd`) and the workspace forbids `unsafe`. See
//! SECURITY.md for the window that leaves.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use super::procfs::{ProcessFacts, io_error, proc_path, read_facts, read_start_time};
use super::{AttestError, CallerInfo};

/// A Workload API peer pinned at accept time. Attest it with a
/// [`WorkloadAttestor`](super::WorkloadAttestor); check with [`PinnedPeer::still_running`]
/// that the process has not exited (and its pid been reused) since.
#[derive(Debug)]
pub struct PinnedPeer {
    caller: CallerInfo,
    facts: ProcessFacts,
    binary: PinnedBinary,
    /// A pidfd on the pinned process; `None` where the kernel has no `pidfd_open`.
    pidfd: Option<OwnedFd>,
}

/// What the process ran when it was pinned.
#[derive(Debug)]
enum PinnedBinary {
    /// The agent may not look (another user's process and the agent is not root).
    Unreadable,
    /// `path` as `/proc/<pid>/exe` named it, and the binary itself, open; the handle is taken
    /// by the first attestation.
    Readable {
        path: PathBuf,
        file: Mutex<Option<File>>,
    },
}

impl PinnedPeer {
    /// Pins the process `caller` names. Fails when there is no pid, the process is gone, its
    /// effective ids are not those it connected with, or it changed (exited and its pid was
    /// reused, or exec'd) while it was being read.
    pub fn capture(caller: CallerInfo) -> Result<Self, AttestError> {
        if caller.pid <= 0 {
            return Err(AttestError::UnknownPid);
        }
        let pid = caller.pid;
        let facts = read_facts(pid)?;
        if facts.effective_uid != caller.uid || facts.effective_gid != caller.gid {
            return Err(AttestError::ProcessChanged { pid });
        }
        let binary = pin_binary(pid)?;
        let pidfd = open_pidfd(pid)?;
        // The pid still names the process whose facts were read (and the pidfd was opened on):
        // nothing above mixes two processes.
        if read_start_time(pid)? != facts.start_time {
            return Err(AttestError::ProcessChanged { pid });
        }
        Ok(Self {
            caller,
            facts,
            binary,
            pidfd,
        })
    }

    /// The credentials the kernel recorded when the peer connected.
    pub fn caller(&self) -> CallerInfo {
        self.caller
    }

    /// Succeeds while the pinned process is alive. A process that exec'd since is still the same
    /// process; one that exited is not, even if a child of it holds the connection or it is not
    /// reaped yet. One `poll` of the pidfd (or, without one, a `/proc` read of the start time).
    pub fn still_running(&self) -> Result<(), AttestError> {
        let pid = self.caller.pid;
        if let Some(pidfd) = &self.pidfd {
            let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            return match rustix::event::poll(&mut fds, Some(&zero)) {
                Ok(0) => Ok(()),
                Ok(_) => Err(AttestError::ProcessGone { pid }),
                Err(e) => Err(AttestError::Proc {
                    path: format!("pidfd of process {pid}"),
                    source: e.into(),
                }),
            };
        }
        match read_start_time(pid) {
            Ok(start) if start == self.facts.start_time => Ok(()),
            Ok(_) => Err(AttestError::ProcessChanged { pid }),
            Err(e) => Err(e),
        }
    }

    /// Supplementary groups the process had when pinned.
    pub(super) fn supplementary_gids(&self) -> &[u32] {
        &self.facts.supplementary_gids
    }

    /// The path of the binary when pinned, if the agent could read it.
    pub(crate) fn binary_path(&self) -> Option<&std::path::Path> {
        match &self.binary {
            PinnedBinary::Readable { path, .. } => Some(path),
            PinnedBinary::Unreadable => None,
        }
    }

    /// The open handle on the pinned binary, once (`None` if unreadable or already taken).
    pub(super) fn take_binary(&self) -> Option<File> {
        match &self.binary {
            PinnedBinary::Readable { file, .. } => file.lock().ok().and_then(|mut f| f.take()),
            PinnedBinary::Unreadable => None,
        }
    }
}

/// A pidfd on process `pid`; `None` where the kernel has no `pidfd_open`.
fn open_pidfd(pid: i32) -> Result<Option<OwnedFd>, AttestError> {
    let gone = AttestError::ProcessGone { pid };
    let Some(raw) = Pid::from_raw(pid) else {
        return Err(AttestError::UnknownPid);
    };
    match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOSYS) => Ok(None),
        Err(rustix::io::Errno::SRCH) => Err(gone),
        Err(e) => Err(AttestError::Proc {
            path: format!("pidfd of process {pid}"),
            source: e.into(),
        }),
    }
}

/// Opens the binary process `pid` runs and reads its path, checking both name the same file
/// (an exec between the two would not).
fn pin_binary(pid: i32) -> Result<PinnedBinary, AttestError> {
    let exe = proc_path(pid, "exe");
    let file = match File::open(&exe) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(PinnedBinary::Unreadable);
        }
        Err(e) => return Err(io_error(pid, &exe, e)),
    };
    let path = std::fs::read_link(&exe).map_err(|e| io_error(pid, &exe, e))?;
    let opened = file.metadata().map_err(|e| io_error(pid, &exe, e))?;
    let now = std::fs::metadata(&exe).map_err(|e| io_error(pid, &exe, e))?;
    if (opened.dev(), opened.ino()) != (now.dev(), now.ino()) {
        return Err(AttestError::ProcessChanged { pid });
    }
    Ok(PinnedBinary::Readable {
        path,
        file: Mutex::new(Some(file)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> CallerInfo {
        CallerInfo {
            pid: i32::try_from(std::process::id()).unwrap(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    #[test]
    fn pins_the_current_process_and_its_binary() {
        let peer = PinnedPeer::capture(me()).unwrap();
        assert_eq!(peer.caller(), me());
        assert_eq!(
            peer.binary_path().unwrap(),
            std::env::current_exe().unwrap()
        );
        peer.still_running().unwrap();
        assert!(peer.take_binary().is_some());
        assert!(
            peer.take_binary().is_none(),
            "the handle is handed out once"
        );
    }

    #[test]
    fn a_process_that_exited_is_no_longer_running() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let caller = CallerInfo {
            pid: i32::try_from(child.id()).unwrap(),
            ..me()
        };
        let peer = PinnedPeer::capture(caller).unwrap();
        peer.still_running().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // Gone, or (if its pid was already reused) another process.
        assert!(peer.still_running().is_err());
    }

    #[test]
    fn a_process_that_exited_is_not_running_even_before_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let peer = PinnedPeer::capture(CallerInfo { pid, ..me() }).unwrap();
        peer.still_running().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        // Not reaped: the pid still names the same process (a zombie, same start time), which a
        // start-time check alone would take as running.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let state = loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let state = stat.rsplit(')').next().unwrap().trim_start().chars().next();
            if state == Some('Z') || std::time::Instant::now() > deadline {
                break state;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(state, Some('Z'), "the child did not become a zombie");
        assert!(matches!(
            peer.still_running(),
            Err(AttestError::ProcessGone { .. })
        ));
        child.wait().unwrap();
    }

    #[test]
    fn refuses_ids_other_than_those_the_peer_connected_with() {
        let mut caller = me();
        caller.uid = caller.uid.wrapping_add(1);
        assert!(matches!(
            PinnedPeer::capture(caller),
            Err(AttestError::ProcessChanged { .. })
        ));
        caller = me();
        caller.pid = 0;
        assert!(matches!(
            PinnedPeer::capture(caller),
            Err(AttestError::UnknownPid)
        ));
    }
}
