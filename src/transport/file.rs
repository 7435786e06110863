//! `file://` and plain paths: run the git service on this machine.

use std::path::Path;

use tokio::process::Command;

use super::{process::ServerProcess, ConnectOptions, Connection, Error, Service};

pub(super) fn connect(
    path: &Path,
    service: Service,
    options: &ConnectOptions,
) -> Result<Connection, Error> {
    // Checked here for a clear message; git's own would only come on stderr
    // once the process has already failed.
    if !path.exists() {
        return Err(Error::NotFound {
            path: path.display().to_string(),
        });
    }
    let subcommand = match service {
        Service::UploadPack => "upload-pack",
        Service::ReceivePack => "receive-pack",
    };
    let mut command = Command::new("git");
    if service == Service::UploadPack {
        // `filter` is a server's guard against costly requests; here the
        // server is this process's own child, so let the ancestry check's
        // commits-only fetch through (crate::ancestry).
        command.args(["-c", "uploadpack.allowFilter=true"]);
    }
    command.arg(subcommand).arg("--").arg(path);
    let protocol = (options.protocol_v2 && service == Service::UploadPack).then_some("version=2");
    ServerProcess::spawn(command, protocol, &path.display().to_string())
}
