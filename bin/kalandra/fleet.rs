//! `kalandra sync --config FILE`: every mirror of a config file, with a
//! progress display while they run and a summary at the end.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kalandra::config::{self, Mirror};
use kalandra::fleet::{self, Failure, MirrorRun, Observer, RunOptions, Shard};
use kalandra::progress::{human_bytes, Progress};
use kalandra::terminal::escape;
use kalandra::transport::TransportSettings;

use crate::exit;

/// What `sync --config` and `plan --config` were asked to do.
pub struct FleetArgs<'a> {
    pub config: &'a Path,
    pub jobs: usize,
    pub per_host: usize,
    pub only: &'a [String],
    pub shard: Option<Shard>,
    pub dry_run: bool,
    pub no_verify: bool,
    pub json: bool,
    pub quiet: bool,
    /// `plan --exit-code`.
    pub exit_code: bool,
    pub transport: TransportSettings,
}

/// Runs the fleet and prints its summary; returns the exit code.
pub fn run(args: &FleetArgs) -> u8 {
    let fleet = match config::load(args.config) {
        Ok(fleet) => fleet,
        Err(errors) => {
            crate::config_cmd::print_errors(&errors);
            err!("kalandra: error: invalid config; nothing was synced");
            if args.json {
                print_config_errors(&errors, args);
            }
            return exit::USAGE;
        }
    };
    let jobs = args.jobs;
    let Some(runtime) = crate::runtime(Some(jobs)) else {
        return exit::OTHER;
    };
    let app_tokens: Arc<kalandra::forge::AppTokens> = Default::default();
    let mut fleet = fleet;
    if let Err(error) = runtime.block_on(kalandra::forge::discovery::discover(
        &mut fleet,
        &app_tokens,
        args.transport.connect_timeout,
    )) {
        let kind = kalandra::error_kind::classify_discovery(&error).kind;
        let message = format!("{:#}", anyhow::Error::new(error));
        if args.json {
            let value = serde_json::json!({
                "schema_version": 1,
                "ok": false,
                "dry_run": args.dry_run,
                "config": args.config.display().to_string(),
                "kind": kind,
                "error": message,
                "mirrors": [],
            });
            out!("{value}");
        }
        err!("kalandra: error: {}", escape(&message));
        err!(
            "kalandra: error: discovery failed ({}); nothing was synced",
            kind.as_str()
        );
        return exit::OTHER;
    }
    let selected: Vec<Mirror> = match fleet::select(&fleet.mirrors, args.only, args.shard) {
        Ok(selected) => selected.into_iter().cloned().collect(),
        Err(error) => {
            err!("kalandra: error: {}: {error}", args.config.display());
            return exit::USAGE;
        }
    };
    let started = Instant::now();
    let total = selected.len();
    let display = Arc::new(Display::new(total, args));
    let options = RunOptions {
        jobs,
        per_host: args.per_host,
        dry_run: args.dry_run,
        no_verify: args.no_verify,
        transport: args.transport.clone(),
        app_tokens,
    };
    let runs = runtime.block_on(async {
        let ticker = tokio::spawn(Arc::clone(&display).tick());
        // A signal drops every sync in flight, and with them their
        // connections: a push cut off before its pack was complete
        // changes nothing downstream.
        let runs = tokio::select! {
            runs = fleet::run(selected, options, Arc::clone(&display) as Arc<dyn Observer>) => Ok(runs),
            signal = crate::interrupted() => Err(signal),
        };
        ticker.abort();
        runs
    });
    display.clear();
    let elapsed = started.elapsed();
    let runs = match runs {
        Ok(runs) => runs,
        Err(interrupted) => {
            if args.json {
                let value = serde_json::json!({
                    "schema_version": 1,
                    "ok": false,
                    "dry_run": args.dry_run,
                    "config": args.config.display().to_string(),
                    "kind": kalandra::error_kind::ErrorKind::Interrupted,
                    "error": interrupted.to_string(),
                    "elapsed_ms": elapsed.as_millis() as u64,
                    "mirrors": [],
                });
                out!("{value}");
            }
            err!("kalandra: error: {interrupted}");
            return interrupted.code();
        }
    };
    if args.json {
        print_json(&runs, args, elapsed);
    } else if args.quiet {
        print_failures(&runs);
    } else {
        print_table(&runs, args.dry_run, elapsed);
    }
    if !runs.iter().all(|run| run.ok) {
        exit::SOME_FAILED
    } else if args.dry_run && args.exit_code && runs.iter().any(|run| run.refs_changed() > 0) {
        exit::CHANGES_PENDING
    } else {
        exit::OK
    }
}

/// `--json` with an invalid config: still one document, `kind: config`,
/// with every problem found.
fn print_config_errors(errors: &config::Errors, args: &FleetArgs) {
    let value = serde_json::json!({
        "schema_version": 1,
        "ok": false,
        "dry_run": args.dry_run,
        "config": args.config.display().to_string(),
        "kind": kalandra::error_kind::ErrorKind::Config,
        "error": "invalid config; nothing was synced",
        "config_errors": errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "mirrors": [],
    });
    out!("{value}");
}

fn print_json(runs: &[MirrorRun], args: &FleetArgs, elapsed: Duration) {
    let failed = runs.iter().filter(|run| !run.ok).count();
    let value = serde_json::json!({
        "schema_version": 1,
        "ok": failed == 0,
        "dry_run": args.dry_run,
        "config": args.config.display().to_string(),
        "shard": args.shard.map(|s| s.to_string()),
        "elapsed_ms": elapsed.as_millis() as u64,
        "summary": {
            "mirrors": runs.len(),
            "succeeded": runs.len() - failed,
            "failed": failed,
            "refs_changed": runs.iter().map(MirrorRun::refs_changed).sum::<usize>(),
            "bytes_relayed": runs.iter().map(MirrorRun::bytes_relayed).sum::<u64>(),
        },
        "mirrors": runs,
    });
    out!("{value}");
}

fn print_table(runs: &[MirrorRun], dry_run: bool, elapsed: Duration) {
    let rows: Vec<[String; 5]> = runs
        .iter()
        .map(|run| {
            let mut result = match (&run.error_kind, dry_run) {
                (Some(kind), _) => format!("failed ({})", kind.as_str()),
                (None, true) => "planned".to_owned(),
                (None, false) if run.created => "created".to_owned(),
                (None, false) => "ok".to_owned(),
            };
            if let Some(head) = &run.default_branch_set {
                let branch = head.strip_prefix("refs/heads/").unwrap_or(head);
                result.push_str(&format!(", HEAD -> {}", escape(branch)));
            }
            if run.attempts > 1 {
                result.push_str(&format!(", {} tries", run.attempts));
            }
            let reported = run.report.is_some();
            [
                escape(&run.name).into_owned(),
                result,
                if reported {
                    run.refs_changed().to_string()
                } else {
                    "-".to_owned()
                },
                if reported {
                    human_bytes(run.bytes_relayed())
                } else {
                    "-".to_owned()
                },
                format!("{:.1} s", run.elapsed_ms as f64 / 1000.0),
            ]
        })
        .collect();
    let header = ["MIRROR", "RESULT", "REFS", "BYTES", "TIME"];
    let widths: Vec<usize> = (0..header.len())
        .map(|col| {
            rows.iter()
                .map(|row| row[col].chars().count())
                .chain([header[col].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (col, cell) in cells.iter().enumerate() {
            if col + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[col]));
            }
        }
        out
    };
    out!("{}", line(header));
    for row in &rows {
        out!("{}", line(row.each_ref().map(String::as_str)));
    }
    let failed: Vec<&MirrorRun> = runs.iter().filter(|run| !run.ok).collect();
    let refs: usize = runs.iter().map(MirrorRun::refs_changed).sum();
    let bytes: u64 = runs.iter().map(MirrorRun::bytes_relayed).sum();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    out!(
        "{} of {} mirror{} {}, {} failed; {refs} ref{} {}, {} relayed in {:.1} s",
        runs.len() - failed.len(),
        runs.len(),
        plural(runs.len()),
        if dry_run { "planned" } else { "in sync" },
        failed.len(),
        plural(refs),
        if dry_run { "to change" } else { "changed" },
        human_bytes(bytes),
        elapsed.as_secs_f64()
    );
    print_failures(runs);
}

/// A line on stderr per mirror that failed; `-q` prints only these.
fn print_failures(runs: &[MirrorRun]) {
    for run in runs.iter().filter(|run| !run.ok) {
        err!(
            "kalandra: {} failed ({}): {}",
            escape(&run.name),
            run.error_kind.map_or("other", |kind| kind.as_str()),
            run.error.as_deref().map(escape).unwrap_or_default()
        );
    }
}

/// How often the plain log line repeats when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(30);
/// How often the terminal display redraws.
const DRAW_EVERY: Duration = Duration::from_millis(200);

/// Progress for people: a line per running mirror and an overall bar on a
/// terminal; a line per finished mirror and a periodic total otherwise.
struct Display {
    mode: Mode,
    total: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    /// Bytes of finished mirrors.
    bytes_done: AtomicU64,
    running: Mutex<Vec<Running>>,
}

enum Mode {
    Quiet,
    Plain,
    Terminal {
        multi: MultiProgress,
        overall: ProgressBar,
    },
}

struct Running {
    name: String,
    progress: Arc<Progress>,
    bar: Option<ProgressBar>,
}

impl Display {
    fn new(total: usize, args: &FleetArgs) -> Self {
        let mode = if args.quiet {
            Mode::Quiet
        } else if !args.json && std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} mirrors  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            // Log lines (a retry's warning) print while the display is hidden.
            kalandra::progress::hide_for_logs(Some(&multi));
            Mode::Terminal { multi, overall }
        } else {
            Mode::Plain
        };
        Self {
            mode,
            total,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            bytes_done: AtomicU64::new(0),
            running: Mutex::new(Vec::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running
            .lock()
            .expect("because no display code panics while holding the lock")
    }

    fn bytes(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
            + self
                .running()
                .iter()
                .map(|r| r.progress.bytes())
                .sum::<u64>()
    }

    fn totals(&self) -> String {
        let running = self.running().len();
        format!(
            "{}/{} done ({} failed), {running} running, {} relayed",
            self.done.load(Ordering::Relaxed),
            self.total,
            self.failed.load(Ordering::Relaxed),
            human_bytes(self.bytes()),
        )
    }

    async fn tick(self: Arc<Self>) {
        let every = match self.mode {
            Mode::Quiet => return,
            Mode::Plain => PLAIN_EVERY,
            Mode::Terminal { .. } => DRAW_EVERY,
        };
        let mut interval = tokio::time::interval(every);
        interval.tick().await;
        loop {
            interval.tick().await;
            match &self.mode {
                Mode::Quiet => return,
                Mode::Plain => err!("kalandra: {}", self.totals()),
                Mode::Terminal { overall, .. } => {
                    for running in self.running().iter() {
                        if let Some(bar) = &running.bar {
                            bar.set_message(format!(
                                "{}  {}",
                                human_bytes(running.progress.bytes()),
                                running.progress.last_message()
                            ));
                        }
                    }
                    overall.set_message(format!(
                        "{} failed, {} relayed",
                        self.failed.load(Ordering::Relaxed),
                        human_bytes(self.bytes())
                    ));
                }
            }
        }
    }

    fn clear(&self) {
        if let Mode::Terminal { multi, overall } = &self.mode {
            kalandra::progress::hide_for_logs(None);
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

impl Observer for Display {
    fn started(&self, mirror: &Mirror, attempt: u32, progress: &Arc<Progress>) {
        let bar = match &self.mode {
            Mode::Terminal { multi, .. } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix}  {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                let mut prefix = escape(&mirror.name).into_owned();
                if attempt > 1 {
                    prefix.push_str(&format!(" (try {attempt})"));
                }
                bar.set_prefix(prefix);
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            _ => None,
        };
        self.running().push(Running {
            name: mirror.name.clone(),
            progress: Arc::clone(progress),
            bar,
        });
    }

    fn retrying(&self, mirror: &Mirror, attempt: u32, delay: Duration, failure: &Failure) {
        self.stop(&mirror.name);
        if !matches!(self.mode, Mode::Quiet) {
            let line = format!(
                "kalandra: {}: try {attempt} failed ({}), retrying in {:.1} s: {}",
                escape(&mirror.name),
                failure.kind.as_str(),
                delay.as_secs_f64(),
                escape(&failure.message)
            );
            match &self.mode {
                Mode::Terminal { multi, .. } => {
                    let _ = multi.println(line);
                }
                _ => err!("{line}"),
            }
        }
    }

    fn finished(&self, run: &MirrorRun) {
        self.stop(&run.name);
        self.done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done
            .fetch_add(run.bytes_relayed(), Ordering::Relaxed);
        if !run.ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let line = format!(
            "kalandra: [{}/{}] {} {}{}",
            self.done.load(Ordering::Relaxed),
            self.total,
            escape(&run.name),
            match run.error_kind {
                Some(kind) => format!("failed ({})", kind.as_str()),
                None => format!(
                    "ok: {} ref(s), {}",
                    run.refs_changed(),
                    human_bytes(run.bytes_relayed())
                ),
            },
            format_args!(" in {:.1} s", run.elapsed_ms as f64 / 1000.0),
        );
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => err!("{line}"),
            Mode::Terminal { overall, .. } => overall.inc(1),
        }
    }
}

impl Display {
    fn stop(&self, name: &str) {
        let mut running = self.running();
        if let Some(at) = running.iter().position(|r| r.name == name) {
            let gone = running.swap_remove(at);
            if let (Some(bar), Mode::Terminal { multi, .. }) = (gone.bar, &self.mode) {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
        }
    }
}
