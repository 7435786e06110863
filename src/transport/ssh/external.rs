//! `GIT_SSH_COMMAND` and `GIT_SSH`: users who configured git to reach a
//! host with their own ssh command expect Kalandra to do the same.

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

/// The command git would use, from the environment.
pub struct External {
    variable: &'static str,
    command: String,
    /// `GIT_SSH_COMMAND` goes through the shell; `GIT_SSH` is a program.
    shell: bool,
    variant: Variant,
}

pub fn from_env() -> Option<External> {
    let (variable, command, shell) = match std::env::var("GIT_SSH_COMMAND") {
        Ok(c) if !c.trim().is_empty() => ("GIT_SSH_COMMAND", c, true),
        _ => match std::env::var("GIT_SSH") {
            Ok(c) if !c.trim().is_empty() => ("GIT_SSH", c, false),
            _ => return None,
        },
    };
    let variant = variant(&command, shell);
    Some(External {
        variable,
        command,
        shell,
        variant,
    })
}

/// `GIT_SSH_VARIANT` if set, else guessed from the program's name as git
/// does. git probes an unknown program with `-G`; Kalandra assumes an
/// unknown one (a wrapper script, say) takes OpenSSH's options.
fn variant(command: &str, shell: bool) -> Variant {
    if let Ok(forced) = std::env::var("GIT_SSH_VARIANT") {
        return match forced.as_str() {
            "plink" | "putty" => Variant::Plink,
            "tortoiseplink" => Variant::TortoisePlink,
            "simple" => Variant::Simple,
            _ => Variant::Ssh,
        };
    }
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
