//! Rule documentation: `invoker-doctor rules [CODE]`, and the pages generated into
//! `docs/rules/` (the generator and its drift check are the `docs` integration test).

use anyhow::{Result, bail};
use ipd_rules::{RULES, Rule};

use crate::Output;

pub fn rules_command(code: Option<&str>) -> Result<Output> {
    let stdout = match code {
        None => index_text(),
        Some(c) => match ipd_rules::find(c) {
            Some(r) => rule_page(r, None),
            None => bail!("no rule `{c}`; `invoker-doctor rules` lists them"),
        },
    };
    Ok(Output {
        stdout,
        warnings: vec![],
        code: crate::EXIT_CLEAN,
    })
}

/// `CODE  CAUSE  TITLE` for every rule, in registry (request-path) order.
pub fn index_text() -> String {
    let w = RULES
        .iter()
        .map(|r| r.meta().cause.len())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for r in RULES {
        let m = r.meta();
        s.push_str(&format!(
            "{}  {:<w$}  {}\n",
            m.code,
            m.cause,
            m.title,
            w = w
        ));
    }
    s
}

/// The rule's doc comment as Markdown (doc comments keep one leading space per line).
pub fn doc_markdown(r: &dyn Rule) -> String {
    r.meta()
        .doc
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One rule's page. With `example`, the output of the Example fixture is embedded after the
/// Example section's first paragraph.
pub fn rule_page(r: &dyn Rule, example: Option<(&str, &str)>) -> String {
    let m = r.meta();
    let mut doc = doc_markdown(r);
    if let Some((command, output)) = example
        && let Some(at) = doc.find("## Example")
    {
        let after = at + doc[at..].find("\n\n## ").unwrap_or(doc.len() - at);
        let block = format!("\n\n```text\n$ {command}\n{}\n```", output.trim_end());
        doc.insert_str(after, &block);
    }
    format!(
        "# {} {}\n\n{}\n\n- cause: `{}`\n- severity: {}\n\n{}\n",
        m.code,
        m.name,
        m.title,
        m.cause,
        m.severity.as_str(),
        doc.trim_end()
    )
}

/// `docs/rules/README.md`: the table of rules.
pub fn index_markdown() -> String {
    let mut s = String::from(
        "# Rules\n\nGenerated from the rule doc comments by `just gen-docs`; do not edit by hand.\nIn registry order, which follows the request path (ingress, the invoker check, the token, IAM, org policy, the application).\n\n| code | cause | what it finds |\n|---|---|---|\n",
    );
    for r in RULES {
        let m = r.meta();
        s.push_str(&format!(
            "| [{}]({}.md) | `{}` | {} |\n",
            m.code, m.code, m.cause, m.title
        ));
    }
    s
}
