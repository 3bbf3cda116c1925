//! `docs/rules/` is generated from the rule doc comments, with the output of each rule's
//! Example fixture embedded. This test regenerates it and fails on drift; run `just gen-docs`
//! (UPDATE_DOCS=1) to rewrite it.

use std::path::Path;

use crate::support::{Case, fixtures, run_args, workspace_root};

fn example_of(doc: &str) -> Option<String> {
    let ex = doc.split("## Example").nth(1)?;
    let start = ex.find("`fixtures/")? + "`fixtures/".len();
    let end = ex[start..].find('`')?;
    Some(ex[start..start + end].to_string())
}

fn generate() -> Vec<(String, String)> {
    let cases: Vec<(String, std::path::PathBuf, Case)> = fixtures();
    let mut files = vec![(
        "README.md".to_string(),
        invoker_doctor::docs::index_markdown(),
    )];
    for r in ipd_rules::RULES {
        let slug = example_of(r.meta().doc)
            .unwrap_or_else(|| panic!("{}: no Example fixture", r.meta().code));
        let (_, dir, case) = cases
            .iter()
            .find(|(s, _, _)| *s == slug)
            .unwrap_or_else(|| panic!("{}: Example names missing fixture `{slug}`", r.meta().code));
        let mut args = crate::support::diagnose_args(dir, case, "text");
        args.truncate(args.len() - 2); // drop --format text
        let out = run_args(&args).stdout;
        let shown_args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        let command = format!(
            "invoker-doctor diagnose --bundle fixtures/{slug}{}{}",
            if shown_args.is_empty() { "" } else { " " },
            shown_args.join(" ")
        );
        files.push((
            format!("{}.md", r.meta().code),
            invoker_doctor::docs::rule_page(*r, Some((&command, &out))),
        ));
    }
    files
}

#[test]
fn generated_rule_docs_are_up_to_date() {
    let dir = workspace_root().join("docs/rules");
    let files = generate();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(&dir).expect("mkdir docs/rules");
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).expect("write doc");
        }
    }
    let mut stale = Vec::new();
    for (name, text) in &files {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if &on_disk != text {
            stale.push(name.clone());
        }
    }
    let expected: std::collections::BTreeSet<&str> =
        files.iter().map(|(n, _)| n.as_str()).collect();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !expected.contains(n.as_str()) {
            stale.push(format!("{n} (no rule generates it)"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/rules is stale ({}); run `just gen-docs`",
        stale.join(", ")
    );
    assert!(Path::new(&dir).join("README.md").is_file());
}

#[test]
fn rules_command_prints_each_rules_doc() {
    for r in ipd_rules::RULES {
        let out = run_args(&[
            "invoker-doctor".into(),
            "rules".into(),
            r.meta().code.into(),
        ]);
        assert!(
            out.stdout
                .starts_with(&format!("# {} {}", r.meta().code, r.meta().name))
        );
        assert!(out.stdout.contains("## Fix safety"));
    }
    let list = run_args(&["invoker-doctor".into(), "rules".into()]).stdout;
    assert_eq!(list.lines().count(), ipd_rules::RULES.len());
    insta::assert_snapshot!("rules_list", list);
}
