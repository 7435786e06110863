//! `[[github_org]]`: one mirror per repository of a GitHub organisation
//! whose custom property names its upstream (`target-prop:`). Parsing
//! here is pure; the repositories are listed by
//! [`crate::forge::github_org::discover`], an async step after [`super::load`].

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::keys::Table;
use super::settings::{At, Settings};
use super::{Checker, Mirror, Origin};
use crate::forge::target_prop;
use crate::forge::App;
use crate::url::RepoUrl;
use crate::url_rewrite::{Direction, Rewrites};

/// One `[[github_org]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubOrg {
    pub org: String,
    /// The custom property holding each repository's upstream.
    pub property: String,
    /// Each mirror's name: `{name}` (the repository's name) and `{org}`
    /// substituted; default `{name}`.
    pub name: String,
    /// Each mirror's downstream, `{name}` and `{org}` substituted; default
    /// the repository's URL on the app's git host (see [`Self::downstream_for`]).
    pub downstream: Option<String>,
    /// The app that serves the org's repositories.
    pub app: App,
    /// Every other setting of each discovered mirror: the table's own
    /// keys over `[defaults]`, its URLs stand-ins.
    pub prototype: Mirror,
    /// The user's `url.*.insteadOf` / `pushInsteadOf`, applied to each
    /// downstream as to a `[[mirror]]`'s.
    pub rewrites: Rewrites,
}

impl GithubOrg {
    /// The downstream URL of repository `name`.
    pub fn downstream_for(&self, name: &str) -> String {
        match &self.downstream {
            Some(pattern) => substitute(pattern, &self.org, name),
            None => {
                let scheme = match self.app.api_url.scheme() {
                    "http" => "http",
                    _ => "https",
                };
                format!("{scheme}://{}/{}/{name}.git", self.app.git_host, self.org)
            }
        }
    }

    /// The mirror of repository `name`, or why not (a downstream that is
    /// no URL, or one the app does not serve).
    pub fn mirror_for(&self, name: &str) -> Result<Mirror, String> {
        let raw = self
            .rewrites
            .apply(&self.downstream_for(name), Direction::Push)
            .into_owned();
        let downstream = RepoUrl::parse(&raw).map_err(|e| format!("downstream {raw}: {e}"))?;
        let served = match &downstream {
            RepoUrl::Http { url } => self.app.serves(url).is_some(),
            _ => false,
        };
        if !served {
            return Err(format!(
                "downstream {raw} is not served by GitHub App {}, so its property cannot be read",
                self.app.issuer
            ));
        }
        let mut mirror = self.prototype.clone();
        mirror.name = substitute(&self.name, &self.org, name);
        mirror.upstream = downstream.clone();
        mirror.downstream = downstream;
        mirror.upstream_property = Some(self.property.clone());
        mirror.upstream_token = None;
        mirror.upstream_app = None;
        mirror.downstream_token = None;
        mirror.downstream_app = Some(self.app.clone());
        Ok(mirror)
    }
}

/// `pattern` with `{org}` and `{name}` replaced.
pub fn substitute(pattern: &str, org: &str, name: &str) -> String {
    pattern.replace("{org}", org).replace("{name}", name)
}

/// One `[[github_org]]` as read, before it is checked against the apps.
pub(super) struct OrgTable {
    pub header: usize,
    pub org: Option<At<String>>,
    pub property: Option<At<String>>,
    /// Its other keys, for each discovered mirror.
    pub settings: Settings,
}

impl Checker<'_> {
    /// The tables of `[[github_org]]`, each with its header's offset, its
    /// `org` and `property`, and its other keys as settings.
    pub(super) fn github_org_tables(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<OrgTable> {
        let mut tables = Vec::new();
        for (header, table) in self.array_of_tables(value, "github_org") {
            let mut rest: DeTable<'_> = table.clone();
            let mut take = |this: &mut Self, key: &str| {
                let (_, value) = rest.remove_entry(key)?;
                let at = value.span().start;
                this.string(key, &value).map(|v| At { value: v, at })
            };
            let org = take(self, "org");
            let property = take(self, "property");
            if let Some((key, _)) = rest.get_key_value("upstream") {
                self.error(
                    key.span().start,
                    "[[github_org]] takes each upstream from the custom property `property`; drop `upstream`",
                );
                rest.remove("upstream");
            }
            let settings = self.settings(&rest, Table::Mirror);
            tables.push(OrgTable {
                header,
                org,
                property,
                settings,
            });
        }
        tables
    }

    /// One `[[github_org]]`, checked against the apps.
    pub(super) fn github_org(
        &mut self,
        header: usize,
        org: Option<At<String>>,
        property: Option<At<String>>,
        s: &Settings,
        apps: &[App],
    ) -> Option<GithubOrg> {
        let Some(org) = org else {
            self.error(header, "[[github_org]] has no `org`");
            return None;
        };
        let Some(property) = property else {
            self.error(header, "[[github_org]] has no `property`: the custom property that holds each repository's upstream");
            return None;
        };
        if !target_prop::valid_name(&property.value) {
            self.error(property.at, "`property`: a custom property's name is 1 to 75 letters, digits, `_`, `-`, `$` or `#`");
            return None;
        }
        if org.value.is_empty() || org.value.contains(['/', ' ']) {
            self.error(org.at, "`org` must be an organisation's login (no `/`)");
            return None;
        }
        let app = apps.iter().find(|app| {
            app.owners
                .iter()
                .any(|p| p.matches(&org.value, "any-repository"))
        });
        let Some(app) = app else {
            self.error(
                org.at,
                format!("no [[github_app]] serves {}: discovery lists the org's repositories as that app", org.value),
            );
            return None;
        };
        let name = s
            .name
            .as_ref()
            .map_or("{name}".to_owned(), |n| n.value.clone());
        let placeholder = RepoUrl::Local {
            path: Default::default(),
            url: None,
        };
        let origin = Origin {
            line: self.place(header).line,
            template: None,
        };
        let prototype = s.mirror(String::new(), placeholder.clone(), placeholder, origin);
        let entry = GithubOrg {
            org: org.value.clone(),
            property: property.value,
            name,
            downstream: s.downstream.as_ref().map(|d| d.value.clone()),
            app: app.clone(),
            prototype,
            rewrites: self.rewrites.clone(),
        };
        // A pattern that cannot give a served URL fails for every name:
        // said here, once.
        if let Err(reason) = entry.mirror_for("example") {
            let at = s.downstream.as_ref().map_or(header, |d| d.at);
            self.error(at, format!("[[github_org]] {}: {reason}", org.value));
            return None;
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;

    use super::super::{parse, Errors, Fleet};
    use super::substitute;

    const KEY: &str = include_str!("../../tests/fixtures/github-app-test-key.pkcs1.pem");

    fn parsed(text: &str) -> Result<Fleet, Errors> {
        let env = |name: &str| (name == "APP_KEY").then(|| KEY.to_owned());
        let read = |_: &Path| -> io::Result<String> { Err(io::ErrorKind::NotFound.into()) };
        parse(text, Path::new("conf/mirrors.toml"), &env, &read)
    }

    fn errors(text: &str) -> String {
        match parsed(text) {
            Ok(fleet) => panic!("invalid, but gave {:?}", fleet.github_orgs),
            Err(errors) => errors.to_string(),
        }
    }

    const APP: &str =
        "[[github_app]]\napp_id = 1\nkey_env = \"APP_KEY\"\nowners = [\"acme-*\"]\n\n";

    #[test]
    fn github_org_is_read_with_mirror_keys_over_defaults() {
        let text = format!(
            "[defaults]\nprune = false\nretries = 1\n\n{APP}[[github_org]]\norg = \"acme-mirror\"\nproperty = \"mirror-source\"\nretries = 5\n"
        );
        let fleet = parsed(&text).expect("valid");
        assert!(fleet.mirrors.is_empty());
        let [org] = &fleet.github_orgs[..] else {
            panic!("one org: {:?}", fleet.github_orgs)
        };
        assert_eq!(
            (org.org.as_str(), org.property.as_str()),
            ("acme-mirror", "mirror-source")
        );
        let mirror = org.mirror_for("api").expect("a mirror");
        assert_eq!(mirror.name, "api");
        assert_eq!(
            mirror.downstream.to_string(),
            "https://github.com/acme-mirror/api.git"
        );
        assert_eq!(mirror.upstream_property.as_deref(), Some("mirror-source"));
        assert!(mirror.downstream_app.is_some());
        assert_eq!((mirror.prune, mirror.retries), (false, 5));
        assert_eq!(mirror.origin.line, 10);
    }

    #[test]
    fn github_org_downstream_and_name_patterns_substitute() {
        let text = format!(
            "{APP}[[github_org]]\norg = \"acme-mirror\"\nproperty = \"p\"\nname = \"{{org}}-{{name}}\"\ndownstream = \"https://github.com/acme-backup/{{name}}.git\"\n"
        );
        let fleet = parsed(&text).expect("valid");
        let mirror = fleet.github_orgs[0].mirror_for("web").expect("a mirror");
        assert_eq!(mirror.name, "acme-mirror-web");
        assert_eq!(
            mirror.downstream.to_string(),
            "https://github.com/acme-backup/web.git"
        );
    }

    #[test]
    fn github_org_downstream_gets_pushinsteadof() {
        use crate::url_rewrite::{Rewrites, Rule};
        let rewrites = Rewrites::new([Rule {
            base: "https://github.com/".into(),
            prefix: "gh:".into(),
            push: true,
        }]);
        let text = format!(
            "{APP}[[github_org]]\norg = \"acme-mirror\"\nproperty = \"p\"\ndownstream = \"gh:acme-backup/{{name}}.git\"\n"
        );
        let env = |name: &str| (name == "APP_KEY").then(|| KEY.to_owned());
        let read = |_: &Path| -> io::Result<String> { Err(io::ErrorKind::NotFound.into()) };
        let fleet = super::super::parse_rewritten(
            &text,
            Path::new("conf/mirrors.toml"),
            &env,
            &read,
            &rewrites,
        )
        .expect("valid once rewritten");
        let mirror = fleet.github_orgs[0].mirror_for("web").expect("a mirror");
        assert_eq!(
            mirror.downstream.to_string(),
            "https://github.com/acme-backup/web.git"
        );
        assert!(mirror.downstream_app.is_some());
    }

    #[test]
    fn github_org_problems_are_reported_where_they_are() {
        let no_app = errors("[[github_org]]\norg = \"acme\"\nproperty = \"p\"\n");
        assert!(
            no_app.contains("conf/mirrors.toml:2:7: no [[github_app]] serves acme"),
            "{no_app}"
        );
        let missing = errors(&format!("{APP}[[github_org]]\norg = \"acme-x\"\n"));
        assert!(
            missing.contains(":6:1: [[github_org]] has no `property`"),
            "{missing}"
        );
        let upstream = errors(&format!(
            "{APP}[[github_org]]\norg = \"acme-x\"\nproperty = \"p\"\nupstream = \"https://x/y\"\n"
        ));
        assert!(upstream.contains("drop `upstream`"), "{upstream}");
        let bad_name = errors(&format!(
            "{APP}[[github_org]]\norg = \"acme-x\"\nproperty = \"a b\"\n"
        ));
        assert!(bad_name.contains("custom property's name"), "{bad_name}");
        let elsewhere = errors(&format!(
            "{APP}[[github_org]]\norg = \"acme-x\"\nproperty = \"p\"\ndownstream = \"https://gitlab.example/{{name}}.git\"\n"
        ));
        assert!(
            elsewhere.contains("is not served by GitHub App 1"),
            "{elsewhere}"
        );
        let typo = errors(&format!(
            "{APP}[[github_org]]\norg = \"acme-x\"\nproperty = \"p\"\nprunee = true\n"
        ));
        assert!(typo.contains("did you mean `prune`"), "{typo}");
    }

    #[test]
    fn target_prop_upstream_needs_an_app_for_downstream() {
        let ok = parsed(&format!(
            "{APP}[[mirror]]\nname = \"w\"\nupstream = \"target-prop:mirror-source\"\ndownstream = \"https://github.com/acme-m/w.git\"\n"
        ))
        .expect("valid");
        assert_eq!(
            ok.mirrors[0].upstream_property.as_deref(),
            Some("mirror-source")
        );
        assert_eq!(ok.mirrors[0].upstream_shown(), "target-prop:mirror-source");
        let no_app = errors(
            "[[mirror]]\nname = \"w\"\nupstream = \"target-prop:p\"\ndownstream = \"https://github.com/x/w.git\"\n",
        );
        assert!(
            no_app.contains(":1:1: mirror w: `upstream = \"target-prop:p\"`"),
            "{no_app}"
        );
        let bad = errors(&format!(
            "{APP}[[template]]\nnames = [\"a\", \"b\"]\nupstream = \"target-prop:x y\"\ndownstream = \"https://github.com/acme-m/{{name}}.git\"\n"
        ));
        assert_eq!(bad.matches("custom property's name").count(), 1, "{bad}");
    }

    #[test]
    fn github_org_patterns_substitute_org_and_name() {
        assert_eq!(
            substitute("https://github.com/{org}/{name}.git", "acme", "api"),
            "https://github.com/acme/api.git"
        );
        assert_eq!(substitute("mirror-{name}", "acme", "web"), "mirror-web");
    }
}
