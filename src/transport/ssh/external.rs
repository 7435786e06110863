//! `GIT_SSH_COMMAND`, `core.sshCommand` and `GIT_SSH`: users who configured
//! git to reach a host with their own ssh command expect Kalandra to do the
//! same. git's order (`connect.c`, `get_ssh_command`): `GIT_SSH_COMMAND`,
//! then `core.sshCommand`, then `GIT_SSH`; the first two run through the
//! shell, `GIT_SSH` is a program. git config is read with `git config`
//! itself, so includes, conditional includes and the repository's own
//! config (the remote helper runs inside one) count as they do for git.

use tokio::process::Command;

use super::Error;
use crate::transport::{Connection, ServerProcess};

/// How the command takes its arguments (git's `ssh.variant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// OpenSSH: `-p PORT`, `-o SendEnv=GIT_PROTOCOL`.
    Ssh,
    /// PuTTY's plink: `-P PORT`.
    Plink,
    TortoisePlink,
    /// Only `[user@]host command`.
    Simple,
}

/// The command git would use.
pub struct External {
    variable: &'static str,
    command: String,
    /// A command line goes through the shell; `GIT_SSH` is a program.
    shell: bool,
    variant: Variant,
}

/// What decides the command, as read from the environment and git config.
#[derive(Debug, Default, Clone)]
struct Settings {
    git_ssh_command: Option<String>,
    core_ssh_command: Option<String>,
    git_ssh: Option<String>,
    git_ssh_variant: Option<String>,
    ssh_variant: Option<String>,
}

pub async fn from_settings() -> Option<External> {
    let env = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut settings = Settings {
        git_ssh_command: env("GIT_SSH_COMMAND"),
        git_ssh: env("GIT_SSH"),
        git_ssh_variant: env("GIT_SSH_VARIANT"),
        ..Settings::default()
    };
    if settings.git_ssh_command.is_none() {
        settings.core_ssh_command = git_config("core.sshCommand").await;
    }
    if settings.git_ssh_variant.is_none() {
        settings.ssh_variant = git_config("ssh.variant").await;
    }
    choose(&settings)
}

/// `git config --get <key>`, or `None` if unset or git cannot be run.
async fn git_config(key: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["config", "--get", key])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let value = String::from_utf8(out.stdout).ok()?;
    let value = value.trim_end_matches('\n');
    (!value.trim().is_empty()).then(|| value.to_owned())
}

fn choose(settings: &Settings) -> Option<External> {
    let (variable, command, shell) = if let Some(c) = &settings.git_ssh_command {
        ("GIT_SSH_COMMAND", c.clone(), true)
    } else if let Some(c) = &settings.core_ssh_command {
        ("core.sshCommand", c.clone(), true)
    } else if let Some(c) = &settings.git_ssh {
        ("GIT_SSH", c.clone(), false)
    } else {
        return None;
    };
    let forced = settings
        .git_ssh_variant
        .as_deref()
        .or(settings.ssh_variant.as_deref());
    let variant = match forced.map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => variant(&command, shell),
        Some("plink" | "putty") => Variant::Plink,
        Some("tortoiseplink") => Variant::TortoisePlink,
        Some("simple") => Variant::Simple,
        // "ssh", and what git does with an unknown value too.
        Some(_) => Variant::Ssh,
    };
    Some(External {
        variable,
        command,
        shell,
        variant,
    })
}

/// The variant guessed from the program's name as git does. git probes an
/// unknown program with `-G`; Kalandra assumes an unknown one (a wrapper
/// script, say) takes OpenSSH's options.
fn variant(command: &str, shell: bool) -> Variant {
    let program = if shell {
        command.split_whitespace().next().unwrap_or_default()
    } else {
        command
    };
    let name = program
        .rsplit('/')
        .next()
        .unwrap_or(program)
        .to_ascii_lowercase();
    let name = name.strip_suffix(".exe").unwrap_or(&name);
    match name {
        "plink" => Variant::Plink,
        "tortoiseplink" => Variant::TortoisePlink,
        _ => Variant::Ssh,
    }
}

impl External {
    pub fn connect(
        &self,
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        remote_command: &str,
        protocol_v2: bool,
        repo: &str,
    ) -> Result<Connection, Error> {
        let mut args: Vec<String> = Vec::new();
        match self.variant {
            Variant::Ssh => {
                if protocol_v2 {
                    args.extend(["-o".into(), "SendEnv=GIT_PROTOCOL".into()]);
                }
                if let Some(port) = port {
                    args.extend(["-p".into(), port.to_string()]);
                }
            }
            Variant::Plink | Variant::TortoisePlink => {
                if self.variant == Variant::TortoisePlink {
                    args.push("-batch".into());
                }
                if let Some(port) = port {
                    args.extend(["-P".into(), port.to_string()]);
                }
            }
            Variant::Simple => {
                if port.is_some() {
                    return Err(Error::PortUnsupported {
                        variable: self.variable,
                    });
                }
            }
        }
        args.push(match user {
            Some(user) => format!("{user}@{host}"),
            None => host.to_owned(),
        });
        args.push(remote_command.to_owned());
        let command = if self.shell {
            // As git runs it: the user's text, then the arguments as "$@".
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("{} \"$@\"", self.command))
                .arg(&self.command)
                .args(&args);
            command
        } else {
            let mut command = Command::new(&self.command);
            command.args(&args);
            command
        };
        tracing::debug!(
            variable = self.variable,
            ?args,
            "running the configured ssh command"
        );
        let protocol = protocol_v2.then_some("version=2");
        ServerProcess::spawn(command, protocol, repo).map_err(|e| match e {
            crate::transport::Error::Spawn { source, .. } => Error::External {
                variable: self.variable,
                source,
            },
            other => Error::External {
                variable: self.variable,
                source: std::io::Error::other(other.to_string()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        Settings {
            git_ssh_command: get("GIT_SSH_COMMAND"),
            core_ssh_command: get("core.sshCommand"),
            git_ssh: get("GIT_SSH"),
            git_ssh_variant: get("GIT_SSH_VARIANT"),
            ssh_variant: get("ssh.variant"),
        }
    }

    #[test]
    fn precedence_as_git() {
        let all = [
            ("GIT_SSH_COMMAND", "env-cmd"),
            ("core.sshCommand", "cfg-cmd"),
            ("GIT_SSH", "/bin/prog"),
        ];
        let chosen = |pairs: &[(&str, &str)]| choose(&settings(pairs)).map(|e| e.variable);
        assert_eq!(chosen(&all), Some("GIT_SSH_COMMAND"));
        assert_eq!(chosen(&all[1..]), Some("core.sshCommand"));
        assert_eq!(chosen(&all[2..]), Some("GIT_SSH"));
        assert_eq!(chosen(&[]), None);
        let e = choose(&settings(&all[1..])).expect("chosen");
        assert!(e.shell, "core.sshCommand runs through the shell");
        assert!(!choose(&settings(&all[2..])).expect("chosen").shell);
    }

    #[test]
    fn variant_env_over_config_over_name() {
        let v = |pairs: &[(&str, &str)]| choose(&settings(pairs)).expect("chosen").variant;
        assert_eq!(
            v(&[("GIT_SSH", "/x/plink"), ("ssh.variant", "ssh")]),
            Variant::Ssh
        );
        assert_eq!(
            v(&[
                ("GIT_SSH", "/x/plink"),
                ("ssh.variant", "ssh"),
                ("GIT_SSH_VARIANT", "auto")
            ]),
            Variant::Plink
        );
        assert_eq!(
            v(&[("core.sshCommand", "ssh"), ("ssh.variant", "simple")]),
            Variant::Simple
        );
        assert_eq!(
            v(&[("GIT_SSH", "ssh"), ("ssh.variant", "putty")]),
            Variant::Plink
        );
        assert_eq!(
            v(&[("GIT_SSH", "ssh"), ("GIT_SSH_VARIANT", "tortoiseplink")]),
            Variant::TortoisePlink
        );
    }

    #[test]
    fn variant_from_the_program_name() {
        assert_eq!(variant("ssh -i key", true), Variant::Ssh);
        assert_eq!(variant("/usr/bin/plink.exe -batch", true), Variant::Plink);
        assert_eq!(variant("/opt/TortoisePlink", false), Variant::TortoisePlink);
        assert_eq!(
            variant("/usr/local/bin/my-ssh-wrapper", false),
            Variant::Ssh
        );
    }
}
