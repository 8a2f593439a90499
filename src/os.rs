//! The operating-system calls that std has no safe form of, each behind a
//! safe function. (The signal handler's calls live in `crate::signals`, the
//! `membarrier` in `crate::sync`, `pthread_atfork` in `crate::fork`, the
//! store's `gethostname` and `getrlimit` in `crate::sink::local`.)

/// This process's real user id.
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid(2) has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Whether a process with this pid exists on this machine.
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The machine's physical memory in bytes, where the OS says.
#[cfg(unix)]
pub(crate) fn physical_memory() -> Option<usize> {
    // SAFETY: sysconf only reads system information; it has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (pages, page) = (usize::try_from(pages).ok()?, usize::try_from(page).ok()?);
    pages.checked_mul(page).filter(|&m| m > 0)
}

/// The machine's physical memory in bytes, where the OS says.
#[cfg(not(unix))]
pub(crate) fn physical_memory() -> Option<usize> {
    None
}
