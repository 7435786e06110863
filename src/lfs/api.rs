//! The LFS batch API (git-lfs `docs/api/batch.md`), `basic` transfers
//! only: one `POST {endpoint}/objects/batch` says, per object, where to
//! download it from or upload it to.
//!
//! Quirks: the media type is `application/vnd.git-lfs+json` both ways; an
//! `upload` answer without `actions` for an object means the server has it
//! already; a per-object `error` (404 for an object the server lacks, 422
//! for a bad size) does not fail the whole request; `header` values of an
//! action are sent as given, and hold credentials (never logged).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Client;
use url::Url;

use super::pointer::Pointer;
use super::Error;
use crate::terminal::escape;
use crate::transport::Service;

pub const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// Objects per batch request, as git-lfs sends them.
pub const BATCH_SIZE: usize = 100;

/// `download` or `upload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Download,
    Upload,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Upload => "upload",
        }
    }
}

/// One action of an answer: where to send the request, with which
/// headers. `Debug` leaves the headers out: they carry credentials.
#[derive(Clone, serde::Deserialize)]
pub struct Action {
    pub href: String,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Action")
            .field("href", &crate::url::mask_credentials(&self.href))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Actions {
    pub download: Option<Action>,
    pub upload: Option<Action>,
    pub verify: Option<Action>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ObjectError {
    pub code: u16,
    #[serde(default)]
    pub message: String,
}

/// One object of an answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Answer {
    pub oid: String,
    pub size: u64,
    #[serde(default)]
    pub actions: Option<Actions>,
    #[serde(default)]
    pub error: Option<ObjectError>,
}

#[derive(Debug, serde::Deserialize)]
struct Response {
    #[serde(default)]
    transfer: Option<String>,
    objects: Vec<Answer>,
}

/// The request body for `objects`. Pure.
pub fn request_body(operation: Operation, objects: &[Pointer]) -> serde_json::Value {
    serde_json::json!({
        "operation": operation.as_str(),
        "transfers": ["basic"],
        "objects": objects
            .iter()
            .map(|p| serde_json::json!({ "oid": p.oid, "size": p.size }))
            .collect::<Vec<_>>(),
        "hash_algo": "sha256",
    })
}

/// The objects of an answer, checked: a `basic` transfer, and only the
/// objects asked for. Pure.
pub fn parse_answer(body: &[u8], asked: &[Pointer]) -> Result<Vec<Answer>, String> {
    let response: Response = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(transfer) = response.transfer.as_deref().filter(|t| *t != "basic") {
        return Err(format!(
            "the server chose the transfer {transfer:?}, not \"basic\""
        ));
    }
    if let Some(stray) = response
        .objects
        .iter()
        .find(|a| !asked.iter().any(|p| p.oid == a.oid))
    {
        return Err(format!(
            "it answered for {} , which was not asked for",
            stray.oid
        ));
    }
    Ok(response.objects)
}

/// One side's LFS server: its endpoint, the client, and the credentials
/// the git side of that side uses.
pub struct Server {
    pub endpoint: Url,
    pub side: &'static str,
    client: Client,
    credentials: Option<(String, String)>,
    /// Sent with every batch request (`git-lfs-authenticate`'s headers).
    headers: BTreeMap<String, String>,
}

impl Server {
    pub async fn new(
        of: &super::Side<'_>,
        side: &'static str,
        service: Service,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        let endpoint = of.endpoint.clone();
        let client = crate::transport::lfs_client(&endpoint, connect_timeout)
            .await
            .map_err(|source| Error::Client {
                endpoint: endpoint.to_string(),
                source,
            })?;
        // The git URL's user and password, else the side's token; none when
        // git-lfs-authenticate gave an Authorization header.
        let authorized = of
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case(AUTHORIZATION.as_str()));
        let credentials = (!authorized)
            .then(|| crate::transport::first_credentials(of.repo, service, of.token))
            .flatten();
        Ok(Self {
            headers: of.headers.clone(),
            endpoint,
            side,
            client,
            credentials,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One batch request for `objects` (at most [`BATCH_SIZE`]). A 401
    /// is tried once more with the credentials netrc or git's helpers
    /// give.
    pub async fn batch(
        &mut self,
        operation: Operation,
        objects: &[Pointer],
    ) -> Result<Vec<Answer>, Error> {
        let url = super::endpoint::join(&self.endpoint, "objects/batch");
        let body = request_body(operation, objects).to_string();
        let mut retried = false;
        loop {
            let response = self.post_batch(&url, body.clone()).await?;
            let status = response.status();
            let answer = response.bytes().await.map_err(|source| Error::Request {
                side: self.side,
                url: url.to_string(),
                source,
            })?;
            if status == reqwest::StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                if let Some(found) = crate::transport::credentials_after_401(&url).await {
                    self.credentials = Some(found);
                    continue;
                }
            }
            if !status.is_success() {
                return Err(Error::Batch {
                    side: self.side,
                    url: url.to_string(),
                    status: status.as_u16(),
                    detail: detail(&answer),
                });
            }
            return parse_answer(&answer, objects).map_err(|reason| Error::Answer {
                side: self.side,
                url: url.to_string(),
                reason,
            });
        }
    }

    /// Whether an LFS server answers at the endpoint: a batch request for
    /// an object no one has gets 2xx, or an error in LFS's media type (some
    /// servers answer 404 or 422 then); any other server answers otherwise.
    /// Refused credentials are an error.
    pub async fn probe(&mut self) -> Result<bool, Error> {
        let url = super::endpoint::join(&self.endpoint, "objects/batch");
        let nobody = Pointer {
            oid: "0".repeat(64),
            size: 1,
        };
        let body = request_body(Operation::Download, &[nobody]).to_string();
        let response = self.post_batch(&url, body).await?;
        let status = response.status();
        let lfs_answer = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(MEDIA_TYPE));
        if matches!(status.as_u16(), 401 | 403) {
            let answer = response.bytes().await.unwrap_or_default();
            return Err(Error::Batch {
                side: self.side,
                url: url.to_string(),
                status: status.as_u16(),
                detail: detail(&answer),
            });
        }
        Ok(status.is_success() || lfs_answer)
    }

    /// `POST url` of a batch `body`, with the side's credentials.
    async fn post_batch(&self, url: &Url, body: String) -> Result<reqwest::Response, Error> {
        let mut request = self
            .client
            .post(url.clone())
            .header(ACCEPT, MEDIA_TYPE)
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .body(body);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        request.send().await.map_err(|source| Error::Request {
            side: self.side,
            url: url.to_string(),
            source,
        })
    }

    /// `request` with an action's headers; the side's credentials when
    /// the action brings none and goes to the endpoint's own host.
    pub fn with_action(
        &self,
        mut request: reqwest::RequestBuilder,
        action: &Action,
    ) -> reqwest::RequestBuilder {
        let has_auth = action
            .header
            .keys()
            .any(|k| k.eq_ignore_ascii_case(AUTHORIZATION.as_str()));
        for (name, value) in &action.header {
            request = request.header(name, value);
        }
        let same_host =
            Url::parse(&action.href).is_ok_and(|href| href.origin() == self.endpoint.origin());
        if let (false, true, Some((user, password))) = (has_auth, same_host, &self.credentials) {
            request = request.basic_auth(user, Some(password));
        }
        request
    }
}

/// An LFS error body, `{"message": ...}`, as a suffix: escaped and cut.
pub fn detail(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned));
    match message {
        Some(m) => format!(" ({})", escape(&m.chars().take(300).collect::<String>())),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(oid_digit: char, size: u64) -> Pointer {
        Pointer {
            oid: oid_digit.to_string().repeat(64),
            size,
        }
    }

    #[test]
    fn lfs_batch_request_is_the_specs() {
        let body = request_body(Operation::Upload, &[p('a', 5)]);
        assert_eq!(
            body,
            serde_json::json!({
                "operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
                "objects": [{ "oid": "a".repeat(64), "size": 5 }],
            })
        );
    }

    #[test]
    fn lfs_batch_answers_are_read_and_checked() {
        let asked = [p('a', 5), p('b', 6)];
        let body = format!(
            r#"{{"transfer":"basic","objects":[
              {{"oid":"{a}","size":5,"actions":{{"upload":{{"href":"https://s/a","header":{{"Authorization":"Bearer x"}}}},"verify":{{"href":"https://s/v"}}}}}},
              {{"oid":"{b}","size":6}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64)
        );
        let answers = parse_answer(body.as_bytes(), &asked).expect("valid");
        let upload = answers[0]
            .actions
            .as_ref()
            .and_then(|a| a.upload.as_ref())
            .expect("an upload action");
        assert_eq!(upload.href, "https://s/a");
        assert!(!format!("{upload:?}").contains("Bearer"));
        assert!(answers[1].actions.is_none());
        let stray = body.replace(&"b".repeat(64), &"c".repeat(64));
        assert!(parse_answer(stray.as_bytes(), &asked).is_err());
        let other = r#"{"transfer":"tus","objects":[]}"#;
        assert!(parse_answer(other.as_bytes(), &asked)
            .expect_err("not basic")
            .contains("tus"));
        let error = format!(
            r#"{{"objects":[{{"oid":"{}","size":5,"error":{{"code":404,"message":"Object does not exist"}}}}]}}"#,
            "a".repeat(64)
        );
        let answers = parse_answer(error.as_bytes(), &asked).expect("valid");
        assert_eq!(answers[0].error.as_ref().map(|e| e.code), Some(404));
    }
}
