//! `annals completions SHELL` and `annals man`: generated from the command-line definition,
//! so they never drift from `--help`.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use clap_complete::Shell;

use crate::fail::{Cause, Failure, Outcome, CANNOT_RUN, OK};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write annals.1 and one page per command (annals-ls.1, …) into this directory instead
    /// of printing annals.1 on stdout
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> Outcome {
    let mut cmd = crate::cli::command();
    let mut out = io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "annals", &mut out);
    out.flush()?;
    Ok(OK)
}

pub fn man(args: &ManArgs) -> Outcome {
    let cmd = crate::cli::command();
    let Some(dir) = &args.dir else {
        let mut out = io::stdout().lock();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        out.flush()?;
        return Ok(OK);
    };
    let failed = |e: io::Error| {
        let cause = Cause::of(&e, Some(dir));
        Failure::new(
            CANNOT_RUN,
            format!("could not write the man pages ({})", cause.what),
            dir.display(),
            cause.todo.unwrap_or(""),
        )
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut written = 0;
    let mut write_page = |name: String, page: clap::Command| -> io::Result<()> {
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page)
            .title(name.clone())
            .render(&mut bytes)?;
        std::fs::write(dir.join(format!("{name}.1")), bytes)?;
        written += 1;
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("annals-{}", sub.get_name());
        write_page(name, sub.clone()).map_err(failed)?;
    }
    write_page("annals".to_owned(), cmd).map_err(failed)?;
    say!("wrote {written} man pages to {}", dir.display());
    Ok(OK)
}
