//! Whose `~/.ssh`: OpenSSH takes the home directory from the passwd entry
//! of the user running it (`getpwuid`), not from `$HOME`, so a service whose
//! `$HOME` points elsewhere still uses the account's keys and known hosts.
//! Kalandra does the same. `KALANDRA_SSH_HOME` replaces that directory for
//! everything ssh reads (`~/.ssh/config`, `known_hosts`, default keys, `~`
//! and `%d` in the config), for tests and for running as one account with
//! another's ssh files.

use std::path::PathBuf;

/// The variable that replaces the passwd home for ssh.
pub const HOME_ENV: &str = "KALANDRA_SSH_HOME";

/// The local account, as ssh sees it.
#[derive(Debug, Clone)]
pub struct Account {
    pub home: PathBuf,
    /// `%u`, `Match localuser`, the default remote user: `$USER`, else
    /// `$LOGNAME`, else the passwd name. OpenSSH takes the passwd name;
    /// Kalandra keeps honouring `USER`, which deployments set to choose the
    /// user for URLs without one (a systemd dynamic user is named after
    /// its unit).
    pub user: String,
}

impl Account {
    pub fn current() -> Self {
        let entry = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten();
        let user = std::env::var("USER")
            .ok()
            .or_else(|| std::env::var("LOGNAME").ok())
            .filter(|name| !name.is_empty())
            .or_else(|| entry.as_ref().map(|u| u.name.clone()))
            .unwrap_or_else(|| "root".to_owned());
        let home = match std::env::var_os(HOME_ENV) {
            Some(home) if !home.is_empty() => PathBuf::from(home),
            // Without a passwd entry (a container started with a bare uid)
            // OpenSSH gives up; $HOME is the better guess than nothing.
            _ => entry
                .map(|u| u.dir)
                .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        Account { home, user }
    }
}
