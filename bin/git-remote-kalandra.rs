//! `git-remote-kalandra`: the git remote helper for `kalandra::UP=>DOWN`.
//!
//! git runs `git-remote-kalandra <remote> <UP=>DOWN>` and talks to it on
//! stdin/stdout (gitremote-helpers(7)). stdout carries only the protocol,
//! flushed after every reply; people and logs get stderr.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context};
use kalandra::helper::command::{self, Command, MissingCapability, PushReply, PushSpec};
use kalandra::helper::options::{OptionReply, Options};
use kalandra::helper::pair::Pair;
use kalandra::helper::{fetch, list_downstream, list_upstream, proxy, push};
use kalandra::oid::ObjectId;
use kalandra::progress::{Color, Display, LogWriter, Progress, Side};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Stdin, Stdout};

mod helper_cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // git never passes options; a person asking for help or the version
    // gets them, through clap, which prints and exits.
    if matches!(
        args.get(1).map(String::as_str),
        Some("-h" | "--help" | "-V" | "--version")
    ) {
        helper_cli::command().get_matches_from(&args);
        return ExitCode::SUCCESS;
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("git-remote-kalandra: cannot start the async runtime: {e}");
            return ExitCode::from(128);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(Ending::Done) => ExitCode::SUCCESS,
        // Said and exited the way git's own die() does, so git prints the
        // same first line it would print against DOWN directly.
        Ok(Ending::Fatal(message)) => {
            eprintln!("fatal: {message}");
            ExitCode::from(128)
        }
        Err(error) => {
            let message = kalandra::url::mask_credentials(&format!("{error:#}"));
            eprintln!("git-remote-kalandra: error: {message}");
            ExitCode::from(128)
        }
    }
}

/// How a session ends without an error of the helper's own.
enum Ending {
    /// git ended the session.
    Done,
    /// The push must stop before anything is sent, as git's send-pack
    /// would: the helper answers nothing more and exits.
    Fatal(MissingCapability),
}

async fn run(args: &[String]) -> anyhow::Result<Ending> {
    let Some(url) = args.get(2).or(args.get(1)) else {
        bail!(
            "usage: git-remote-kalandra <remote> <UP=>DOWN> (git runs this for URLs of the form {})",
            kalandra::helper::pair::EXPECTED_FORM
        );
    };
    // Pair::parse reads the transport settings leniently; a bad value must
    // stop the helper before it talks to anyone, as it stops `kalandra`.
    kalandra::transport::TransportSettings::try_from_env()?;
    let text = url.strip_prefix("kalandra::").unwrap_or(url);
    if !text.contains("=>") && text.ends_with('=') {
        bail!(
            "the URL kalandra::{text} ends in '=': the shell took the '>' of '=>' as a \
             redirection (and wrote a file named after DOWN). Quote the URL: \
             'kalandra::UP=>DOWN'"
        );
    }
    let pair = Pair::parse(text).context("invalid kalandra:: URL")?;
    tracing::debug!(upstream = %pair.upstream, downstream = %pair.downstream, "remote helper started");

    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let mut options = Options {
        progress: std::io::stderr().is_terminal(),
        ..Options::default()
    };
    loop {
        let Some(line) = read_line(&mut stdin).await? else {
            return Ok(Ending::Done);
        };
        tracing::trace!(line, "command from git");
        match command::parse(&line)? {
            Command::Blank => return Ok(Ending::Done),
            Command::Capabilities => {
                let mut reply = command::CAPABILITIES.join("\n");
                reply.push_str("\n\n");
                reply_with(&mut stdout, &reply).await?;
            }
            Command::Option { name, value } => {
                let reply = options.apply(&name, &value);
                if let OptionReply::Error(message) = &reply {
                    // git prints only that the option is not supported.
                    eprintln!("git-remote-kalandra: error: {message}");
                }
                reply_with(&mut stdout, &format!("{}\n", reply.line())).await?;
            }
            Command::List { for_push } => {
                let list = if for_push {
                    list_downstream(&pair.downstream, &pair.settings).await?
                } else {
                    list_upstream(&pair.upstream, &pair.settings).await?
                };
                // git needs :object-format for a push to a sha256 pair even
                // when it did not ask; it accepts the line either way.
                reply_with(&mut stdout, &list.render(options.object_format || for_push)).await?;
            }
            Command::StatelessConnect { service } if service == "git-upload-pack" => {
                let outcome = proxy::stateless_connect(
                    &pair.upstream,
                    &pair.settings,
                    &mut stdin,
                    &mut stdout,
                )
                .await
                .context("proxying to upstream")?;
                match outcome {
                    proxy::Outcome::Done => return Ok(Ending::Done),
                    proxy::Outcome::Fallback => {
                        reply_with(&mut stdout, &format!("{}\n", command::FALLBACK)).await?
                    }
                }
            }
            Command::StatelessConnect { .. } | Command::Connect { .. } => {
                // Never a connection to receive-pack: git would build the
                // pack from local objects, which the pair must not do.
                reply_with(&mut stdout, &format!("{}\n", command::FALLBACK)).await?;
            }
            Command::Fetch { oid, .. } => {
                let mut wants = vec![oid];
                for line in read_batch(&mut stdin).await? {
                    if let Command::Fetch { oid, .. } = command::parse(&line)? {
                        wants.push(oid);
                    } else {
                        bail!("expected another fetch line in the batch, got {line:?}");
                    }
                }
                let wants = wants
                    .iter()
                    .map(|w| ObjectId::from_hex(w.as_bytes()))
                    .collect::<Result<Vec<_>, _>>()?;
                let progress = progress_for(&options);
                let keep = fetch::fetch(
                    &pair.upstream,
                    &pair.settings,
                    wants,
                    &progress,
                    options.progress,
                )
                .await?;
                progress.finish();
                let mut reply = keep.as_deref().map(command::lock_line).unwrap_or_default();
                reply.push('\n');
                reply_with(&mut stdout, &reply).await?;
            }
            Command::Push(first) => {
                let mut specs = vec![first];
                for line in read_batch(&mut stdin).await? {
                    if let Command::Push(spec) = command::parse(&line)? {
                        specs.push(spec);
                    } else {
                        bail!("expected another push line in the batch, got {line:?}");
                    }
                }
                let replies = match run_push(&pair, &specs, &options).await {
                    Ok(replies) => replies,
                    Err(missing) => return Ok(Ending::Fatal(missing)),
                };
                let mut out = String::new();
                for (dst, reply) in replies {
                    out.push_str(&reply.line(&dst));
                    out.push('\n');
                }
                out.push('\n');
                reply_with(&mut stdout, &out).await?;
            }
        }
    }
}

/// A push whose relay fails as a whole still gets one reply per ref, so
/// git reports each of them; the cause goes to stderr once. A push DOWN
/// cannot take at all gets no reply (see [`Ending::Fatal`]).
///
/// A helper cannot make git exit 128 after a push batch: git takes an
/// `error <ref>` reply as a rejected ref and a helper that quits as a failed
/// push, both exit 1. Quitting keeps git's output closest to its own: the
/// `fatal:` line, then "failed to push some refs", and no ref lines.
async fn run_push(
    pair: &Pair,
    specs: &[PushSpec],
    options: &Options,
) -> Result<Vec<(String, PushReply)>, MissingCapability> {
    let progress = progress_for(options);
    // DOWN's hook output shows as git shows it from a server it pushes to.
    progress.echo_remote_lines(Side::Downstream);
    let result = push::push(pair, specs, options, &progress).await;
    progress.finish();
    match result {
        Ok(replies) => Ok(replies),
        Err(push::Error::Unsupported(missing)) => Err(missing),
        Err(push::Error::Relay(error)) => {
            let message =
                kalandra::url::mask_credentials(&format!("{:#}", anyhow::Error::from(error)));
            eprintln!("git-remote-kalandra: error: {message}");
            Ok(specs
                .iter()
                .map(|s| (s.dst.clone(), PushReply::Error(message.clone())))
                .collect())
        }
    }
}

fn progress_for(options: &Options) -> Progress {
    if options.progress && options.verbosity > 0 {
        // git asks for progress on a terminal, or anywhere with --progress:
        // a bar on the one, plain periodic lines on the other.
        if std::io::stderr().is_terminal() {
            Progress::new(true)
        } else {
            Progress::with_display(Display::plain_from_env())
        }
    } else {
        Progress::hidden()
    }
}

async fn read_line(stdin: &mut BufReader<Stdin>) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if stdin
        .read_line(&mut line)
        .await
        .context("reading from git")?
        == 0
    {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()))
}

/// The rest of a batch, up to its blank line.
async fn read_batch(stdin: &mut BufReader<Stdin>) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    while let Some(line) = read_line(stdin).await? {
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    Ok(lines)
}

async fn reply_with(stdout: &mut Stdout, text: &str) -> anyhow::Result<()> {
    tracing::trace!(reply = text, "reply to git");
    stdout
        .write_all(text.as_bytes())
        .await
        .context("writing to git")?;
    stdout.flush().await.context("writing to git")?;
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KALANDRA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter::default)
        .with_ansi(Color::Auto.for_stderr())
        .with_target(false)
        .init();
}
