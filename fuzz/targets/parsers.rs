//! One AFL++ target for every parser of bytes that come from a server, from git or from
//! the user. The first input byte picks the parser; the rest is its input. A panic, an
//! overflow (debug assertions are on in `cargo afl build`) or a hang is a finding.

use kalandra::helper::{command, options::Options, quote};
use kalandra::pkt_io::PacketReader;
use kalandra::transport::ssh::config as ssh_config;
use kalandra::url::{mask_credentials, RepoUrl};
use kalandra::wire::advertisement::AdvertisementParser;
use kalandra::wire::pkt::{self, Decoded, Packet};
use kalandra::wire::report::ReportParser;
use kalandra::wire::{fetch, sideband, v2};

/// The data payloads of the pkt-lines at the start of `bytes`.
fn payloads(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Ok(Decoded::Complete { packet, consumed }) = pkt::decode(bytes) {
        if let Packet::Data(data) = packet {
            out.push(data);
        }
        bytes = &bytes[consumed..];
    }
    out
}

fn packet_reader(input: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut reader = PacketReader::new(input);
        while let Ok(Some(_)) = reader.next().await {}
    });
}

fn run(data: &[u8]) {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(input);
    match which % 10 {
        0 => packet_reader(input),
        1 => {
            let mut parser = AdvertisementParser::new();
            for line in payloads(input) {
                if parser.push_line(line).is_err() {
                    break;
                }
            }
            let _ = parser.finish();
        }
        2 => {
            for line in payloads(input).into_iter().chain([input]) {
                let _ = v2::is_version_2(line);
                let _ = v2::parse_capability_line(line);
                let _ = v2::parse_ls_refs_line(line);
            }
        }
        3 => {
            for line in payloads(input).into_iter().chain([input]) {
                let _ = fetch::parse_section_header(line);
                let _ = fetch::parse_ack_line(line);
                let _ = fetch::is_v0_negotiation_line(line);
                if let Ok(sideband::Band::Progress(d)) = sideband::demux(line) {
                    let _ = sideband::progress_lines(d).count();
                }
            }
        }
        4 => {
            let mut inner = Vec::new();
            for line in payloads(input) {
                if let Ok(sideband::Band::Data(d)) = sideband::demux(line) {
                    inner.extend_from_slice(d);
                }
            }
            for bytes in [&inner[..], input] {
                let mut parser = ReportParser::new();
                for line in payloads(bytes) {
                    if parser.push_line(line).is_err() {
                        break;
                    }
                }
                let _ = parser.finish();
            }
        }
        5 => {
            for line in text.lines() {
                let _ = command::parse(line);
            }
        }
        6 => {
            let mut options = Options::default();
            if let Some((name, value)) = text.split_once(' ') {
                let _ = options.apply(name, value).line();
            }
            let _ = quote::unquote_c_style(input);
            let _ = quote::option_value(&text);
        }
        7 => {
            let masked = mask_credentials(&text);
            let _ = masked.len();
            if let Ok(url) = RepoUrl::parse(&text) {
                let _ = url.to_string();
            }
        }
        8 => {
            let (host, config) = text.split_once('\n').unwrap_or(("host", &text));
            let _ = ssh_config::for_host(config, host);
            let _ = ssh_config::expand_path(host, "/home/u", host, "git", "me");
        }
        _ => {
            let _ = pkt::decode(input);
            let _ = payloads(input).len();
        }
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}
