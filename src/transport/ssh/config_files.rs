//! The file system behind [`config::Files`]: reading ssh_config files and
//! expanding `Include` globs as glob(3) does (sorted, `*` and `?` in any
//! path component, hidden files only when the pattern names them).

use std::path::{Component, Path, PathBuf};

use super::config::{self, Files};

pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let mut found = vec![PathBuf::new()];
        for component in pattern.components() {
            let part = match component {
                Component::Normal(part) => part.to_string_lossy().into_owned(),
                other => {
                    for path in &mut found {
                        path.push(other.as_os_str());
                    }
                    continue;
                }
            };
            if !part.contains(['*', '?']) {
                for path in &mut found {
                    path.push(&part);
                }
                continue;
            }
            let mut next = Vec::new();
            for dir in &found {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|name| !name.starts_with('.') || part.starts_with('.'))
                    .filter(|name| config::wildcard(&part, name))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|name| dir.join(name)));
            }
            found = next;
        }
        found.retain(|p| p.is_file());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_like_glob3() {
        let dir = tempfile::tempdir().expect("because a temporary directory can be made");
        let root = dir.path();
        for name in ["b.conf", "a.conf", ".hidden.conf", "c.txt", "sub/x.conf"] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, name).expect("write");
        }
        std::fs::create_dir_all(root.join("dir.conf")).expect("a directory matching the glob");
        let names = |pattern: &str| -> Vec<String> {
            Disk.glob(&root.join(pattern))
                .iter()
                .map(|p| {
                    p.strip_prefix(root)
                        .expect("under root")
                        .display()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(
            names("*.conf"),
            ["a.conf", "b.conf"],
            "sorted, no dotfiles, no dirs"
        );
        assert_eq!(names(".*.conf"), [".hidden.conf"]);
        assert_eq!(names("s?b/*.conf"), ["sub/x.conf"]);
        assert_eq!(names("a.conf"), ["a.conf"]);
        assert!(names("missing.conf").is_empty());
        assert!(names("*.CONF").is_empty(), "file names are case-sensitive");
        assert_eq!(Disk.read(&root.join("a.conf")).as_deref(), Some("a.conf"));
    }
}
