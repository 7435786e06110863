//! Printing that survives a closed pipe.
//!
//! `println!` panics when stdout is a pipe whose reader went away
//! (`kalandra plan ... | head -1`): Rust ignores SIGPIPE, so the write
//! fails with EPIPE and the macro turns that into a panic and exit 101.
//! git dies of SIGPIPE there, quietly; so does this, with the shell's
//! code for it (128 + 13). SIGPIPE itself stays ignored: the sockets of a
//! sync must fail with an error, not kill the process.
//!
//! `eprintln!` panics the same way when stderr is closed; [`err!`] drops
//! what cannot be written instead, as nothing is left to tell.

use std::io::Write;

/// What a shell reports for a process that SIGPIPE ended.
pub const CLOSED_PIPE: i32 = 128 + 13;

/// Writes a line to stdout; a closed reader ends the process quietly.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_PIPE);
        }
        err_line(format_args!(
            "kalandra: error: cannot write to stdout: {error}"
        ));
        std::process::exit(1);
    }
}

/// Writes to stdout without a line end (a table that ends in its own).
pub fn text(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_PIPE);
        }
        std::process::exit(1);
    }
}

/// Writes a line to stderr, if it can.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `println!` that exits quietly on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => { $crate::output::err_line(format_args!($($arg)*)) };
}
