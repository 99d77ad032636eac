//! `annals`: list, read, search, follow, verify, repair, export and import annals stores from
//! a shell.
//!
//! Every command goes through the library's public API (`dyn Store`, and `FsStore` only behind
//! the seam in `target.rs`); read-only commands never write to the store, not even to remove a
//! torn tail.

// The workspace denies lossy casts for library code; here they only turn sizes, counts and
// rates into numbers for people.
#![allow(
    clippy::cast_possible_truncation,
    reason = "display numbers, not data read back from a store"
)]

/// One line on stderr; a closed stderr is not worth failing for (unlike `eprintln!`, which
/// panics).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod cmd;
mod export_file;
mod fail;
mod ids;
mod lines;
mod location;
mod print;
mod serve;
mod target;
mod term;

/// The search module shared with the web viewer (`annals_cli::search`), reachable as
/// `crate::search` from every module of the binary.
#[allow(unused_imports)]
pub use annals_cli::search;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use target::Location;

fn run(cli: Cli) -> fail::Outcome {
    if let Command::Copy(args) = &cli.command {
        return cmd::copy::run(args);
    }
    // --store (or ANNALS_STORE) names a filesystem store's root too; the other commands do not
    // speak to PostgreSQL yet (target.rs is where its backend goes).
    let root = match location::from_flag_or_env(cli.store.as_deref())? {
        Some(location::Location::Fs(root)) if cli.root.is_none() => Some(root),
        Some(location::Location::Fs(_)) | None => cli.root,
        Some(pg @ location::Location::Postgres { .. }) => {
            return Err(fail::Failure::usage(
                format!(
                    "this command works on filesystem stores only for now, not on {}",
                    pg.shown()
                ),
                "`annals copy --from STORE --to DIR` copies sessions out of PostgreSQL",
            ))
        }
    };
    let location = Location::from_args(root);
    match cli.command {
        Command::Copy(_) => Ok(fail::OK),
        Command::Ls(args) => cmd::ls::run(&location, &args),
        Command::Tree(args) => cmd::tree::run(&location, &args),
        Command::Cat(args) => cmd::cat::run(&location, &args),
        Command::Follow(args) => cmd::follow::run(&location, &args),
        Command::Grep(args) => cmd::grep::run(&location, &args),
        Command::Verify(args) => cmd::verify::run(&location, &args),
        Command::Repair(args) => cmd::repair::run(&location, &args),
        Command::Append(args) => cmd::append::run(&location, &args),
        Command::Stats(args) => cmd::stats::run(&location, &args),
        Command::Gc(args) => cmd::gc::run(&location, &args),
        Command::Export(args) => cmd::export::run(&location, &args),
        Command::Import(args) => cmd::import::run(&location, &args),
        Command::Attachments(args) => cmd::attachments::run(&location, &args),
        Command::Demo(args) => cmd::demo::run(&location, &args),
        Command::Serve(args) => serve::run(&location, &args),
        Command::Completions(args) => cmd::completions::completions(&args),
        Command::Man(args) => cmd::completions::man(&args),
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        term::restore_terminal();
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "annals: internal error ({what}), {place}: this is a bug, please report it"
        );
    }));
    let worker = std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == cli::DEMO_WORKER);
    let job: Box<dyn FnOnce() -> fail::Outcome + std::panic::UnwindSafe> = if worker {
        let w = match cli::DemoWorker::try_parse_from(std::env::args_os().skip(1)) {
            Ok(w) => w,
            Err(e) => return usage_error(&e),
        };
        Box::new(move || cmd::demo::worker(&Location::from_args(Some(w.root)), &w.args))
    } else {
        let cli = match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) => return usage_error(&e),
        };
        term::set_color(cli.color);
        Box::new(move || run(cli))
    };
    term::catch_interrupts();
    let outcome = std::panic::catch_unwind(job);
    term::restore_terminal();
    match outcome {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(failure)) => {
            if let Some(message) = failure.message() {
                let style = term::Style::stderr();
                let _ = writeln!(std::io::stderr(), "{}: {message}", style.bold("annals"));
            }
            ExitCode::from(failure.code())
        }
        Err(_) => ExitCode::from(fail::CANNOT_RUN),
    }
}

/// Help and version go out as clap prints them; a usage error becomes one line, with clap's
/// tip (such as a "similar subcommand") kept in it.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() {
            fail::CANNOT_RUN
        } else {
            fail::OK
        });
    }
    let text = e.render().to_string();
    let mut what = String::new();
    let mut tips = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_owned());
        } else if line.starts_with("tip:") {
            tips.push(line.to_owned());
        } else if line.starts_with("For more information") {
        } else if what.is_empty() {
            what = line.trim_start_matches("error: ").to_owned();
        } else {
            // The details of "the following required arguments were not provided:".
            what = format!("{} {line}", what.trim_end_matches(':').to_owned() + ":");
        }
    }
    if !tips.is_empty() {
        what = format!("{what} ({})", tips.join("; "));
    }
    let place = usage.map(|u| format!(", usage: {u}")).unwrap_or_default();
    let style = term::Style::stderr();
    say!(
        "{}: {what}{place}: see `annals --help` or `annals COMMAND --help`",
        style.bold("annals")
    );
    ExitCode::from(fail::CANNOT_RUN)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
