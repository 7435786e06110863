//! `kalandra config check|list FILE`: validate a fleet config file, or show
//! the mirrors it expands to. Nothing connects.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use kalandra::config::{self, Errors, Fleet, Mirror, SecretRef, DEFAULT_INTERVAL, DEFAULT_RETRIES};
use kalandra::plan::{Divergence, DEFAULT_INCLUDE};
use kalandra::terminal::escape;

use crate::exit;

/// The version of `config list --json`'s document (docs/config.md).
const SCHEMA_VERSION: u32 = 1;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE and report every problem, with its line and column;
    /// exit 2 when there is any.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the mirrors of FILE, templates expanded and defaults applied.
    List {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print one JSON document on stdout (`schema_version` 1).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: &ConfigCommand) -> ExitCode {
    let file = match command {
        ConfigCommand::Check { file } | ConfigCommand::List { file, .. } => file,
    };
    let mut fleet = match config::load(file) {
        Ok(fleet) => fleet,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(exit::USAGE);
        }
    };
    // `config check` only checks the file; `config list` shows the
    // mirrors discovery adds.
    if matches!(command, ConfigCommand::List { .. }) && fleet.discovers() {
        let Some(runtime) = crate::runtime(Some(1)) else {
            return ExitCode::from(exit::OTHER);
        };
        let settings = match kalandra::transport::TransportSettings::try_from_env() {
            Ok(settings) => settings,
            Err(error) => {
                err!("kalandra: error: invalid environment: {error}");
                return ExitCode::from(exit::USAGE);
            }
        };
        let tokens = kalandra::forge::AppTokens::default();
        if let Err(error) = runtime.block_on(kalandra::forge::discovery::discover(
            &mut fleet,
            &tokens,
            settings.connect_timeout,
        )) {
            err!(
                "kalandra: error: {}",
                escape(&format!("{:#}", anyhow::Error::new(error)))
            );
            return ExitCode::from(exit::OTHER);
        }
    }
    match command {
        ConfigCommand::Check { .. } => {
            let count = fleet.mirrors.len();
            let noun = if count == 1 { "mirror" } else { "mirrors" };
            out!(
                "{}: {count} {noun}, OK",
                escape(&file.display().to_string())
            );
        }
        ConfigCommand::List { json: true, .. } => out!("{}", json(&fleet)),
        ConfigCommand::List { json: false, .. } => crate::output::text(&table(&fleet)),
    }
    ExitCode::from(exit::OK)
}

/// One line per problem, each made safe for a terminal on its own: a key
/// or a name from the file may hold any character.
pub(crate) fn print_errors(errors: &Errors) {
    for diagnostic in &errors.0 {
        err!("{}", escape(&diagnostic.to_string()));
    }
}

/// `NAME  UPSTREAM  DOWNSTREAM  OPTIONS`, columns aligned; OPTIONS lists
/// what differs from the defaults.
fn table(fleet: &Fleet) -> String {
    let header = ["NAME", "UPSTREAM", "DOWNSTREAM", "OPTIONS"].map(String::from);
    let rows: Vec<[String; 4]> = std::iter::once(header)
        .chain(fleet.mirrors.iter().map(|m| {
            [
                m.name.clone(),
                m.upstream_shown(),
                m.downstream.to_string(),
                options(m),
            ]
            .map(|cell| escape(&cell).into_owned())
        }))
        .collect();
    let mut widths = [0; 3];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for [name, upstream, downstream, options] in &rows {
        let line = format!(
            "{name:<w0$}  {upstream:<w1$}  {downstream:<w2$}  {options}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The settings of `mirror` that are not the defaults, as `key=value`.
fn options(mirror: &Mirror) -> String {
    let mut options = Vec::new();
    if !mirror.include.is_empty() {
        options.push(format!("include={}", mirror.include.join(",")));
    }
    if !mirror.exclude.is_empty() {
        options.push(format!("exclude={}", mirror.exclude.join(",")));
    }
    if !mirror.prune {
        options.push("prune=false".to_owned());
    }
    if mirror.divergence != Divergence::default() {
        options.push(format!("divergence={}", mirror.divergence.name()));
    }
    for (set, key) in [
        (mirror.immutable_tags, "immutable_tags"),
        (mirror.atomic, "atomic"),
        (mirror.allow_mass_delete, "allow_mass_delete"),
        (mirror.create_missing, "create_missing"),
        (mirror.follow_head, "follow_head"),
    ] {
        if set {
            options.push(key.to_owned());
        }
    }
    for (duration, key) in durations(mirror) {
        if let Some(duration) = duration {
            options.push(format!("{key}={}", humantime::format_duration(duration)));
        }
    }
    if let Some(limit) = mirror.low_speed_limit {
        options.push(format!("low_speed_limit={limit}"));
    }
    for (secret, side) in [
        (&mirror.upstream_token, "upstream"),
        (&mirror.downstream_token, "downstream"),
        (&mirror.webhook_secret, "webhook"),
    ] {
        let key = if side == "webhook" { "secret" } else { "token" };
        match secret {
            Some(SecretRef::Env(name)) => options.push(format!("{side}_{key}_env={name}")),
            Some(SecretRef::File(path)) => {
                options.push(format!("{side}_{key}_file={}", path.display()))
            }
            None => {}
        }
    }
    for (app, side) in [
        (&mirror.upstream_app, "upstream"),
        (&mirror.downstream_app, "downstream"),
    ] {
        if let Some(app) = app {
            options.push(format!("{side}_github_app={}", app.issuer));
        }
    }
    if mirror.retries != DEFAULT_RETRIES {
        options.push(format!("retries={}", mirror.retries));
    }
    if mirror.interval != DEFAULT_INTERVAL {
        options.push(format!(
            "interval={}",
            humantime::format_duration(mirror.interval)
        ));
    }
    options.join(" ")
}

fn durations(mirror: &Mirror) -> [(Option<Duration>, &'static str); 4] {
    [
        (mirror.connect_timeout, "connect_timeout"),
        (mirror.idle_timeout, "idle_timeout"),
        (mirror.low_speed_time, "low_speed_time"),
        (mirror.max_duration, "max_duration"),
    ]
}

/// Every resolved key of every mirror. Token references are shown as
/// references; no secret is ever read for this.
fn json(fleet: &Fleet) -> serde_json::Value {
    let mirrors: Vec<serde_json::Value> = fleet
        .mirrors
        .iter()
        .map(|m| {
            let include: Vec<String> = if m.include.is_empty() {
                DEFAULT_INCLUDE.iter().map(|p| (*p).to_owned()).collect()
            } else {
                m.include.clone()
            };
            let token = |secret: &Option<SecretRef>| match secret {
                Some(SecretRef::Env(name)) => serde_json::json!({ "env": name }),
                Some(SecretRef::File(path)) => {
                    serde_json::json!({ "file": path.display().to_string() })
                }
                None => serde_json::Value::Null,
            };
            let mut value = serde_json::json!({
                "name": m.name,
                "upstream": m.upstream_shown(),
                "downstream": m.downstream.to_string(),
                "include": include,
                "exclude": m.exclude,
                "prune": m.prune,
                "divergence": m.divergence.name(),
                "immutable_tags": m.immutable_tags,
                "atomic": m.atomic,
                "allow_mass_delete": m.allow_mass_delete,
                "low_speed_limit": m.low_speed_limit,
                "upstream_token": token(&m.upstream_token),
                "downstream_token": token(&m.downstream_token),
                "upstream_github_app": m.upstream_app.as_ref().map(|a| a.issuer.to_string()),
                "downstream_github_app": m.downstream_app.as_ref().map(|a| a.issuer.to_string()),
                "create_missing": m.create_missing,
                "create_visibility": m.create_visibility.as_str(),
                "follow_head": m.follow_head,
                "retries": m.retries,
                "interval": humantime::format_duration(m.interval).to_string(),
                "webhook_secret": token(&m.webhook_secret),
                "origin": { "line": m.origin.line, "template": m.origin.template },
            });
            for (duration, key) in durations(m) {
                value[key] = duration
                    .map(|d| humantime::format_duration(d).to_string())
                    .into();
            }
            value
        })
        .collect();
    serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "config": fleet.path.display().to_string(),
        "mirrors": mirrors,
    })
}
