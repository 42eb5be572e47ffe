//! The caller's side of [`Input::Terminal`](crate::Input::Terminal): a pseudo-terminal for
//! the step, the caller's terminal in raw mode while the step runs, and the bytes forwarded
//! both ways (the step's output as [`Stream::Stdout`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags};
use nix::sys::termios::{self, SetArg, Termios};

use crate::Stream;

/// A new pseudo-terminal: `master` stays with the caller, `slave` goes to the step. Both
/// are close-on-exec; the master is non-blocking. The slave starts with the caller's window
/// size when its standard input is a terminal.
pub(crate) fn open() -> io::Result<(OwnedFd, OwnedFd)> {
    let size = crate::sys::window_size(io::stdin().as_fd()).ok();
    let pty = nix::pty::openpty(size.as_ref(), None)?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    let flags = OFlag::from_bits_truncate(fcntl(&pty.master, FcntlArg::F_GETFL)?);
    fcntl(&pty.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok((pty.master, pty.slave))
}

/// The caller's terminal in raw mode (no echo, no line editing, no signals from keys: all
/// of that is the step's terminal's job); its settings are restored when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// `None` when standard input is not a terminal (or cannot be changed).
    fn enter() -> Option<RawMode> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Forwards the caller's standard input to the master and the master's output to a sink.
pub(crate) struct Forward {
    master: OwnedFd,
    stdin: io::Stdin,
    /// False once the slave is closed everywhere (reads give `EIO`).
    master_open: bool,
    stdin_open: bool,
    /// Input read but not yet taken by the master.
    pending: Vec<u8>,
    /// The window size last given to the master.
    size: Option<(u16, u16, u16, u16)>,
    raw: Option<RawMode>,
}

/// The end-of-file character of a terminal in canonical mode (`VEOF`, Control-D).
const EOF_CHAR: u8 = 0x04;

impl Forward {
    /// Starts forwarding; puts the caller's terminal, if it is one, in raw mode.
    pub(crate) fn new(master: OwnedFd) -> Forward {
        let mut f = Forward {
            master,
            stdin: io::stdin(),
            master_open: true,
            stdin_open: true,
            pending: Vec::new(),
            size: None,
            raw: RawMode::enter(),
        };
        f.follow_window_size();
        f
    }

    /// What to wait for: the master (readable, and writable while input is pending), then
    /// standard input (when nothing is pending).
    fn interest(&self) -> (Option<PollFlags>, bool) {
        let master = self.master_open.then(|| {
            if self.pending.is_empty() {
                PollFlags::POLLIN
            } else {
                PollFlags::POLLIN | PollFlags::POLLOUT
            }
        });
        (master, self.stdin_open && self.pending.is_empty())
    }

    /// The descriptors to poll, in the order [`Forward::after_poll`] expects their events.
    pub(crate) fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let (master, stdin) = self.interest();
        let mut fds = Vec::new();
        if let Some(events) = master {
            fds.push(PollFd::new(self.master.as_fd(), events));
        }
        if stdin {
            fds.push(PollFd::new(self.stdin.as_fd(), PollFlags::POLLIN));
        }
        fds
    }

    /// Moves bytes as the events of [`Forward::poll_fds`] (in its order) allow.
    pub(crate) fn after_poll(&mut self, events: &[PollFlags], sink: &mut dyn FnMut(Stream, &[u8])) {
        let (master, stdin) = self.interest();
        let mut events = events.iter().copied();
        let master_events = master
            .and_then(|_| events.next())
            .unwrap_or(PollFlags::empty());
        let stdin_events = if stdin { events.next() } else { None }.unwrap_or(PollFlags::empty());
        if !master_events.is_empty() {
            self.read_master(sink);
            self.write_pending();
        }
        if !stdin_events.is_empty() {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(self.stdin.as_fd(), &mut buf) {
                Ok(0) => {
                    self.stdin_open = false;
                    // Input from a pipe or file has ended: tell the step's terminal so.
                    if self.raw.is_none() {
                        self.pending.push(EOF_CHAR);
                    }
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => self.stdin_open = false,
            }
            self.write_pending();
        }
        self.follow_window_size();
    }

    /// Reads what the master holds now (after the step has ended too).
    pub(crate) fn drain(&mut self, sink: &mut dyn FnMut(Stream, &[u8])) {
        self.read_master(sink);
    }

    fn read_master(&mut self, sink: &mut dyn FnMut(Stream, &[u8])) {
        let mut buf = [0u8; 16 * 1024];
        while self.master_open {
            match nix::unistd::read(&self.master, &mut buf) {
                Ok(0) => self.master_open = false,
                Ok(n) => sink(Stream::Stdout, &buf[..n]),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                // EIO: every descriptor of the slave is closed.
                Err(_) => self.master_open = false,
            }
        }
    }

    fn write_pending(&mut self) {
        while self.master_open && !self.pending.is_empty() {
            match nix::unistd::write(&self.master, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    self.pending.clear();
                    self.master_open = false;
                }
            }
        }
    }

    /// Gives the master the caller's window size when it changed (polled: no signal
    /// handler in the caller's process).
    fn follow_window_size(&mut self) {
        if self.raw.is_none() {
            return;
        }
        let Ok(size) = crate::sys::window_size(self.stdin.as_fd()) else {
            return;
        };
        let now = (size.ws_row, size.ws_col, size.ws_xpixel, size.ws_ypixel);
        if self.size != Some(now) {
            self.size = Some(now);
            let _ = crate::sys::set_window_size(self.master.as_fd(), &size);
        }
    }

    /// Whether the caller's terminal is forwarded (its window size followed on a timer).
    pub(crate) fn is_terminal(&self) -> bool {
        self.raw.is_some()
    }
}
