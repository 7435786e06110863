//! `git-remote-kalandra`: the git remote helper for `kalandra::UP=>DOWN` URLs.
//!
//! Not implemented yet: it says so and fails, so git reports a clear error
//! instead of hanging on a helper that does not answer.

use std::process::ExitCode;

fn main() -> ExitCode {
    let url = std::env::args().nth(2).unwrap_or_default();
    eprintln!(
        "git-remote-kalandra: not yet implemented (asked for {:?}); use `kalandra sync UP DOWN` for now",
        url.split_once("=>").map(|_| "kalandra::UP=>DOWN").unwrap_or("a kalandra:: URL")
    );
    ExitCode::from(128)
}
