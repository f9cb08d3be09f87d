//! File descriptors: the open-file limit and the kernel's descriptor table.
//!
//! Every connection is one descriptor. Two things about them matter to an edge relay and
//! are settled once at start-up, before the runtime starts its threads:
//!
//! - **The limit.** The soft `RLIMIT_NOFILE` is raised to the hard limit (as Go and
//!   nginx do); [`prepare`] reports how many descriptors that gives, so `main` can warn
//!   when `--max-connections` asks for more than the process may open.
//! - **The table.** Linux grows a process's descriptor table by doubling (64, 128, ...,
//!   16384). When the table is shared by several threads, each growth waits for an RCU
//!   grace period (`expand_fdtable` calls `synchronize_rcu`): 10 to 25 ms here, during
//!   which the thread that called `accept` is stalled, and on a one-core relay so is
//!   every connection. A burst of 10,000 reconnects crosses six doublings. [`prepare`]
//!   grows the table once, while the process still has one thread and the growth is
//!   free: it duplicates a descriptor to the highest number wanted and closes it again
//!   (the table never shrinks).

/// What [`prepare`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// Descriptors the process may open (the soft limit, after raising it).
    pub limit: u64,
    /// Descriptor table size reserved up front (0: not done).
    pub table: usize,
}

/// Raises the soft open-file limit to the hard limit and grows the descriptor table to
/// hold `want` descriptors (capped at the limit). Call it before starting any thread.
pub fn prepare(want: usize) -> Prepared {
    let limit = raise_limit();
    let n = want.min(usize::try_from(limit).unwrap_or(usize::MAX));
    Prepared {
        limit,
        table: reserve_table(n),
    }
}

#[cfg(unix)]
fn raise_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur as u64
    }
}

#[cfg(not(unix))]
fn raise_limit() -> u64 {
    u64::MAX
}

/// Grows the descriptor table to hold descriptor number `n - 1`; returns `n`, or 0 when
/// it was not done (nothing to gain below 256, or no descriptor to duplicate).
#[cfg(target_os = "linux")]
fn reserve_table(n: usize) -> usize {
    use std::os::fd::AsRawFd;
    if n <= 256 {
        return 0;
    }
    let Ok(top) = libc::c_int::try_from(n - 1) else {
        return 0;
    };
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return 0;
    };
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; the duplicate is closed at once.
    unsafe {
        let fd = libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top);
        if fd < 0 {
            return 0;
        }
        libc::close(fd);
    }
    n
}

#[cfg(not(target_os = "linux"))]
fn reserve_table(_n: usize) -> usize {
    0
}

/// The size of this process's descriptor table (`FDSize` in /proc/self/status).
#[cfg(target_os = "linux")]
pub fn table_size() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_grown_once_to_what_is_asked_within_the_limit() {
        let before = table_size().expect("FDSize in /proc/self/status");
        let p = prepare(3000);
        assert!(p.limit >= 1024, "limit {}", p.limit);
        let want = 3000.min(p.limit as usize);
        assert_eq!(p.table, want);
        let after = table_size().expect("FDSize");
        assert!(after >= want, "table {after} < {want} (was {before})");
        // The descriptor used to grow it is gone again: a fresh one is a low number.
        let f = std::fs::File::open("/dev/null").expect("open");
        assert!(std::os::fd::AsRawFd::as_raw_fd(&f) < 1000);
    }

    #[test]
    fn small_tables_and_huge_requests_are_handled() {
        assert_eq!(prepare(10).table, 0);
        // More than the limit allows: capped at the limit, never past it.
        let p = prepare(usize::MAX);
        assert!(p.table as u64 <= p.limit);
    }
}
