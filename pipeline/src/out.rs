//! The command's standard output, and a reader that went away.
//!
//! `vigil sql "…" | head -1` closes the pipe after one line; the next write fails with
//! `BrokenPipe` (Rust ignores `SIGPIPE`, so the error comes back instead of the signal). That is
//! not a failure of the command: the person asked for less. Every write to stdout goes through
//! [`stdout`] (or the [`outln!`] and [`out!`] macros), which notes a broken pipe;
//! [`is_broken_pipe`] tells `main` to exit quietly with success instead of printing an error.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed because its reader closed the pipe.
static BROKEN: AtomicBool = AtomicBool::new(false);

/// Stdout, locked, noting a broken pipe.
pub(crate) struct Out(std::io::StdoutLock<'static>);

/// The command's stdout.
pub(crate) fn stdout() -> Out {
    Out(std::io::stdout().lock())
}

fn note<T>(r: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(e) = &r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            BROKEN.store(true, Ordering::Relaxed);
        }
    }
    r
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        note(self.0.write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        note(self.0.write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        note(self.0.flush())
    }
}

/// Whether `e` comes from stdout's reader going away (directly, or a write that failed and was
/// reported in other words by a library).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    BROKEN.load(Ordering::Relaxed)
        || e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// `println!` to [`stdout`], returning the error instead of panicking.
macro_rules! outln {
    () => {
        std::io::Write::write_all(&mut $crate::out::stdout(), b"\n")
    };
    ($($arg:tt)*) => {{
        let mut o = $crate::out::stdout();
        std::io::Write::write_fmt(&mut o, format_args!($($arg)*)).and_then(|()| std::io::Write::write_all(&mut o, b"\n"))
    }};
}

/// `print!` to [`stdout`], returning the error instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut $crate::out::stdout(), format_args!($($arg)*))
    };
}

pub(crate) use out;
pub(crate) use outln;
