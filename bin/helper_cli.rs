//! The remote helper's command line as people see it: `--help`,
//! `--version` and its man page. git itself runs the helper as
//! `git-remote-kalandra <remote> <url>` and never passes options; this
//! description is shared by the helper and by `kalandra manpages`.

/// The help text of `git-remote-kalandra`.
pub fn command() -> clap::Command {
    clap::Command::new("git-remote-kalandra")
        .version(env!("CARGO_PKG_VERSION"))
        .about("git remote helper for kalandra::UP=>DOWN URLs: reads from UP, pushes make DOWN match with UP's objects")
        .long_about(
            "git remote helper for kalandra::UP=>DOWN URLs.\n\n\
             git runs it for any URL that starts with `kalandra::`; it is not meant to be run by \
             hand. Reads (clone, fetch, ls-remote) go to UP. `git push` updates DOWN's refs, \
             and the objects come from UP, relayed without a copy on this machine.\n\n\
             Quote the URL: in a shell, `>` is a redirection, so an unquoted \
             kalandra::UP=>DOWN reaches git as kalandra::UP= and creates a file named DOWN.\n\n\
             For example: git push 'kalandra::https://a.example/app.git=>/srv/app.git' \
             HEAD:refs/heads/main\n\n\
             Settings come from the environment (KALANDRA_CONNECT_TIMEOUT, \
             KALANDRA_IDLE_TIMEOUT, KALANDRA_UPSTREAM_TOKEN, ...; listed in `man kalandra`) \
             and from the user's git and ssh configuration, as for `kalandra sync`.",
        )
        .override_usage("git <clone|fetch|push|ls-remote> 'kalandra::UP=>DOWN' ...\n       git-remote-kalandra REMOTE 'UP=>DOWN'")
        .arg(
            clap::Arg::new("remote")
                .value_name("REMOTE")
                .help("The remote's name, or the URL when git has no name for it"),
        )
        .arg(
            clap::Arg::new("url")
                .value_name("URL")
                .help("UP=>DOWN, with or without the kalandra:: prefix"),
        )
}
