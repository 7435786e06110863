//! Progress for people: the servers' side-band 2 messages, the pack's size
//! and a byte counter, shown three ways.
//!
//! - On a terminal, an [`indicatif`] bar on stderr: elapsed time, bytes
//!   relayed, rate, objects received out of the pack header's total with an
//!   ETA (the relay counts them with [`crate::wire::pack_count`]) and the
//!   current phase (a server's in-place progress such as `Compressing
//!   objects:  45% (9/20)` or `Resolving deltas`, or Kalandra's own). A
//!   server's finished line is printed above the bar, whole, with a
//!   `upstream:`/`downstream:` prefix, the way git prints `remote:` lines.
//!   Log lines go through [`LogWriter`], which hides the bar while they are
//!   written, so nothing tears it.
//! - Elsewhere (a pipe, a file, a CI log), one plain line every
//!   [`PLAIN_EVERY`] (or `KALANDRA_PROGRESS_INTERVAL` seconds) while the
//!   sync runs, with no escape sequences, so a job that kills silent builds
//!   hears that a long transfer is alive and a short one prints nothing.
//! - Hidden: only logs (fleet and watch runs draw their own display).
//!
//! Counting objects means inflating each one on the way through, so it is
//! done only for the terminal bar; the plain line gives the pack header's
//! total and the bytes so far. The ETA is by objects (no server says how many
//! bytes a pack will have), so a pack whose last objects are its biggest
//! finishes later than it said.

use std::io::Write;
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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

    fn index(self) -> usize {
        match self {
            Self::Upstream => 0,
            Self::Downstream => 1,
        }
    }
}

/// How often the plain progress line repeats when stderr is not a terminal.
/// CI services end jobs that print nothing for several minutes (ten on
/// GitLab and Travis); a line every few seconds stays far inside that
/// without flooding the log.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// `--color`: whether Kalandra's own output may use colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Color {
    /// Colour on a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether to colour a stream; `no_color` is the value of `NO_COLOR`.
    /// Following no-color.org, a set and non-empty `NO_COLOR` turns colour
    /// off in `auto`; an explicit `--color=always` still wins over it.
    pub fn enabled(self, is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    /// [`Self::enabled`] for this process's stderr.
    pub fn for_stderr(self) -> bool {
        use std::io::IsTerminal;
        self.enabled(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }
}

/// How a [`Progress`] shows itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// A bar on stderr, which must be a terminal.
    Terminal { color: bool },
    /// A plain line on stderr every `every` while running.
    Plain { every: Duration },
    /// Logs only.
    Hidden,
}

impl Display {
    /// The plain display at [`PLAIN_EVERY`], or at
    /// `KALANDRA_PROGRESS_INTERVAL` seconds when that is set (`0` turns the
    /// line off).
    pub fn plain_from_env() -> Self {
        match std::env::var("KALANDRA_PROGRESS_INTERVAL") {
            Ok(value) => match value.trim().parse::<f64>() {
                Ok(0.0) => Self::Hidden,
                Ok(secs) if secs.is_finite() && secs > 0.0 => Self::Plain {
                    every: Duration::from_secs_f64(secs),
                },
                _ => {
                    tracing::warn!(
                        "ignoring KALANDRA_PROGRESS_INTERVAL={value:?}: not a number of seconds"
                    );
                    Self::Plain { every: PLAIN_EVERY }
                }
            },
            Err(_) => Self::Plain { every: PLAIN_EVERY },
        }
    }
}

/// Shared by the relay's two halves; cheap to call from both.
pub struct Progress {
    inner: Arc<Inner>,
    /// Stops the plain display's ticker thread when dropped.
    _stop: Option<mpsc::Sender<()>>,
}

struct Inner {
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    bytes: u64,
    objects: Option<u32>,
    /// Objects of the pack that have streamed past whole, when counted.
    received: Option<u32>,
    pack_started: Option<Instant>,
    phase: String,
    last_message: String,
    lines: [LineAssembler; 2],
    finished: bool,
    /// The side whose finished lines are echoed as git's `remote:` lines.
    echo: Option<Side>,
}

impl Progress {
    /// `draw` shows a bar on stderr, with colour unless `NO_COLOR` says
    /// otherwise; callers pass whether stderr is a terminal and the user did
    /// not ask for quiet.
    pub fn new(draw: bool) -> Self {
        if draw {
            Self::with_display(Display::Terminal {
                color: Color::Auto.for_stderr(),
            })
        } else {
            Self::hidden()
        }
    }

    /// Logs only.
    pub fn hidden() -> Self {
        Self::with_display(Display::Hidden)
    }

    pub fn with_display(display: Display) -> Self {
        let bar = match display {
            Display::Terminal { color } => Some(terminal_bar(color)),
            _ => None,
        };
        let inner = Arc::new(Inner {
            bar,
            state: Mutex::new(State {
                started: Instant::now(),
                bytes: 0,
                objects: None,
                received: None,
                pack_started: None,
                phase: "connecting".to_owned(),
                last_message: String::new(),
                lines: [LineAssembler::default(), LineAssembler::default()],
                finished: false,
                echo: None,
            }),
        });
        if let Some(bar) = &inner.bar {
            set_active(Some(Drawn::Bar(bar.clone())));
        }
        let stop = match display {
            Display::Plain { every } => Some(spawn_ticker(Arc::downgrade(&inner), every)),
            _ => None,
        };
        Self { inner, _stop: stop }
    }

    /// Shows every finished line `side` says on its side-band 2 as git shows
    /// a server's: `remote: <line>` on stderr, also when progress is hidden
    /// (git hides only its own progress under `-q`; a hook's output always
    /// shows). A bar prints every server's lines above itself already, with
    /// the side's name, which tells upstream's from downstream's. The remote
    /// helper uses this for downstream, the server that `git push` believes
    /// it talks to.
    pub fn echo_remote_lines(&self, side: Side) {
        self.inner.lock().echo = Some(side);
    }

    /// A side-band 2 message from a server. Progress text uses `\r` to
    /// redraw in place, and one line may be split across packets, so the
    /// pieces are put back together before anything is shown.
    pub fn server_message(&self, side: Side, text: &[u8]) {
        let mut state = self.inner.lock();
        let pieces = state.lines[side.index()].push(text);
        for piece in pieces {
            let (text, whole) = match &piece {
                Piece::Line(text) => (text, true),
                Piece::Redraw(text) => (text, false),
            };
            let shown = format!("{}: {}", side.name(), crate::terminal::escape(text));
            if whole {
                tracing::debug!(target: "kalandra::server", "{shown}");
                if let Some(bar) = &self.inner.bar {
                    bar.println(&shown);
                } else if state.echo == Some(side) {
                    use std::io::IsTerminal;
                    let line = remote_line(text, std::io::stderr().is_terminal());
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
            state.last_message = shown.clone();
            state.phase = shown;
        }
        self.inner.show_phase(&state);
    }

    /// What Kalandra itself is doing, until a server says more.
    pub fn phase(&self, text: &str) {
        let mut state = self.inner.lock();
        text.clone_into(&mut state.phase);
        self.inner.show_phase(&state);
    }

    /// The pack has started: its header announced `objects` objects.
    pub fn pack_started(&self, objects: u32) {
        let mut state = self.inner.lock();
        state.objects = Some(objects);
        state.pack_started = Some(Instant::now());
        state.phase = "relaying the pack".to_owned();
        self.inner.show_phase(&state);
    }

    /// Whether the relay should count the pack's objects as they stream
    /// ([`crate::wire::pack_count`]): only for a person at a terminal, since
    /// it costs CPU.
    pub fn counts_objects(&self) -> bool {
        self.inner.bar.is_some()
    }

    /// `n` of the pack's objects have streamed past whole.
    pub fn objects_received(&self, n: u32) {
        let mut state = self.inner.lock();
        if state.received != Some(n) {
            state.received = Some(n);
            self.inner.show_phase(&state);
        }
    }

    /// The whole pack is with downstream, which now checks it.
    pub fn pack_sent(&self) {
        let mut state = self.inner.lock();
        state.phase = "waiting for downstream to check the pack".to_owned();
        self.inner.show_phase(&state);
    }

    /// Counts pack bytes relayed to downstream.
    pub fn add_bytes(&self, n: usize) {
        let mut state = self.inner.lock();
        state.bytes += n as u64;
        if let Some(bar) = &self.inner.bar {
            bar.set_position(state.bytes);
        }
    }

    /// The pack bytes relayed so far.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// The last progress message a server sent, escaped for a terminal.
    pub fn last_message(&self) -> String {
        self.inner.lock().last_message.clone()
    }

    /// Ends the display. On a terminal the bar is cleared and, if a pack
    /// was relayed, one line with its totals stays.
    pub fn finish(&self) {
        let mut state = self.inner.lock();
        if state.finished {
            return;
        }
        state.finished = true;
        // A redraw piece still waiting for its end is the server's last word.
        for side in [Side::Upstream, Side::Downstream] {
            if let Some(text) = state.lines[side.index()].take_partial() {
                tracing::debug!(target: "kalandra::server", "{}: {}", side.name(), crate::terminal::escape(&text));
            }
        }
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
            set_active(None);
            if let Some(objects) = state.objects {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}", summary_line(&state, objects));
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.inner.bar {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
            set_active(None);
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("because the lock is never poisoned")
    }

    fn show_phase(&self, state: &State) {
        if let Some(bar) = &self.bar {
            let (_, columns) = console::Term::stderr().size();
            let room = usize::from(columns).saturating_sub(BAR_FIXED_WIDTH).max(20);
            let elapsed = state.pack_started.map(|t| t.elapsed());
            let message = bar_message(state.objects, state.received, elapsed, &state.phase);
            bar.set_message(fit(&message, room));
        }
    }
}

/// A server's finished line as git's sideband.c shows it: `remote: `, the
/// text, and a clear-to-end-of-line suffix after a non-empty one (eight
/// spaces where stderr is no terminal, as git's `DUMB_SUFFIX`). The text is
/// escaped ([`crate::terminal::escape`]): a server's bytes never drive the
/// terminal.
fn remote_line(text: &str, terminal: bool) -> String {
    let suffix = if text.is_empty() {
        ""
    } else if terminal {
        "\x1b[K"
    } else {
        "        "
    };
    format!("remote: {}{suffix}\n", crate::terminal::escape(text))
}

/// The columns the bar takes before its message: spinner, elapsed time,
/// bytes and rate, with their spaces.
const BAR_FIXED_WIDTH: usize = 1 + 1 + 4 + 1 + 10 + 1 + 12 + 2 + 1;

fn terminal_bar(color: bool) -> ProgressBar {
    // indicatif styles through `console`, which decides on its own from
    // NO_COLOR and CLICOLOR; `--color` has the last word.
    console::set_colors_enabled_stderr(color);
    let template = if color {
        "{spinner:.cyan} {elapsed:>4} {binary_bytes:>10} {binary_bytes_per_sec:>12.dim}  {msg}"
    } else {
        "{spinner} {elapsed:>4} {binary_bytes:>10} {binary_bytes_per_sec:>12}  {msg}"
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("because the template is valid"));
    bar.set_message("connecting");
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `text` cut to `width` characters between two words, with `...` where
/// it was cut, so a narrow terminal never shows half a word.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let budget = width.saturating_sub(3);
    let head: String = text.chars().take(budget + 1).collect();
    let cut = match head.rfind(' ') {
        Some(at) if at > 0 => head[..at].trim_end(),
        _ => "",
    };
    format!("{cut}...")
}

/// The bar's message: the objects so far with an ETA when they are
/// counted, else the pack's size, then the phase.
fn bar_message(
    objects: Option<u32>,
    received: Option<u32>,
    since_pack: Option<Duration>,
    phase: &str,
) -> String {
    match (objects, received) {
        (Some(total), Some(done)) if done < total => {
            let eta = match since_pack {
                Some(elapsed) if done > 0 => {
                    let left = elapsed.as_secs_f64() * f64::from(total - done) / f64::from(done);
                    format!(", ETA {}", short_duration(Duration::from_secs_f64(left)))
                }
                _ => String::new(),
            };
            format!("{done}/{total} objects{eta} | {phase}")
        }
        (Some(total), Some(_)) => format!("{total}/{total} objects | {phase}"),
        (Some(n), None) => format!("pack of {n} objects | {phase}"),
        (None, _) => phase.to_owned(),
    }
}

/// `45s`, `2m05s`, `1h02m`.
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// The plain display's line, e.g. `kalandra: 3.2 MiB relayed (640.0 KiB/s),
/// pack of 120 objects, 5 s: upstream: Compressing objects: 45% (9/20)`.
fn plain_line(bytes: u64, objects: Option<u32>, elapsed: Duration, phase: &str) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "kalandra: {} relayed ({}/s)",
        human_bytes(bytes),
        human_bytes((bytes as f64 / secs) as u64)
    );
    if let Some(n) = objects {
        line.push_str(&format!(", pack of {n} objects"));
    }
    line.push_str(&format!(", {} s: {phase}", elapsed.as_secs()));
    line
}

fn summary_line(state: &State, objects: u32) -> String {
    let elapsed = state.started.elapsed();
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "Relayed {objects} objects, {} in {:.1} s ({}/s)",
        human_bytes(state.bytes),
        elapsed.as_secs_f64(),
        human_bytes((state.bytes as f64 / secs) as u64)
    )
}

/// The plain display: a line every `every` until the [`Progress`] is
/// finished or dropped (which drops the sender and wakes the thread).
fn spawn_ticker(inner: Weak<Inner>, every: Duration) -> mpsc::Sender<()> {
    let (stop, stopped) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("kalandra-progress".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let Some(inner) = inner.upgrade() else { break };
                let state = inner.lock();
                if state.finished {
                    break;
                }
                let line = plain_line(
                    state.bytes,
                    state.objects,
                    state.started.elapsed(),
                    &state.phase,
                );
                drop(state);
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
            }
        });
    if let Err(error) = spawned {
        tracing::warn!("no periodic progress line: cannot start its thread: {error}");
    }
    stop
}

/// One piece of a server's progress text, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Ended by `\n`: a finished line, shown once.
    Line(String),
    /// Ended by `\r`: a meter that the next piece redraws.
    Redraw(String),
}

/// Puts a server's progress text back together across side-band packets:
/// a packet may end in the middle of a line, even of a word.
#[derive(Debug, Default)]
struct LineAssembler {
    partial: Vec<u8>,
    /// The last redraw, which a bare `\n` right after it (`...done.\r\n`)
    /// turns into a finished line.
    last_redraw: Option<String>,
}

impl LineAssembler {
    fn push(&mut self, text: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        for &byte in text {
            match byte {
                b'\r' | b'\n' => {
                    let piece = String::from_utf8_lossy(&self.partial).trim_end().to_owned();
                    self.partial.clear();
                    if piece.trim().is_empty() {
                        if byte == b'\n' {
                            if let Some(last) = self.last_redraw.take() {
                                out.push(Piece::Line(last));
                            }
                        }
                        continue;
                    }
                    if byte == b'\n' {
                        self.last_redraw = None;
                        out.push(Piece::Line(piece));
                    } else {
                        self.last_redraw = Some(piece.clone());
                        out.push(Piece::Redraw(piece));
                    }
                }
                _ => self.partial.push(byte),
            }
        }
        out
    }

    /// Text that never got its `\r` or `\n`.
    fn take_partial(&mut self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.partial).trim().to_owned();
        self.partial.clear();
        (!text.is_empty()).then_some(text)
    }
}

/// What is drawn on stderr that log lines must not tear.
#[derive(Clone)]
enum Drawn {
    Bar(ProgressBar),
    Multi(indicatif::MultiProgress),
}

/// One per process: a single sync or the remote helper draws a
/// [`Progress`] bar, a fleet run its own [`indicatif::MultiProgress`].
static ACTIVE: Mutex<Option<Drawn>> = Mutex::new(None);

fn set_active(drawn: Option<Drawn>) {
    if let Ok(mut active) = ACTIVE.lock() {
        *active = drawn;
    }
}

/// Makes [`LogWriter`] hide `multi` while it writes a log line (a fleet's
/// display); `None` once the display is gone.
pub fn hide_for_logs(multi: Option<&indicatif::MultiProgress>) {
    set_active(multi.cloned().map(Drawn::Multi));
}

/// Writes log output to stderr, hiding the progress bar while it does, so
/// a log line never lands in the middle of the bar. For a tracing
/// subscriber: `.with_writer(LogWriter::default)`; each event arrives in a
/// single write.
#[derive(Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let drawn = ACTIVE.lock().ok().and_then(|active| active.clone());
        let write = || {
            let mut err = std::io::stderr().lock();
            err.write_all(buf)?;
            err.flush()
        };
        match drawn {
            Some(Drawn::Bar(bar)) if !bar.is_finished() => bar.suspend(write),
            Some(Drawn::Multi(multi)) => multi.suspend(write),
            _ => write(),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
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
    fn remote_lines_read_as_gits() {
        // git 2.47.3 `git push 2>file` with a post-receive hook that echoes.
        assert_eq!(
            remote_line("hook says hi", false),
            "remote: hook says hi        \n"
        );
        assert_eq!(
            remote_line("hook says hi", true),
            "remote: hook says hi\x1b[K\n"
        );
        assert_eq!(remote_line("", false), "remote: \n");
        assert_eq!(
            remote_line("\x1b]0;title\x07", false),
            format!(
                "remote: {}        \n",
                crate::terminal::escape("\x1b]0;title\x07")
            )
        );
        assert!(!remote_line("\x1b]0;title\x07", false).contains('\x1b'));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    fn line(text: &str) -> Piece {
        Piece::Line(text.into())
    }

    fn redraw(text: &str) -> Piece {
        Piece::Redraw(text.into())
    }

    #[test]
    fn a_line_split_across_packets_mid_word_comes_out_whole() {
        let mut lines = LineAssembler::default();
        assert_eq!(lines.push(b"Enumerating obj"), []);
        assert_eq!(lines.push(b"ects: 4, do"), []);
        assert_eq!(
            lines.push(b"ne.\nCounting objects:  25% (1/4)\rCounting ob"),
            [
                line("Enumerating objects: 4, done."),
                redraw("Counting objects:  25% (1/4)")
            ]
        );
        assert_eq!(
            lines.push(b"jects: 100% (4/4), done.\n"),
            [line("Counting objects: 100% (4/4), done.")]
        );
    }

    #[test]
    fn a_meter_ended_by_cr_lf_becomes_a_line_once() {
        // receive-pack's `Resolving deltas` and hooks that print `\r\n`.
        let mut lines = LineAssembler::default();
        assert_eq!(
            lines.push(b"Resolving deltas:  50% (1/2)\rResolving deltas: 100% (2/2), done.\r\n"),
            [
                redraw("Resolving deltas:  50% (1/2)"),
                redraw("Resolving deltas: 100% (2/2), done."),
                line("Resolving deltas: 100% (2/2), done."),
            ]
        );
        assert_eq!(lines.push(b"\n\r\n"), []);
        assert_eq!(lines.push(b"tail"), []);
        assert_eq!(lines.take_partial().as_deref(), Some("tail"));
        assert_eq!(lines.take_partial(), None);
    }

    #[test]
    fn a_long_message_is_cut_between_words() {
        let text = "pack of 90 objects | downstream: Resolving deltas:  45% (9/20)";
        assert_eq!(fit(text, 100), text);
        assert_eq!(fit(text, 30), "pack of 90 objects |...");
        assert_eq!(fit(text, 33), "pack of 90 objects |...");
        assert_eq!(fit(text, 34), "pack of 90 objects |...");
        assert_eq!(fit(text, 35), "pack of 90 objects | downstream:...");
        assert_eq!(fit("unbreakable", 5), "...");
        for width in 3..text.len() {
            let shown = fit(text, width);
            assert!(shown.chars().count() <= width, "{width}: {shown}");
            let words = shown.trim_end_matches("...");
            assert!(
                words.is_empty() || text.starts_with(&format!("{words} ")),
                "{width}: {shown}"
            );
        }
    }

    #[test]
    fn the_bar_counts_objects_with_an_eta_when_it_can() {
        let phase = "relaying the pack";
        assert_eq!(bar_message(None, None, None, "connecting"), "connecting");
        assert_eq!(
            bar_message(Some(90), None, None, phase),
            "pack of 90 objects | relaying the pack"
        );
        assert_eq!(
            bar_message(Some(90), Some(0), Some(Duration::from_secs(1)), phase),
            "0/90 objects | relaying the pack"
        );
        assert_eq!(
            bar_message(Some(90), Some(30), Some(Duration::from_secs(10)), phase),
            "30/90 objects, ETA 20s | relaying the pack"
        );
        assert_eq!(
            bar_message(Some(1000), Some(1), Some(Duration::from_secs(10)), phase),
            "1/1000 objects, ETA 2h46m | relaying the pack"
        );
        assert_eq!(
            bar_message(Some(90), Some(90), Some(Duration::from_secs(10)), "done"),
            "90/90 objects | done"
        );
        assert_eq!(short_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn no_color_turns_auto_off_but_not_always() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(Color::Auto.enabled(true, None));
        assert!(!Color::Auto.enabled(false, None));
        assert!(!Color::Auto.enabled(true, set));
        assert!(
            Color::Auto.enabled(true, empty),
            "an empty NO_COLOR is unset"
        );
        assert!(Color::Always.enabled(false, set));
        assert!(!Color::Never.enabled(true, None));
    }

    #[test]
    fn the_plain_line_says_what_is_happening() {
        assert_eq!(
            plain_line(
                3 * 1024 * 1024,
                Some(120),
                Duration::from_secs(6),
                "downstream: Resolving deltas:  45% (9/20)"
            ),
            "kalandra: 3.0 MiB relayed (512.0 KiB/s), pack of 120 objects, 6 s: \
             downstream: Resolving deltas:  45% (9/20)"
        );
        assert_eq!(
            plain_line(0, None, Duration::from_secs(5), "connecting"),
            "kalandra: 0 B relayed (0 B/s), 5 s: connecting"
        );
    }
}
