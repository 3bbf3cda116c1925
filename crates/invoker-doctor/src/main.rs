use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use invoker_doctor::cli::{Cli, ColorWhen};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                invoker_doctor::EXIT_USAGE
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    match cli.color {
        ColorWhen::Always => colored::control::set_override(true),
        ColorWhen::Never => colored::control::set_override(false),
        ColorWhen::Auto => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            colored::control::set_override(std::io::stdout().is_terminal() && !no_color);
        }
    }
    let mut stdin = std::io::stdin();
    match invoker_doctor::run(&cli, &mut stdin) {
        Ok(out) => {
            let mut err = std::io::stderr().lock();
            for w in &out.warnings {
                if w.starts_with("note: ") {
                    let _ = writeln!(err, "{w}");
                } else {
                    let _ = writeln!(err, "warning: {w}");
                }
            }
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) ends the output quietly.
            let _ = stdout
                .write_all(out.stdout.as_bytes())
                .and_then(|_| stdout.flush());
            ExitCode::from(out.code as u8)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "error: {e:#}");
            ExitCode::from(invoker_doctor::EXIT_USAGE as u8)
        }
    }
}
