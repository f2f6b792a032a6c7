//! A level-triggered readiness descriptor for event loops (epoll, poll,
//! asyncio's `add_reader`): an eventfd that is readable exactly while its
//! owner says so. The owner tracks the state and calls [`Readiness::raise`]
//! and [`Readiness::lower`] on its transitions only, under its own lock.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd that is readable while raised.
#[derive(Debug)]
pub struct Readiness {
    fd: OwnedFd,
}

impl Readiness {
    /// A new descriptor, raised if `raised` (close-on-exec, non-blocking).
    pub fn new(raised: bool) -> io::Result<Readiness> {
        // SAFETY: eventfd takes no pointers; a valid descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let r = Readiness {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        };
        if raised {
            r.raise();
        }
        Ok(r)
    }

    /// The descriptor, valid as long as this value lives.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the descriptor readable (called once per transition).
    pub fn raise(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an owned eventfd. It can
        // fail only if the counter would overflow, which one write per
        // transition never reaches.
        unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the descriptor unreadable: reads the counter back to zero.
    pub fn lower(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from an owned, non-blocking
        // eventfd (EAGAIN if it was not raised: nothing to undo).
        unsafe { libc::read(self.raw(), (&mut n as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(r: &Readiness) -> bool {
        let mut p = libc::pollfd {
            fd: r.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }

    #[test]
    fn readable_exactly_while_raised() {
        let r = Readiness::new(false).unwrap();
        assert!(!readable(&r));
        r.raise();
        assert!(readable(&r));
        assert!(
            readable(&r),
            "level-triggered: still readable when polled again"
        );
        r.lower();
        assert!(!readable(&r));
        r.lower();
        assert!(!readable(&r), "lowering twice is harmless");
        assert!(readable(&Readiness::new(true).unwrap()));
    }
}
