//! `kalandra watch --config FILE`: the fleet as a service. Mirrors sync on
//! their interval and on webhooks; an HTTP listener serves the hooks,
//! Prometheus metrics, health and status; SIGHUP reloads the config and
//! SIGTERM/SIGINT stop it gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kalandra::config::{self, Mirror};
use kalandra::fleet::{Failure, MirrorRun, Observer, RunOptions};
use kalandra::progress::{human_bytes, Progress};
use kalandra::terminal::escape;
use kalandra::watch::metrics::Metrics;
use kalandra::watch::schedule::Scheduler;
use tokio::signal::unix::{signal, SignalKind};

use crate::exit;

#[derive(Args)]
pub struct WatchArgs {
    /// The fleet config file (as for `sync --config`); `interval` and
    /// `webhook_secret_*` apply here.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Where the HTTP listener (webhooks, /metrics, /healthz, /readyz,
    /// /status) listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9180")]
    pub listen: SocketAddr,
    /// How many mirrors sync at once [default: the number of cores].
    #[arg(long, short = 'j', value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub jobs: Option<u64>,
    /// At most N connections to any one server at once.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub per_host: u64,
    /// On SIGTERM or SIGINT, how many seconds the syncs in flight get to
    /// finish before they are stopped.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub grace: u64,
    /// `human` lines, or one JSON object per line.
    #[arg(long, value_enum, default_value = "human", value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// Log only warnings and errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Log more (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour in `human` logs: `auto` on a terminal unless NO_COLOR is
    /// set, `always`, or `never`.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub color: crate::ColorArg,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn run(args: &WatchArgs) -> ExitCode {
    init_logging(args);
    let fleet = match config::load(&args.config) {
        Ok(fleet) => fleet,
        Err(errors) => {
            crate::config_cmd::print_errors(&errors);
            err!("kalandra: error: invalid config; not started");
            return ExitCode::from(exit::USAGE);
        }
    };
    let transport = match kalandra::transport::TransportSettings::try_from_env() {
        Ok(settings) => settings,
        Err(error) => {
            err!("kalandra: error: invalid environment: {error}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let jobs = crate::jobs_or_cores(args.jobs);
    let Some(runtime) = crate::runtime(Some(jobs)) else {
        return ExitCode::from(exit::OTHER);
    };
    let app_tokens: Arc<kalandra::forge::AppTokens> = Default::default();
    let mut fleet = fleet;
    if let Err(error) = runtime.block_on(kalandra::forge::discovery::discover(
        &mut fleet,
        &app_tokens,
        transport.connect_timeout,
    )) {
        err!(
            "kalandra: error: {}",
            escape(&format!("{:#}", anyhow::Error::new(error)))
        );
        err!("kalandra: error: discovery failed; not started");
        return ExitCode::from(exit::OTHER);
    }
    let options = RunOptions {
        jobs,
        per_host: args.per_host as usize,
        dry_run: false,
        no_verify: false,
        transport,
        app_tokens,
    };
    ExitCode::from(runtime.block_on(serve(args, fleet, options)))
}

async fn serve(args: &WatchArgs, fleet: config::Fleet, options: RunOptions) -> u8 {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            err!("kalandra: error: cannot listen on {}: {e}", args.listen);
            return exit::OTHER;
        }
    };
    let metrics = Arc::new(Metrics::new());
    let mirrors = fleet.mirrors.len();
    let tokens = Arc::clone(&options.app_tokens);
    let connect_timeout = options.transport.connect_timeout;
    let has_orgs = fleet.discovers();
    let scheduler = Arc::new(Scheduler::new(
        fleet,
        options,
        Arc::new(Logged {
            metrics: Arc::clone(&metrics),
        }),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let http = tokio::spawn(kalandra::watch::http::serve(
        listener,
        scheduler.control(),
        Arc::clone(&metrics),
        stopped(stop_rx.clone()),
    ));
    tracing::info!(
        "watching {mirrors} mirror(s) from {}; listening on http://{}",
        args.config.display(),
        args.listen
    );
    // Installed before the service says it is ready: until then, SIGHUP's
    // default action would end the process.
    let (Ok(hup), Ok(term), Ok(int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        err!("kalandra: error: cannot install the signal handlers");
        return exit::OTHER;
    };
    let signals = tokio::spawn(handle_signals(
        [hup, term, int],
        Reloader {
            path: args.config.clone(),
            tokens: Arc::clone(&tokens),
            connect_timeout,
            discovers: has_orgs,
        },
        Arc::clone(&scheduler),
        Arc::clone(&metrics),
        stop_tx,
    ));
    scheduler
        .run(stopped(stop_rx), Duration::from_secs(args.grace))
        .await;
    signals.abort();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("the HTTP listener failed: {e}"),
        Err(e) => tracing::error!("the HTTP listener ended abnormally: {e}"),
    }
    tracing::info!("stopped");
    exit::OK
}

/// What a reload needs: the config file, and for `[[github_org]]`
/// discovery the process's app tokens.
struct Reloader {
    path: PathBuf,
    tokens: Arc<kalandra::forge::AppTokens>,
    connect_timeout: Duration,
    /// Whether the running config has `[[github_org]]`s, which are listed
    /// again every `REDISCOVER_EVERY`.
    discovers: bool,
}

/// SIGHUP reloads the config (a broken one is logged and the old one kept);
/// SIGTERM and SIGINT stop the service. With `[[github_org]]`s, the config
/// is also reloaded (and the orgs listed again) every
/// [`kalandra::forge::github_org::REDISCOVER_EVERY`].
async fn handle_signals(
    [mut hup, mut term, mut int]: [tokio::signal::unix::Signal; 3],
    mut reloader: Reloader,
    scheduler: Arc<Scheduler>,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Sender<bool>,
) {
    let every = kalandra::forge::github_org::REDISCOVER_EVERY;
    let mut rediscover = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&mut reloader, &scheduler, &metrics).await,
            _ = rediscover.tick(), if reloader.discovers => {
                reload(&mut reloader, &scheduler, &metrics).await
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping: no new syncs start");
    let _ = stop.send(true);
}

async fn reload(reloader: &mut Reloader, scheduler: &Scheduler, metrics: &Metrics) {
    let path = &reloader.path;
    match config::load(path) {
        Ok(mut fleet) => {
            if let Err(error) = kalandra::forge::discovery::discover(
                &mut fleet,
                &reloader.tokens,
                reloader.connect_timeout,
            )
            .await
            {
                tracing::error!("{}", escape(&format!("{:#}", anyhow::Error::new(error))));
                tracing::error!("discovery failed; still running the previous mirrors");
                return;
            }
            reloader.discovers = fleet.discovers();
            tracing::info!(
                "reloaded {}: {} mirror(s)",
                path.display(),
                fleet.mirrors.len()
            );
            for gone in scheduler.reload(fleet) {
                metrics.forget(&gone);
            }
        }
        Err(errors) => {
            for diagnostic in &errors.0 {
                tracing::error!("{}", escape(&diagnostic.to_string()));
            }
            tracing::error!("the new config is invalid; still running the previous one");
        }
    }
}

/// Logs each sync and keeps the metrics.
struct Logged {
    metrics: Arc<Metrics>,
}

impl Observer for Logged {
    /// A sync counts as in flight from its first try to its end, waits
    /// between retries included: `sync_started` and `sync_finished` pair.
    fn started(&self, mirror: &Mirror, attempt: u32, _progress: &Arc<Progress>) {
        if attempt == 1 {
            self.metrics.sync_started(&mirror.name);
        }
    }

    fn retrying(&self, mirror: &Mirror, attempt: u32, delay: Duration, failure: &Failure) {
        self.metrics.retried(&mirror.name);
        tracing::warn!(
            "{}: try {attempt} failed ({}), retrying in {:.1} s: {}",
            escape(&mirror.name),
            failure.kind.as_str(),
            delay.as_secs_f64(),
            escape(&failure.message)
        );
    }

    fn finished(&self, run: &MirrorRun) {
        self.metrics
            .sync_finished(run, Duration::from_millis(run.elapsed_ms));
        match run.error_kind {
            None => tracing::info!(
                "{}: ok, {} ref(s) changed, {} relayed in {:.1} s",
                escape(&run.name),
                run.refs_changed(),
                human_bytes(run.bytes_relayed()),
                run.elapsed_ms as f64 / 1000.0
            ),
            Some(kind) => tracing::warn!(
                "{}: failed ({}): {}",
                escape(&run.name),
                kind.as_str(),
                run.error.as_deref().map(escape).unwrap_or_default()
            ),
        }
    }
}

fn init_logging(args: &WatchArgs) {
    let default = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KALANDRA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder
            .with_ansi(kalandra::progress::Color::from(args.color).for_stderr())
            .init(),
    }
}
