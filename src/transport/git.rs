//! `git://`: git's own daemon protocol, a TCP stream opened by one request
//! pkt-line (gitprotocol-pack, "Git Transport"). No authentication and no
//! encryption, so it is normally used read-only.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{ConnectOptions, Connection, Error, Service};
use crate::wire::pkt;

/// git daemon's port.
const DEFAULT_PORT: u16 = 9418;

pub(super) async fn connect(
    host: &str,
    port: Option<u16>,
    path: &str,
    service: Service,
    options: &ConnectOptions,
) -> Result<Connection, Error> {
    let port = port.unwrap_or(DEFAULT_PORT);
    let host_port = format!("{host}:{port}");
    // Built first: a path too long for the request pkt-line fails before
    // any connection is made.
    let request = request(
        service,
        path,
        &host_port,
        options.protocol_v2 && service == Service::UploadPack,
    )
    .map_err(|source| Error::GitConnect {
        host_port: host_port.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, source),
    })?;
    let limit: Duration = options.settings.connect_timeout;
    let stream = tokio::time::timeout(limit, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Error::GitConnect {
            host_port: host_port.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", limit.as_secs()),
            ),
        })?
        .map_err(|source| Error::GitConnect {
            host_port: host_port.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    writer
        .write_all(&request)
        .await
        .map_err(|source| Error::GitConnect { host_port, source })?;
    Ok(Connection {
        reader: Box::pin(reader),
        writer: Box::pin(writer),
        process: None,
    })
}

/// `git-upload-pack /path\0host=<host:port>\0` and, for protocol v2, the
/// extra parameter `\0version=2\0` after a second NUL. The whole request
/// is one pkt-line, so a path of some 65 000 bytes does not fit.
fn request(
    service: Service,
    path: &str,
    host_port: &str,
    protocol_v2: bool,
) -> Result<Vec<u8>, pkt::Error> {
    let mut line = format!("{} {path}\0host={host_port}\0", service.name()).into_bytes();
    if protocol_v2 {
        line.extend_from_slice(b"\0version=2\0");
    }
    let mut out = Vec::new();
    pkt::encode_data(&line, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_as_git_sends_it() {
        assert_eq!(
            request(Service::UploadPack, "/r.git", "h:9418", true).expect("fits"),
            b"0032git-upload-pack /r.git\0host=h:9418\0\0version=2\0".to_vec()
        );
        assert_eq!(
            request(Service::ReceivePack, "/r.git", "h:1", false).expect("fits"),
            b"0025git-receive-pack /r.git\0host=h:1\0".to_vec()
        );
    }

    #[test]
    fn a_path_too_long_for_the_request_is_an_error_not_a_panic() {
        let path = format!("/{}", "p".repeat(pkt::MAX_DATA_LEN));
        let err = request(Service::UploadPack, &path, "h:9418", true).expect_err("too long");
        assert!(err.to_string().contains("git-upload-pack /ppp"), "{err}");
    }
}
