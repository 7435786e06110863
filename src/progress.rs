//! Progress: the servers' side-band 2 messages and a byte counter.
//!
//! On a terminal this draws one status line on stderr; otherwise it only
//! logs, so scripts and CI get quiet output.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which server a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Upstream,
    Downstream,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Shared by the relay's two halves; cheap to call from both.
pub struct Progress {
    draw: bool,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    bytes: u64,
    last_message: String,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// `draw` shows a status line on stderr; callers pass whether stderr is
    /// a terminal and the user did not ask for quiet.
    pub fn new(draw: bool) -> Self {
        Self {
            draw,
            state: Mutex::new(State {
                started: Instant::now(),
                bytes: 0,
                last_message: String::new(),
                last_draw: None,
                drawn: false,
            }),
        }
    }

    /// Logs only.
    pub fn hidden() -> Self {
        Self::new(false)
    }

    /// A side-band 2 message from a server. Progress text uses `\r` to
    /// redraw in place, so it is split on both `\r` and `\n`.
    pub fn server_message(&self, side: Side, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let mut last = None;
        for piece in text.split(['\r', '\n']).filter(|p| !p.trim().is_empty()) {
            tracing::debug!(
                target: "kalandra::server",
                "{}: {}",
                side.name(),
                crate::terminal::escape(piece.trim_end())
            );
            last = Some(piece);
        }
        if let Some(piece) = last {
            let mut state = self.lock();
            state.last_message =
                format!("{}: {}", side.name(), crate::terminal::escape(piece.trim()));
            self.redraw(&mut state, false);
        }
    }

    /// Counts pack bytes relayed to downstream.
    pub fn add_bytes(&self, n: usize) {
        let mut state = self.lock();
        state.bytes += n as u64;
        self.redraw(&mut state, false);
    }

    /// The pack bytes relayed so far.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The last progress message a server sent, escaped for a terminal.
    pub fn last_message(&self) -> String {
        self.lock().last_message.clone()
    }

    /// Clears the status line, if one was drawn.
    pub fn finish(&self) {
        let mut state = self.lock();
        if state.drawn {
            self.redraw(&mut state, true);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            state.drawn = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("because the lock is never poisoned")
    }

    fn redraw(&self, state: &mut State, force: bool) {
        if !self.draw {
            return;
        }
        let now = Instant::now();
        if !force && state.last_draw.is_some_and(|t| now - t < REDRAW_EVERY) {
            return;
        }
        state.last_draw = Some(now);
        state.drawn = true;
        let secs = state.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "{} relayed, {}/s  {}",
            human_bytes(state.bytes),
            human_bytes((state.bytes as f64 / secs) as u64),
            state.last_message
        );
        let width = 100;
        let shown: String = line.chars().take(width).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{shown}");
        let _ = err.flush();
    }
}

/// `1.5 MiB`-style sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
