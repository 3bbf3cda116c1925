//! The process environment as data, so the binary, tests and the benchmark can hand in exactly
//! the variables they mean (tests pass them to a child process; nothing here calls `set_var`).
//!
//! Also gcloud's own configuration: the default project of the active configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A snapshot of environment variables.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets (a token in some variable); show the names only.
        f.debug_struct("Env")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Env {
    /// The current process environment (variables that are not UTF-8 are left out).
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment with exactly these variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, when set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// invoker-doctor's cache directory (the ancestry of projects seen before):
    /// `$XDG_CACHE_HOME/invoker-doctor`, else `~/.cache/invoker-doctor`; none when
    /// `INVOKER_DOCTOR_NO_CACHE` is set.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.get("INVOKER_DOCTOR_NO_CACHE").is_some() {
            return None;
        }
        self.get("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| self.get("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("invoker-doctor"))
    }

    /// gcloud's configuration directory: `CLOUDSDK_CONFIG`, else `~/.config/gcloud`.
    pub fn gcloud_config_dir(&self) -> Option<PathBuf> {
        if let Some(d) = self.get("CLOUDSDK_CONFIG") {
            return Some(PathBuf::from(d));
        }
        self.get("HOME")
            .map(|h| PathBuf::from(h).join(".config").join("gcloud"))
    }

    /// gcloud's default project: `CLOUDSDK_CORE_PROJECT`, else `[core] project` of the active
    /// configuration (`CLOUDSDK_ACTIVE_CONFIG_NAME`, else the `active_config` file, else
    /// `default`). Returns the project and where it came from.
    pub fn gcloud_default_project(&self) -> Option<(String, String)> {
        if let Some(p) = self.get("CLOUDSDK_CORE_PROJECT") {
            return Some((p.trim().to_string(), "CLOUDSDK_CORE_PROJECT".into()));
        }
        let dir = self.gcloud_config_dir()?;
        let name = match self.get("CLOUDSDK_ACTIVE_CONFIG_NAME") {
            Some(n) => n.trim().to_string(),
            None => std::fs::read_to_string(dir.join("active_config"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
        };
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return None;
        }
        let file = dir.join("configurations").join(format!("config_{name}"));
        let text = std::fs::read_to_string(&file).ok()?;
        ini_value(&text, "core", "project").map(|p| {
            (
                p,
                format!("gcloud configuration `{name}` ({})", file.display()),
            )
        })
    }
}

/// `key` of `[section]` in an INI text (gcloud's properties files).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = s.trim().to_string();
            continue;
        }
        if current != section {
            continue;
        }
        if let Some((k, v)) = l.split_once('=')
            && k.trim() == key
        {
            let v = v.trim();
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini() {
        let t = "[core]\naccount = a@b.c\nproject = shop-prod\n\n[compute]\nregion = x\n";
        assert_eq!(
            ini_value(t, "core", "project").as_deref(),
            Some("shop-prod")
        );
        assert_eq!(ini_value(t, "compute", "project"), None);
        assert_eq!(ini_value("[core]\nproject =\n", "core", "project"), None);
    }

    #[test]
    fn default_project_from_config_dir() {
        let dir = std::env::temp_dir().join(format!("ipd-gather-env-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("configurations"));
        std::fs::write(dir.join("active_config"), "work\n").unwrap();
        std::fs::write(
            dir.join("configurations/config_work"),
            "[core]\nproject = from-config\n",
        )
        .unwrap();
        let env = Env::from_pairs([("CLOUDSDK_CONFIG", dir.display().to_string())]);
        assert_eq!(
            env.gcloud_default_project().map(|p| p.0).as_deref(),
            Some("from-config")
        );
        let env = Env::from_pairs([
            ("CLOUDSDK_CONFIG", dir.display().to_string()),
            ("CLOUDSDK_CORE_PROJECT", "from-env".into()),
        ]);
        assert_eq!(
            env.gcloud_default_project().map(|p| p.0).as_deref(),
            Some("from-env")
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!format!("{env:?}").contains("from-env"));
    }
}
