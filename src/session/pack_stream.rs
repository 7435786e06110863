//! The pack as upload-pack sends it: side-band packets, demultiplexed.

use crate::progress::{Progress, Side};
use crate::session::upload_pack::{Error, UploadPack};
use crate::wire::fetch;
use crate::wire::pkt::{self, Packet};
use crate::wire::sideband::{self, Band};

/// The pack as it arrives on side-band 1, with progress from band 2
/// passed on and a band-3 message turned into an error.
pub struct PackStream<'a> {
    session: &'a mut UploadPack,
    progress: &'a Progress,
    v0_preamble: bool,
}

/// What one side-band packet asks of the pack stream, owned so that the
/// reader's buffer is free again.
enum Step {
    Data,
    Skip,
    Progress(Vec<u8>),
    Fail(Error),
}

impl<'a> PackStream<'a> {
    pub(super) fn new(
        session: &'a mut UploadPack,
        progress: &'a Progress,
        v0_preamble: bool,
    ) -> Self {
        Self {
            session,
            progress,
            v0_preamble,
        }
    }

    /// The next piece of pack data; `None` once the server has ended the
    /// pack cleanly with a flush-pkt. EOF before that flush is an error, so
    /// a server that dies mid-pack is never mistaken for a finished one.
    pub async fn next_chunk(&mut self) -> Result<Option<&[u8]>, Error> {
        loop {
            let session = &mut *self.session;
            let step = match session.reader.next().await {
                Ok(Some(Packet::Data(data))) => classify(data, self.v0_preamble, &session.repo),
                Ok(Some(Packet::Flush)) => return Ok(None),
                Ok(Some(other)) => Step::Fail(Error::Unexpected {
                    repo: session.repo.clone(),
                    expected: "side-band data",
                    found: format!("{other:?}"),
                }),
                Ok(None) => {
                    return Err(session.closed(crate::session::upload_pack::MID_PACK).await)
                }
                Err(source) => return Err(session.read_error(source).await),
            };
            match step {
                Step::Data => {
                    self.v0_preamble = false;
                    // Skip the band byte; the payload stays in the reader's buffer.
                    return Ok(Some(&self.session.reader.last_payload()[1..]));
                }
                Step::Skip => {}
                Step::Progress(text) => {
                    self.v0_preamble = false;
                    self.progress.server_message(Side::Upstream, &text);
                }
                Step::Fail(error) => return Err(error),
            }
        }
    }
}

fn classify(data: &[u8], v0_preamble: bool, repo: &str) -> Step {
    let server_error = |message: &[u8]| {
        Step::Fail(Error::Server {
            repo: repo.to_owned(),
            message: String::from_utf8_lossy(crate::wire::trim_newline(message))
                .trim()
                .to_owned(),
        })
    };
    if let Some(message) = pkt::error_line(data) {
        return server_error(message);
    }
    if v0_preamble && fetch::is_v0_negotiation_line(data) {
        return Step::Skip;
    }
    match sideband::demux(data) {
        Ok(Band::Data(_)) => Step::Data,
        Ok(Band::Progress(text)) => Step::Progress(text.to_vec()),
        Ok(Band::Fatal(text)) => server_error(text),
        Err(source) => Step::Fail(Error::Sideband {
            repo: repo.to_owned(),
            source,
        }),
    }
}
