//! `--per-host`: how many connections each server has open.

use std::collections::HashMap;

use crate::url::RepoUrl;

/// The servers a mirror connects to, with how many connections each.
/// Local repositories are not servers and are not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need(Vec<(String, usize)>);

impl Need {
    /// A sync holds one connection to each side at a time.
    pub fn of(upstream: &RepoUrl, downstream: &RepoUrl) -> Self {
        let mut need: Vec<(String, usize)> = Vec::new();
        for host in [server(upstream), server(downstream)].into_iter().flatten() {
            match need.iter_mut().find(|(h, _)| *h == host) {
                Some((_, n)) => *n += 1,
                None => need.push((host, 1)),
            }
        }
        Self(need)
    }
}

/// The server a URL names: its host, lowercased, and the port, so that two
/// daemons on one machine count apart (as tests run them) and `Host` and
/// `host` count together.
fn server(url: &RepoUrl) -> Option<String> {
    match url {
        RepoUrl::Local { .. } => None,
        RepoUrl::Ssh { host, port, .. } => Some(format!(
            "{}:{}",
            host.to_ascii_lowercase(),
            port.unwrap_or(22)
        )),
        RepoUrl::Git { host, port, .. } => Some(format!(
            "{}:{}",
            host.to_ascii_lowercase(),
            port.unwrap_or(9418)
        )),
        RepoUrl::Http { url } => Some(format!(
            "{}:{}",
            url.host_str().unwrap_or_default().to_ascii_lowercase(),
            url.port_or_known_default().unwrap_or_default()
        )),
    }
}

/// Connections open per server, against a cap.
#[derive(Debug)]
pub struct Hosts {
    cap: usize,
    open: HashMap<String, usize>,
}

impl Hosts {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            open: HashMap::new(),
        }
    }

    /// Whether a mirror needing `need` may start now. One that needs more
    /// than the cap on its own (both sides on one server, cap 1) starts
    /// when that server is idle, rather than never.
    pub fn fits(&self, need: &Need) -> bool {
        need.0.iter().all(|(host, n)| {
            let open = self.open.get(host).copied().unwrap_or(0);
            open + n <= self.cap || open == 0
        })
    }

    pub fn take(&mut self, need: &Need) {
        for (host, n) in &need.0 {
            *self.open.entry(host.clone()).or_insert(0) += n;
        }
    }

    pub fn give_back(&mut self, need: &Need) {
        for (host, n) in &need.0 {
            if let Some(open) = self.open.get_mut(host) {
                *open = open.saturating_sub(*n);
                if *open == 0 {
                    self.open.remove(host);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> RepoUrl {
        RepoUrl::parse(text).expect("because the test URLs are valid")
    }

    #[test]
    fn servers_are_counted_by_host_and_port() {
        let need = Need::of(
            &url("https://Forge.example/a.git"),
            &url("ssh://git@forge.example/b.git"),
        );
        assert_eq!(
            need,
            Need(vec![
                ("forge.example:443".into(), 1),
                ("forge.example:22".into(), 1)
            ])
        );
        let same = Need::of(
            &url("git://127.0.0.1:9000/a"),
            &url("git://127.0.0.1:9000/b"),
        );
        assert_eq!(same, Need(vec![("127.0.0.1:9000".into(), 2)]));
        assert_eq!(Need::of(&url("/srv/a.git"), &url("./b.git")), Need(vec![]));
    }

    #[test]
    fn the_cap_holds_and_an_oversized_need_runs_alone() {
        let mut hosts = Hosts::new(2);
        let one = Need::of(&url("git://h/a"), &url("/tmp/x"));
        let two = Need::of(&url("git://h/a"), &url("git://h/b"));
        assert!(hosts.fits(&one));
        hosts.take(&one);
        assert!(hosts.fits(&one));
        hosts.take(&one);
        assert!(!hosts.fits(&one));
        assert!(!hosts.fits(&two));
        hosts.give_back(&one);
        hosts.give_back(&one);
        let mut tight = Hosts::new(1);
        assert!(tight.fits(&two));
        tight.take(&two);
        assert!(!tight.fits(&one));
        tight.give_back(&two);
        assert!(tight.fits(&one));
    }
}
