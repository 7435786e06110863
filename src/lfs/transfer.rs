//! One LFS object, streamed from upstream's download `href` into
//! downstream's upload `href` chunk by chunk, its sha256 checked on the
//! way: nothing is held but the chunk in flight, nothing touches the disk.
//!
//! The last chunk is held back until the whole content has hashed right:
//! an object whose bytes do not match its id (or that ends short, or runs
//! long) makes the upload's body fail before its end, so downstream never
//! stores it (its `Content-Length` is never reached).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

use super::api::{Action, Server, MEDIA_TYPE};
use super::pointer::Pointer;
use super::Error;

/// What went wrong inside the upload's body, for the error once the
/// upload fails because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    Mismatch { got: String },
    Short { got: u64 },
    Long,
    Download(String),
}

/// Checks a stream of chunks against `pointer` as they pass: each chunk is
/// let through once it is known not to complete a wrong object.
pub struct Checker {
    pointer: Pointer,
    hasher: ring::digest::Context,
    seen: u64,
}

impl Checker {
    pub fn new(pointer: &Pointer) -> Self {
        Self {
            pointer: pointer.clone(),
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            seen: 0,
        }
    }

    /// Takes `chunk`: `Ok` to send it on, `Err` when it makes the object
    /// wrong. Pure.
    pub fn take(&mut self, chunk: &[u8]) -> Result<(), Broken> {
        self.seen += chunk.len() as u64;
        if self.seen > self.pointer.size {
            return Err(Broken::Long);
        }
        self.hasher.update(chunk);
        if self.seen == self.pointer.size {
            let digest = self.hasher.clone().finish();
            let got: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            if got != self.pointer.oid {
                return Err(Broken::Mismatch { got });
            }
        }
        Ok(())
    }

    /// The stream ended: `Err` unless the whole object came.
    pub fn end(&self) -> Result<(), Broken> {
        if self.seen < self.pointer.size {
            Err(Broken::Short { got: self.seen })
        } else {
            Ok(())
        }
    }
}

/// Copies one object; the bytes moved.
pub async fn copy(
    up: &Server,
    down: &Server,
    pointer: &Pointer,
    download: &Action,
    upload: &Action,
    verify: Option<&Action>,
) -> Result<u64, Error> {
    let failed = |side: &'static str, what: &'static str, detail: String| Error::Object {
        oid: pointer.oid.clone(),
        side,
        what,
        detail,
    };
    let response = up
        .with_action(up.client().get(&download.href), download)
        .send()
        .await
        .map_err(|e| failed("upstream", "download", crate::relay::chain(&e)))?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        return Err(failed(
            "upstream",
            "download",
            format!("HTTP {status}{}", super::api::detail(&body)),
        ));
    }
    let broken: Arc<Mutex<Option<Broken>>> = Arc::default();
    let record = broken.clone();
    let mut checker = Checker::new(pointer);
    let mut source = response.bytes_stream();
    // One chunk in flight: the upload reads what the download gives.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let fail = |why: Broken| {
            *record.lock().expect("not poisoned") = Some(why);
            Err(std::io::Error::other(
                "the object is not what its pointer says",
            ))
        };
        while let Some(chunk) = source.next().await {
            let item = match chunk {
                Ok(chunk) => match checker.take(&chunk) {
                    Ok(()) => Ok(chunk),
                    Err(why) => fail(why),
                },
                Err(e) => fail(Broken::Download(crate::relay::chain(&e))),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
        if let Err(why) = checker.end() {
            let _ = tx.send(fail(why)).await;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let request = down
        .with_action(down.client().put(&upload.href), upload)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, pointer.size)
        .body(reqwest::Body::wrap_stream(body));
    let sent = request.send().await;
    if let Some(why) = broken.lock().expect("not poisoned").take() {
        return Err(match why {
            Broken::Mismatch { got } => Error::Corrupt {
                oid: pointer.oid.clone(),
                detail: format!("its content hashes to {got}"),
            },
            Broken::Short { got } => Error::Corrupt {
                oid: pointer.oid.clone(),
                detail: format!("upstream sent {got} of its {} bytes", pointer.size),
            },
            Broken::Long => Error::Corrupt {
                oid: pointer.oid.clone(),
                detail: format!("upstream sent more than its {} bytes", pointer.size),
            },
            Broken::Download(detail) => failed("upstream", "download", detail),
        });
    }
    let response = sent.map_err(|e| failed("downstream", "upload", crate::relay::chain(&e)))?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        return Err(failed(
            "downstream",
            "upload",
            format!("HTTP {status}{}", super::api::detail(&body)),
        ));
    }
    if let Some(verify) = verify {
        let body = serde_json::json!({ "oid": pointer.oid, "size": pointer.size }).to_string();
        let response = down
            .with_action(down.client().post(&verify.href), verify)
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .header(reqwest::header::ACCEPT, MEDIA_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| failed("downstream", "verify", crate::relay::chain(&e)))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            return Err(failed(
                "downstream",
                "verify",
                format!("HTTP {status}{}", super::api::detail(&body)),
            ));
        }
    }
    Ok(pointer.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer_of(content: &[u8]) -> Pointer {
        let digest = ring::digest::digest(&ring::digest::SHA256, content);
        Pointer {
            oid: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            size: content.len() as u64,
        }
    }

    #[test]
    fn lfs_checker_lets_a_right_object_through_and_stops_a_wrong_one_before_its_end() {
        let content = b"hello, large file";
        let pointer = pointer_of(content);
        let mut checker = Checker::new(&pointer);
        assert_eq!(checker.take(&content[..5]), Ok(()));
        assert_eq!(checker.take(&content[5..]), Ok(()));
        assert_eq!(checker.end(), Ok(()));

        let mut checker = Checker::new(&pointer);
        assert_eq!(checker.take(b"hello, LARGE"), Ok(()));
        assert!(matches!(
            checker.take(b" file"),
            Err(Broken::Mismatch { .. })
        ));

        let mut checker = Checker::new(&pointer);
        assert_eq!(checker.take(b"hello"), Ok(()));
        assert_eq!(checker.end(), Err(Broken::Short { got: 5 }));

        let mut checker = Checker::new(&pointer);
        assert_eq!(checker.take(b"hello, large file!"), Err(Broken::Long));
    }
}
