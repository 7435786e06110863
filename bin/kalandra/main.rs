//! `kalandra`: mirror git repositories without keeping a copy.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kalandra::location::Locations;
use kalandra::plan;
use kalandra::plan::{Divergence, PlanOptions, Scope, UpdateKind};
use kalandra::progress::{human_bytes, Color, Display, LogWriter, Progress};
use kalandra::relay::{self, Outcome, PushOptions, RefOutcome, RefStatus, SyncOptions, SyncReport};
use kalandra::summary::Tally;
use kalandra::terminal::escape;
use kalandra::transport::TransportSettings;
use kalandra::url::mask_credentials;
use kalandra::url_rewrite::Direction;

#[macro_use]
mod output;

mod config_cmd;
mod fleet;
#[path = "../helper_cli.rs"]
mod helper_cli;
mod watch;

/// The environment variables and exit codes, for `kalandra --help` and
/// `man kalandra`.
const ENVIRONMENT_HELP: &str = "Environment:\n  \
    KALANDRA_CONNECT_TIMEOUT, KALANDRA_IDLE_TIMEOUT, KALANDRA_LOW_SPEED_LIMIT,\n  \
    KALANDRA_LOW_SPEED_TIME   defaults of the flags of the same name\n  \
    KALANDRA_UPSTREAM_TOKEN, KALANDRA_DOWNSTREAM_TOKEN   http password for that side\n  \
    KALANDRA_HTTP_RETRIES     retries of a failed HTTP request (default 4)\n  \
    KALANDRA_MAX_REFS, KALANDRA_MAX_ADVERTISEMENT_BYTES   caps on what a server lists\n  \
    KALANDRA_SSH_STRICT_HOST_KEY_CHECKING   overrides StrictHostKeyChecking\n  \
    KALANDRA_SSH_HOME         where .ssh is, instead of the passwd entry's home\n  \
    KALANDRA_LOG              log filter (e.g. debug), finer than -v\n  \
    KALANDRA_PROGRESS_INTERVAL   seconds between progress lines off a terminal (5)\n  \
    KALANDRA_TRACE_PACKET, GIT_TRACE_PACKET   trace every pkt-line (1, or a file)\n  \
    NO_COLOR                  no colour (unless --color=always)\n  \
    GIT_SSH_COMMAND, GIT_SSH, GIT_SSL_CAINFO, GIT_SSL_NO_VERIFY, NETRC, SSH_AUTH_SOCK,\n  \
    HTTPS_PROXY, NO_PROXY     as for git\n\n\
    Exit codes: 0 ok, 1 error (plan --exit-code: changes pending), 2 usage, 3 some refs\n\
    rejected, 4 connection or protocol failure, 5 refused by a guard, 6 nothing landed,\n\
    7 outcome unknown, 8 verification failed, 9 some mirrors failed, 130/143 interrupted,\n\
    141 stdout closed.";

/// Exit codes, documented in docs/exit-codes.md.
mod exit {
    pub const OK: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const REJECTED: u8 = 3;
    pub const CONNECTION: u8 = 4;
    pub const REFUSED: u8 = 5;
    pub const NOTHING_LANDED: u8 = 6;
    pub const UNKNOWN: u8 = 7;
    pub const VERIFY: u8 = 8;
    /// `--config`: some mirrors did not end in sync.
    pub const SOME_FAILED: u8 = 9;
    /// `plan --exit-code`: downstream is not in sync.
    pub const CHANGES_PENDING: u8 = 1;
    /// SIGINT, as a shell reports a process it ended (128 + 2).
    pub const INTERRUPTED: u8 = 130;
    /// SIGTERM (128 + 15).
    pub const TERMINATED: u8 = 143;
}

/// `--divergence` values, as clap sees them.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DivergenceArg {
    Force,
    FfOnly,
    Keep,
}

impl From<DivergenceArg> for Divergence {
    fn from(arg: DivergenceArg) -> Self {
        match arg {
            DivergenceArg::Force => Divergence::Force,
            DivergenceArg::FfOnly => Divergence::FfOnly,
            DivergenceArg::Keep => Divergence::Keep,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "kalandra",
    version,
    about = "Mirror git repositories from upstream to downstream without keeping a copy",
    long_about = "Mirror git repositories from upstream to downstream without keeping a copy.\n\n\
        The pack that downstream lacks is fetched from upstream's upload-pack and streamed, as it \
        arrives, into downstream's receive-pack. Nothing is written to local disk.\n\n\
        Logs go to stderr; set KALANDRA_LOG (e.g. KALANDRA_LOG=debug) for finer control than -v.",
    after_long_help = ENVIRONMENT_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make DOWN's branches and tags match UP's, relaying the objects.
    #[command(override_usage = "kalandra sync [OPTIONS] UP DOWN\n       \
                                kalandra sync [OPTIONS] --config FILE")]
    Sync(SyncArgs),
    /// Show what `sync` would change, and change nothing.
    #[command(override_usage = "kalandra plan [OPTIONS] UP DOWN\n       \
                                kalandra plan [OPTIONS] --config FILE")]
    Plan(SyncArgs),
    /// Keep a fleet in sync as a service: intervals, webhooks, metrics.
    Watch(watch::WatchArgs),
    /// Check a fleet config file, or list its mirrors; connects to nothing.
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// Print a shell completion script, e.g.
    /// `kalandra completions bash > ~/.local/share/bash-completion/completions/kalandra`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages for kalandra, each of its commands and
    /// git-remote-kalandra into DIR (install.sh puts them in
    /// $PREFIX/share/man/man1).
    Manpages {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// Flags that shape one pair's sync; a config file sets them per mirror.
const PAIR_ONLY: [&str; 16] = [
    "upstream",
    "downstream",
    "include",
    "exclude",
    "no_prune",
    "allow_mass_delete",
    "divergence",
    "immutable_tags",
    "atomic",
    "no_atomic",
    "set_head",
    "max_pack_bytes",
    "max_refs_per_push",
    "lfs",
    "upstream_lfs_url",
    "downstream_lfs_url",
];

#[derive(Args)]
struct SyncArgs {
    /// The repository to mirror from: a path, file://, ssh://, git:// or http(s):// URL.
    #[arg(value_name = "UP", required_unless_present = "config")]
    upstream: Option<String>,
    /// The repository to mirror into.
    #[arg(value_name = "DOWN", required_unless_present = "config")]
    downstream: Option<String>,
    /// Sync every mirror of this TOML config file (`[[mirror]]` entries;
    /// `kalandra config check FILE` validates it) instead of one UP DOWN
    /// pair.
    #[arg(long, value_name = "FILE", conflicts_with_all = PAIR_ONLY)]
    config: Option<std::path::PathBuf>,
    /// With --config: how many mirrors sync at once [default: the number
    /// of cores].
    #[arg(long, short = 'j', value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    jobs: Option<u64>,
    /// With --config: at most N connections to any one server at once
    /// [default: 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    per_host: Option<u64>,
    /// With --config: sync only the mirrors with these names.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    only: Vec<String>,
    /// With --config: sync only shard I of N (I from 0), a stable subset
    /// chosen by a hash of each mirror's name, to split a fleet across
    /// machines.
    #[arg(long, value_name = "I/N")]
    shard: Option<kalandra::fleet::Shard>,
    /// Mirror only refs matching this pattern (repeatable). `*` matches any
    /// characters, `/` included. Replaces the default scope of
    /// refs/heads/* and refs/tags/*.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave refs matching this pattern alone (repeatable). Wins over --include.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Do not delete downstream refs that upstream no longer has.
    #[arg(long)]
    no_prune: bool,
    /// Allow a sync that deletes more than half of downstream's refs in
    /// scope, or that deletes everything because upstream lists no refs.
    #[arg(long)]
    allow_mass_delete: bool,
    /// What to do when downstream's branch is not an ancestor of upstream's:
    /// `force` overwrites it (as `git push --mirror`) and reports it as
    /// forced; `ff-only` refuses the update; `keep` leaves downstream's ref
    /// as it is.
    #[arg(long, value_enum, default_value = "force", value_name = "POLICY")]
    divergence: DivergenceArg,
    /// Never move or delete a tag that downstream already has.
    #[arg(long)]
    immutable_tags: bool,
    /// All or nothing: if any ref is refused, no ref moves. Fails when
    /// downstream does not support atomic pushes. By default each ref is
    /// applied on its own, so one refused ref does not block the others.
    #[arg(long)]
    atomic: bool,
    /// Split the sync into pushes whose packs stay under SIZE (bytes, or
    /// with k, m, g; `github` for GitHub's 2 GiB limit), pushing history in
    /// steps as temporary refs/kalandra/checkpoint/* refs, deleted at the
    /// end [default: no cap].
    #[arg(long, value_name = "SIZE", value_parser = kalandra::batch::parse_size)]
    max_pack_bytes: Option<u64>,
    /// Push at most N ref updates at a time; 0 for no cap [default: 1000,
    /// none with --atomic].
    #[arg(long, value_name = "N")]
    max_refs_per_push: Option<usize>,
    /// Git LFS objects: `auto` mirrors those the relayed commits point to
    /// when upstream has an LFS server, `on` fails when it cannot, `off`
    /// relays git objects only.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    lfs: LfsArg,
    /// Upstream's LFS endpoint, when it is not `<UP>.git/info/lfs` (as
    /// git's `lfs.url`).
    #[arg(long, value_name = "URL", value_parser = kalandra::lfs::parse_endpoint)]
    upstream_lfs_url: Option<url::Url>,
    /// Downstream's LFS endpoint, when it is not `<DOWN>.git/info/lfs`.
    #[arg(long, value_name = "URL", value_parser = kalandra::lfs::parse_endpoint)]
    downstream_lfs_url: Option<url::Url>,
    /// Do not re-read downstream's refs after the push to check that they
    /// are what downstream reported.
    #[arg(long)]
    no_verify: bool,
    /// Apply each ref on its own (the default; kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "atomic")]
    no_atomic: bool,
    /// Give up on reaching a server after this many seconds [default: 30,
    /// or KALANDRA_CONNECT_TIMEOUT].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout: Option<u64>,
    /// Fail a connection on which nothing moves for this many seconds
    /// [default: 300, or KALANDRA_IDLE_TIMEOUT].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: Option<u64>,
    /// Fail a connection that moves fewer than BYTES bytes a second,
    /// averaged over --low-speed-time seconds of waiting on the server
    /// [default: off (0), or KALANDRA_LOW_SPEED_LIMIT]. Counting objects
    /// upstream and checking the pack downstream move almost nothing, so
    /// leave room for them.
    #[arg(long, value_name = "BYTES")]
    low_speed_limit: Option<u64>,
    /// The window of --low-speed-limit [default: 60, or
    /// KALANDRA_LOW_SPEED_TIME].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    low_speed_time: Option<u64>,
    /// Give up on the sync after this many seconds, however busy it is
    /// [default: no limit].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    max_duration: Option<u64>,
    /// When downstream is on this machine and its HEAD differs from
    /// upstream's default branch (or names a branch it lacks), point it at
    /// upstream's. Without it, the difference is only reported.
    #[arg(long)]
    set_head: bool,
    /// With `plan`: exit 1 when changes are pending and 0 when downstream
    /// is in sync, as `git diff --exit-code` does.
    #[arg(long)]
    exit_code: bool,
    /// Print one JSON object on stdout (the schema is in the JSON output
    /// documentation).
    #[arg(long)]
    json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Log more on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Colour in logs and the progress bar: `auto` on a terminal unless
    /// NO_COLOR is set, `always`, or `never`.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    color: ColorArg,
}

/// `--lfs` values, as clap sees them.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LfsArg {
    Auto,
    On,
    Off,
}

impl From<LfsArg> for kalandra::lfs::Mode {
    fn from(arg: LfsArg) -> Self {
        match arg {
            LfsArg::Auto => Self::Auto,
            LfsArg::On => Self::On,
            LfsArg::Off => Self::Off,
        }
    }
}

/// `--color` values, as clap sees them.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ColorArg {
    Auto,
    Always,
    Never,
}

impl From<ColorArg> for Color {
    fn from(arg: ColorArg) -> Self {
        match arg {
            ColorArg::Auto => Color::Auto,
            ColorArg::Always => Color::Always,
            ColorArg::Never => Color::Never,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, dry_run) = match &cli.command {
        Command::Sync(args) => (args, false),
        Command::Plan(args) => (args, true),
        Command::Config { command } => return config_cmd::run(command),
        Command::Watch(args) => return watch::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "kalandra", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Manpages { dir } => return manpages(dir),
    };
    if args.config.is_none() {
        refuse_fleet_flags(args);
    }
    if args.exit_code && !dry_run {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--exit-code only applies to `kalandra plan`",
            )
            .exit();
    }
    init_logging(args);
    if let Some(config) = &args.config {
        return ExitCode::from(run_fleet(args, config, dry_run));
    }
    let Some(runtime) = runtime(None) else {
        return ExitCode::from(exit::OTHER);
    };
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        // Dropping the sync on a signal drops its connections: a push cut
        // off before its pack is complete makes receive-pack fail
        // ("unpack eof"), and local server processes are killed.
        tokio::select! {
            result = run(args, dry_run) => result,
            signal = interrupted() => Err(signal.into()),
        }
    });
    match result {
        Ok((report, head)) => {
            let mut code = match report.result.outcome() {
                Outcome::Complete => exit::OK,
                Outcome::Partial => exit::REJECTED,
                Outcome::NothingLanded => exit::NOTHING_LANDED,
                Outcome::Unknown => exit::UNKNOWN,
            };
            if dry_run
                && args.exit_code
                && code == exit::OK
                && report.result.count(RefStatus::Planned) > 0
            {
                code = exit::CHANGES_PENDING;
            }
            if args.json {
                print_json(&report, head.as_ref().map(|(_, head)| head));
            } else if args.quiet {
                print_problems(&report);
            } else {
                print_human(&report);
                if let Some((path, head)) = &head {
                    if let Some(advice) = head.advice(path) {
                        err!("kalandra: warning: {advice}");
                    }
                    if head.set {
                        err!(
                            "kalandra: downstream's HEAD now points to {}",
                            head.downstream.as_deref().unwrap_or_default()
                        );
                    }
                }
            }
            ExitCode::from(code)
        }
        Err(failure) => {
            let code = exit_code(&failure);
            // Masked again as a whole: a secret must not show even where a
            // cause quotes a URL that could not be parsed.
            let message = mask_credentials(&error_chain(&failure));
            let hint = hint(&failure);
            if args.json {
                // As a successful report shows them: after url.*.insteadOf.
                let locations = Locations::load_blocking().unwrap_or_default();
                let shown = |raw: &str, direction| match locations.resolve(raw, direction) {
                    Ok(url) => url.to_string(),
                    Err(_) => mask_credentials(raw),
                };
                let would_delete = guard_refs(&failure);
                let value = serde_json::json!({
                    "schema_version": SCHEMA_VERSION,
                    "ok": false,
                    "dry_run": dry_run,
                    "upstream": shown(args.upstream.as_deref().unwrap_or_default(), Direction::Fetch),
                    "downstream": shown(args.downstream.as_deref().unwrap_or_default(), Direction::Push),
                    "object_format": null,
                    "upstream_head": null,
                    "head": null,
                    "refs": [],
                    "pack": null,
                    "bytes_relayed": 0,
                    "elapsed_ms": started.elapsed().as_millis() as u64,
                    "downstream_messages": [],
                    "skipped_refs": [],
                    "steps": [],
                    "lfs": null,
                    "outcome": null,
                    "error_kind": error_kind(code),
                    "kind": failure_kind(&failure, code),
                    "error": message,
                    "hint": hint,
                    "would_delete": would_delete,
                });
                out!("{value}");
            }
            err!("kalandra: error: {message}");
            if let Some(hint) = hint {
                err!("hint: {hint}");
            }
            if !args.json {
                let refs = guard_refs(&failure);
                for name in refs.iter().take(GUARD_REFS_SHOWN) {
                    err!("  would delete {}", escape(name));
                }
                if refs.len() > GUARD_REFS_SHOWN {
                    err!(
                        "  ... and {} more (--json lists them all)",
                        refs.len() - GUARD_REFS_SHOWN
                    );
                }
            }
            ExitCode::from(code)
        }
    }
}

/// The version of the single-pair JSON document (docs/json.md).
const SCHEMA_VERSION: u32 = 1;

/// How many refs a guard's refusal lists on stderr.
const GUARD_REFS_SHOWN: usize = 20;

/// The refs a guard kept from being deleted.
fn guard_refs(failure: &anyhow::Error) -> Vec<String> {
    let refused = match failure.downcast_ref::<relay::Error>() {
        Some(relay::Error::Refused(error)) => Some(error),
        _ => failure.downcast_ref::<plan::Error>(),
    };
    refused
        .map(|e| e.would_delete().to_vec())
        .unwrap_or_default()
}

/// A next step for failures that have an obvious one.
fn hint(failure: &anyhow::Error) -> Option<String> {
    failure
        .downcast_ref::<relay::Error>()
        .and_then(relay::Error::hint)
}

/// SIGINT or SIGTERM arrived.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {signal}; a push cut off before its pack was complete changes nothing downstream")]
pub(crate) struct Interrupted {
    signal: &'static str,
    code: u8,
}

impl Interrupted {
    fn code(&self) -> u8 {
        self.code
    }
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn interrupted() -> Interrupted {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match &mut term {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Interrupted { signal: "SIGINT", code: exit::INTERRUPTED },
        () = term => Interrupted { signal: "SIGTERM", code: exit::TERMINATED },
    }
}

/// `kalandra manpages DIR`: kalandra.1, kalandra-sync.1, ... and
/// git-remote-kalandra.1.
fn manpages(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
        .and_then(|()| clap_mangen::generate_to(helper_cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            err!(
                "kalandra: error: cannot write man pages into {}: {error}",
                dir.display()
            );
            ExitCode::from(exit::OTHER)
        }
    }
}

/// The fleet's flags mean nothing for one pair. (clap's `requires` is not
/// enforced next to the optional positionals, so this says it instead.)
fn refuse_fleet_flags(args: &SyncArgs) {
    let given = [
        ("--jobs", args.jobs.is_some()),
        ("--per-host", args.per_host.is_some()),
        ("--only", !args.only.is_empty()),
        ("--shard", args.shard.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!("{flag} only applies with --config FILE"),
            )
            .exit();
    }
}

/// The async runtime: one thread for one pair, or `workers` threads (at
/// most 8: the work is I/O) for a fleet. A failure is said on stderr.
fn runtime(workers: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let mut builder = match workers {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n.clamp(1, 8));
            builder
        }
    };
    match builder.enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            err!("kalandra: error: cannot start the async runtime: {e}");
            None
        }
    }
}

/// `--jobs`, or the number of cores.
fn jobs_or_cores(jobs: Option<u64>) -> usize {
    jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    )
}

fn run_fleet(args: &SyncArgs, config: &std::path::Path, dry_run: bool) -> u8 {
    let transport = match transport_settings(args) {
        Ok(settings) => settings,
        Err(error) => {
            err!("kalandra: error: invalid environment: {error}");
            return exit::USAGE;
        }
    };
    if let Err(error) = kalandra::limits::Limits::from_env() {
        err!("kalandra: error: invalid environment: {error}");
        return exit::USAGE;
    }
    fleet::run(&fleet::FleetArgs {
        config,
        jobs: jobs_or_cores(args.jobs),
        per_host: args.per_host.map_or(DEFAULT_PER_HOST, |n| n as usize),
        only: &args.only,
        shard: args.shard,
        dry_run,
        no_verify: args.no_verify,
        json: args.json,
        quiet: args.quiet,
        exit_code: args.exit_code,
        transport,
    })
}

/// One pair's sync, and what was found of downstream's HEAD when it is on
/// this machine (with its path).
async fn run(
    args: &SyncArgs,
    dry_run: bool,
) -> anyhow::Result<(SyncReport, Option<(PathBuf, kalandra::head::HeadReport)>)> {
    // url.*.insteadOf rewrites both sides, pushInsteadOf only downstream.
    let locations = Locations::load().await?;
    let upstream = locations
        .resolve(
            args.upstream.as_deref().unwrap_or_default(),
            Direction::Fetch,
        )
        .context("invalid upstream")?;
    let downstream = locations
        .resolve(
            args.downstream.as_deref().unwrap_or_default(),
            Direction::Push,
        )
        .context("invalid downstream")?;
    kalandra::limits::Limits::from_env().context("invalid environment")?;
    let scope = Scope::new(&args.include, &args.exclude)?;
    let show_progress = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let options = SyncOptions {
        plan: PlanOptions {
            scope,
            prune: !args.no_prune,
            allow_mass_delete: args.allow_mass_delete,
            divergence: args.divergence.into(),
            immutable_tags: args.immutable_tags,
        },
        push: PushOptions {
            atomic: args.atomic,
            progress: show_progress,
            push_options: Vec::new(),
            max_pack_bytes: args.max_pack_bytes,
            // --atomic asks for one all-or-nothing push: only a cap given
            // outright splits it (each push then atomic on its own).
            max_refs_per_push: match args.max_refs_per_push {
                Some(0) => None,
                Some(n) => Some(n),
                None if args.atomic => None,
                None => Some(kalandra::batch::DEFAULT_MAX_REFS),
            },
        },
        dry_run,
        no_verify: args.no_verify,
        transport: transport_settings(args)?,
        lfs: args.lfs.into(),
        lfs_urls: kalandra::lfs::Endpoints {
            upstream: args.upstream_lfs_url.clone(),
            downstream: args.downstream_lfs_url.clone(),
        },
    };
    // Not on a terminal, a plain line every few seconds tells a CI log
    // that a long transfer is alive (docs/usage.md, "Progress and logs").
    let progress = Progress::with_display(if show_progress {
        Display::Terminal {
            color: Color::from(args.color).for_stderr(),
        }
    } else if args.quiet || std::io::stderr().is_terminal() {
        Display::Hidden
    } else {
        Display::plain_from_env()
    });
    let sync = relay::sync(&upstream, &downstream, &options, &progress);
    let result: anyhow::Result<SyncReport> = match options.transport.max_duration {
        // Every connection fails at the deadline on its own, saying what is
        // known; this only catches a sync stuck outside them (a credential
        // helper, say).
        Some(max) => match tokio::time::timeout(max.saturating_add(MAX_DURATION_GRACE), sync).await
        {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(DeadlinePassed {
                secs: max.as_secs(),
            }
            .into()),
        },
        None => sync.await.map_err(Into::into),
    };
    progress.finish();
    let report = result?;
    let head = match &downstream {
        kalandra::url::RepoUrl::Local { path, .. } => {
            let set = args.set_head && !dry_run;
            match kalandra::head::check_local(path, report.upstream_head.as_deref(), set).await {
                Ok(head) => Some((path.clone(), head)),
                Err(error) => {
                    tracing::warn!("cannot check downstream's HEAD: {error}");
                    None
                }
            }
        }
        _ => None,
    };
    Ok((report, head))
}

/// `--per-host` unless given: a handful, so that one forge is not hammered.
const DEFAULT_PER_HOST: usize = 4;

/// The sync was cut off at `--max-duration` outside any connection's own
/// deadline, so what downstream did is not known.
#[derive(Debug, thiserror::Error)]
#[error("the sync did not finish within --max-duration {secs} s and was cut off; whether downstream applied the update is unknown")]
struct DeadlinePassed {
    secs: u64,
}

/// How long past `--max-duration` a sync stuck outside its connections may
/// take before it is cut off.
const MAX_DURATION_GRACE: Duration = Duration::from_secs(10);

/// The environment's settings, overridden by the flags.
fn transport_settings(
    args: &SyncArgs,
) -> Result<TransportSettings, kalandra::transport::SettingsError> {
    let mut settings = TransportSettings::try_from_env()?;
    if let Some(secs) = args.connect_timeout {
        settings.connect_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = args.idle_timeout {
        settings.idle_timeout = Duration::from_secs(secs);
    }
    if let Some(bytes) = args.low_speed_limit {
        settings.low_speed_limit = bytes;
    }
    if let Some(secs) = args.low_speed_time {
        settings.low_speed_time = Duration::from_secs(secs);
    }
    settings.max_duration = args.max_duration.map(Duration::from_secs);
    Ok(settings)
}

/// Maps a failure to its documented exit code. Only this binary decides
/// exit codes; the library only says what went wrong.
fn exit_code(failure: &anyhow::Error) -> u8 {
    if failure.downcast_ref::<kalandra::url::Error>().is_some()
        || failure
            .downcast_ref::<kalandra::transport::SettingsError>()
            .is_some()
    {
        return exit::USAGE;
    }
    if let Some(kalandra::limits::Error::InvalidVariable { .. }) = failure.downcast_ref() {
        return exit::USAGE;
    }
    if failure
        .downcast_ref::<kalandra::location::Error>()
        .is_some()
    {
        return exit::USAGE;
    }
    if let Some(error) = failure.downcast_ref::<plan::Error>() {
        return plan_code(error);
    }
    if failure.downcast_ref::<DeadlinePassed>().is_some() {
        return exit::OTHER;
    }
    if let Some(interrupted) = failure.downcast_ref::<Interrupted>() {
        return interrupted.code;
    }
    match failure.downcast_ref::<relay::Error>() {
        Some(relay::Error::Refused(error)) => plan_code(error),
        Some(relay::Error::Verify { .. }) => exit::VERIFY,
        Some(relay::Error::Unsupported { .. }) => exit::REFUSED,
        // The user's git settings refuse the transport or are not valid.
        Some(relay::Error::Connect { source, .. }) if source.caused_by_git_settings() => {
            exit::USAGE
        }
        Some(_) => exit::CONNECTION,
        None => exit::OTHER,
    }
}

/// The error and its causes on one line (see [`relay::chain`]).
fn error_chain(failure: &anyhow::Error) -> String {
    relay::chain(failure.as_ref())
}

/// The JSON `error_kind` of a failed run, one per exit code.
fn error_kind(code: u8) -> &'static str {
    match code {
        exit::USAGE => "usage",
        exit::CONNECTION => "connection",
        exit::REFUSED => "refused",
        exit::VERIFY => "verify-mismatch",
        exit::INTERRUPTED | exit::TERMINATED => "interrupted",
        _ => "other",
    }
}

/// The JSON `kind` of a failed run: the library's classification, which
/// says whether trying again may help.
fn failure_kind(failure: &anyhow::Error, code: u8) -> kalandra::error_kind::ErrorKind {
    use kalandra::error_kind::{classify, ErrorKind};
    if let Some(error) = failure.downcast_ref::<relay::Error>() {
        return classify(error).kind;
    }
    match code {
        exit::USAGE => ErrorKind::Usage,
        exit::REFUSED => ErrorKind::Guard,
        _ if failure.downcast_ref::<DeadlinePassed>().is_some() => ErrorKind::Timeout,
        _ if failure.downcast_ref::<Interrupted>().is_some() => ErrorKind::Interrupted,
        _ => ErrorKind::Other,
    }
}

fn plan_code(error: &plan::Error) -> u8 {
    match error {
        plan::Error::Pattern { .. } => exit::USAGE,
        plan::Error::EmptyUpstream { .. } | plan::Error::MassDelete { .. } => exit::REFUSED,
    }
}

fn print_json(report: &SyncReport, head: Option<&kalandra::head::HeadReport>) {
    let mut value = serde_json::to_value(report).expect("because the report is plain data");
    if let Some(object) = value.as_object_mut() {
        object.insert("schema_version".into(), serde_json::json!(SCHEMA_VERSION));
        object.insert("head".into(), serde_json::json!(head));
        object.insert(
            "ok".into(),
            serde_json::Value::Bool(report.result.outcome() == Outcome::Complete),
        );
        object.insert("outcome".into(), serde_json::json!(report.result.outcome()));
        // Refused refs and a lost report are not failures of the run (it
        // ended with a report), but they have a kind all the same.
        let failure = kalandra::fleet::report_failure(report);
        object.insert("error_kind".into(), serde_json::Value::Null);
        object.insert(
            "kind".into(),
            serde_json::json!(failure.as_ref().map(|f| f.kind)),
        );
        object.insert(
            "error".into(),
            serde_json::json!(failure.map(|f| f.message)),
        );
        object.insert("hint".into(), serde_json::Value::Null);
        object.insert("would_delete".into(), serde_json::json!([]));
    }
    out!("{value}");
}

fn print_human(report: &SyncReport) {
    let refs = &report.result.refs;
    if refs.is_empty() {
        out!("Everything up to date ({} ms)", report.elapsed_ms);
        return;
    }
    let width = refs
        .iter()
        .map(|r| escape(&r.name).chars().count())
        .max()
        .unwrap_or(0);
    for outcome in refs {
        out!("{}", ref_line(outcome, width, report.dry_run));
    }
    let unknown = report.result.count(RefStatus::Unknown);
    if unknown > 0 {
        err!(
            "kalandra: warning: outcome unknown: {unknown} ref{} may or may not have moved \
             downstream (see the reasons above); run the sync again to settle it",
            if unknown == 1 { "" } else { "s" }
        );
    }
    if report.result.rejected() > 0 {
        for message in &report.result.downstream_messages {
            err!("downstream: {}", escape(message));
        }
    }
    let tally = Tally::of(refs);
    let what = tally.describe(report.dry_run);
    if report.dry_run {
        out!("plan: {what}; nothing was changed");
    } else {
        let pushes = match report.steps.len() {
            0 | 1 => String::new(),
            n => {
                let cut = report.steps.iter().filter(|s| s.cut).count();
                format!(
                    " in {n} pushes{}",
                    match cut {
                        0 => String::new(),
                        1 => " (1 cut at the cap and split)".into(),
                        cut => format!(" ({cut} cut at the cap and split)"),
                    }
                )
            }
        };
        let lfs = match &report.lfs {
            Some(lfs) if lfs.objects > 0 => format!(
                ", {} LFS object{} ({})",
                lfs.objects,
                if lfs.objects == 1 { "" } else { "s" },
                human_bytes(lfs.bytes)
            ),
            _ => String::new(),
        };
        out!(
            "{what}; {} relayed{pushes}{lfs} in {:.1} s",
            human_bytes(report.result.bytes_relayed),
            report.elapsed_ms as f64 / 1000.0
        );
    }
}

/// `-q`: no progress and no success chatter, but what went wrong still
/// shows: a refused ref is an error, and a lost report is a warning.
fn print_problems(report: &SyncReport) {
    let mut any = false;
    for outcome in &report.result.refs {
        let label = match outcome.status {
            RefStatus::Rejected => "error: rejected",
            RefStatus::Unknown => "warning: outcome unknown for",
            _ => continue,
        };
        any = true;
        let reason = outcome.reason.as_deref().map(escape).unwrap_or_default();
        err!("kalandra: {label} {}: {reason}", escape(&outcome.name));
    }
    if any && report.result.rejected() > 0 {
        for message in &report.result.downstream_messages {
            err!("downstream: {}", escape(message));
        }
    }
}

fn ref_line(outcome: &RefOutcome, width: usize, dry_run: bool) -> String {
    use kalandra::plan::Action;
    let short = |oid: &Option<kalandra::oid::ObjectId>| {
        oid.as_ref()
            .map(|o| o.short().to_owned())
            .unwrap_or_default()
    };
    // git's notation: `a..b` for a fast-forward, `a...b` when b does not
    // contain a.
    let dots = match outcome.kind {
        Some(UpdateKind::FastForward) => "..",
        _ => "...",
    };
    let change = match outcome.action {
        Action::Create => short(&outcome.new),
        Action::Update => format!("{}{dots}{}", short(&outcome.old), short(&outcome.new)),
        Action::Delete => format!("(was {})", short(&outcome.old)),
    };
    let verb = match (&outcome.status, outcome.action, dry_run) {
        (RefStatus::Rejected, _, _) => "rejected",
        (RefStatus::Kept, _, _) => "kept",
        (RefStatus::Unknown, _, _) => "unknown",
        (_, Action::Create, false) => "created",
        (_, Action::Update, false) => "updated",
        (_, Action::Delete, false) => "deleted",
        (_, Action::Create, true) => "create",
        (_, Action::Update, true) => "update",
        (_, Action::Delete, true) => "delete",
    };
    let name = escape(&outcome.name);
    let mut line = format!("{verb:<9}{name:<width$}  {change}");
    let kind = match outcome.kind {
        Some(UpdateKind::Forced) if outcome.status != RefStatus::Rejected => Some("forced"),
        Some(UpdateKind::TagMoved) => Some("tag moved"),
        Some(UpdateKind::Undecidable) if outcome.reason.is_none() => Some("undecidable"),
        _ => None,
    };
    let reason = outcome.reason.as_deref().map(escape);
    match (kind, reason) {
        (Some(kind), Some(reason)) => line.push_str(&format!("  ({kind}; {reason})")),
        (Some(kind), None) => line.push_str(&format!("  ({kind})")),
        (None, Some(reason)) => line.push_str(&format!("  ({reason})")),
        (None, None) => {}
    }
    line
}

fn init_logging(args: &SyncArgs) {
    let default = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KALANDRA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter::default)
        .with_ansi(Color::from(args.color).for_stderr())
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn a_cause_already_in_its_parents_message_is_not_repeated() {
        let failure = anyhow::anyhow!("internal overflow error")
            .context("SshEncoding: internal overflow error")
            .context("reading from upstream failed");
        assert_eq!(
            error_chain(&failure),
            "reading from upstream failed: SshEncoding: internal overflow error"
        );
        let plain = anyhow::anyhow!("refused").context("cannot connect");
        assert_eq!(error_chain(&plain), "cannot connect: refused");
    }
}
