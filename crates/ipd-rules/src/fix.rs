//! Fixes: commands built as argv and quoted only when rendered, never run.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    Gcloud,
    Terraform,
    Console,
    Yaml,
    Note,
}

/// How far to trust a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Safety {
    /// Read-only or narrowly scoped: run as is.
    Safe,
    /// Widens access or changes configuration: review before running.
    NeedsReview,
    /// Contains a value the evidence could not supply, shown as `<NAME>`.
    HasPlaceholders,
}

/// One argument of a command: a literal, or a value the evidence could not supply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Lit(String),
    Placeholder(&'static str),
    /// `--flag=value` where the value is a placeholder.
    FlagPlaceholder(&'static str, &'static str),
}

impl Arg {
    pub fn lit(s: impl Into<String>) -> Arg {
        Arg::Lit(s.into())
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Lit(s.to_string())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Lit(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    pub kind: FixKind,
    /// Imperative, lowercase: `grant \`roles/run.invoker\` on service \`api\``.
    pub title: String,
    /// The command (gcloud), empty for other kinds.
    pub argv: Vec<Arg>,
    /// The text of a Terraform / YAML / console / note fix.
    pub body: String,
    pub safety: Safety,
}

impl Fix {
    pub fn command(title: impl Into<String>, argv: Vec<Arg>, safety: Safety) -> Fix {
        let has_placeholder = argv.iter().any(|a| !matches!(a, Arg::Lit(_)));
        Fix {
            kind: FixKind::Gcloud,
            title: title.into(),
            argv,
            body: String::new(),
            safety: if has_placeholder {
                Safety::HasPlaceholders
            } else {
                safety
            },
        }
    }

    pub fn text(
        kind: FixKind,
        title: impl Into<String>,
        body: impl Into<String>,
        safety: Safety,
    ) -> Fix {
        let body = body.into();
        let safety = if body.contains("<")
            && body.contains(">")
            && kind != FixKind::Note
            && safety == Safety::Safe
        {
            Safety::HasPlaceholders
        } else {
            safety
        };
        Fix {
            kind,
            title: title.into(),
            argv: vec![],
            body,
            safety,
        }
    }

    pub fn note(title: impl Into<String>, body: impl Into<String>) -> Fix {
        Fix {
            kind: FixKind::Note,
            title: title.into(),
            argv: vec![],
            body: body.into(),
            safety: Safety::Safe,
        }
    }

    /// What to show: the shell-quoted command, or the body.
    pub fn rendered(&self) -> String {
        if self.argv.is_empty() {
            self.body.clone()
        } else {
            self.argv
                .iter()
                .map(render_arg)
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

fn render_arg(a: &Arg) -> String {
    match a {
        Arg::Lit(s) => shell_quote(s),
        Arg::Placeholder(n) => format!("<{n}>"),
        Arg::FlagPlaceholder(flag, n) => format!("{flag}=<{n}>"),
    }
}

/// Quotes for POSIX shells: bare when only safe characters, else single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@,%+".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("--member=serviceAccount:a@p.iam.gserviceaccount.com"),
            "--member=serviceAccount:a@p.iam.gserviceaccount.com"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            shell_quote("deleted:serviceAccount:a@b?uid=1"),
            "'deleted:serviceAccount:a@b?uid=1'"
        );
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn placeholders_mark_the_fix() {
        let f = Fix::command(
            "x",
            vec!["gcloud".into(), Arg::FlagPlaceholder("--region", "REGION")],
            Safety::Safe,
        );
        assert_eq!(f.safety, Safety::HasPlaceholders);
        assert_eq!(f.rendered(), "gcloud --region=<REGION>");
    }
}
