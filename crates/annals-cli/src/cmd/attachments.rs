//! `annals attachments`: a session's attachments (images, files kept in its blob store):
//! list them, get one's bytes, put a file.

use std::fs;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use annals::{Attachment, AttachmentMeta, SessionId};
use annals_cli::search::time;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::fail::{Cause, Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::ids::Named;
use crate::target::{Location, Target};
use crate::term::{human_bytes, Style};

#[derive(Debug, Args)]
pub struct AttachmentsArgs {
    #[command(subcommand)]
    pub command: AttachmentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AttachmentsCommand {
    /// List a session's attachments, in the order they were put
    List {
        /// The session (an id, a unique end or start of one, or one of its segments)
        session: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Write an attachment's bytes to a file or stdout (checked against its SHA-256)
    Get {
        /// The session
        session: String,
        /// The attachment: its id (SHA-256, or a unique start of it) or its label
        attachment: String,
        /// Write to this file instead of stdout (refused if it exists, unless --force)
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Store a file (or stdin, `-`) as an attachment of a session
    Put {
        /// The session
        session: String,
        /// The file to attach, or `-` for stdin
        file: PathBuf,
        /// Its media type [default: guessed from the file name, else application/octet-stream]
        #[arg(long = "type", value_name = "MEDIA_TYPE")]
        media_type: Option<String>,
        /// A label for people [default: the file name]
        #[arg(long)]
        label: Option<String>,
        /// Width in pixels (images)
        #[arg(long)]
        width: Option<u32>,
        /// Height in pixels (images)
        #[arg(long)]
        height: Option<u32>,
    },
}

pub fn run(location: &Location, args: &AttachmentsArgs) -> Outcome {
    let target = Target::existing(location)?;
    match &args.command {
        AttachmentsCommand::List { session, json } => list(&target, session, *json),
        AttachmentsCommand::Get {
            session,
            attachment,
            output,
            force,
        } => get(&target, session, attachment, output.as_deref(), *force),
        AttachmentsCommand::Put {
            session,
            file,
            media_type,
            label,
            width,
            height,
        } => {
            let session = session_of(&target, session)?;
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|_| file.as_os_str() != "-")
                .map(str::to_owned);
            let meta = AttachmentMeta {
                media_type: media_type
                    .clone()
                    .unwrap_or_else(|| guess_type(name.as_deref().unwrap_or("")).to_owned()),
                label: label.clone().or(name),
                width: *width,
                height: *height,
            };
            let bytes = read_input(file, target.store().max_entry_bytes())?;
            let put = target
                .store()
                .put_attachment(session, &bytes, &meta)
                .map_err(|e| target.err(e))?;
            writeln!(
                io::stdout().lock(),
                "{}  {}  {}",
                put.id,
                human_bytes(put.len),
                put.meta.label.as_deref().unwrap_or("")
            )?;
            Ok(OK)
        }
    }
}

fn session_of(target: &Target, arg: &str) -> Result<SessionId, Failure> {
    Ok(match target.named(arg)? {
        Named::Session(s) | Named::Segment(s, _) => s,
    })
}

fn list(target: &Target, session: &str, as_json: bool) -> Outcome {
    let session = session_of(target, session)?;
    let list = target
        .store()
        .list_attachments(session)
        .map_err(|e| target.err(e))?;
    let mut out = BufWriter::new(io::stdout().lock());
    if as_json {
        let rows: Vec<_> = list
            .iter()
            .map(|a| {
                json!({
                    "id": a.id.to_string(),
                    "len": a.len,
                    "type": a.meta.media_type,
                    "label": a.meta.label,
                    "width": a.meta.width,
                    "height": a.meta.height,
                    "created_ms": a.created_ms,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows).map_err(io::Error::from)?;
        writeln!(out)?;
    } else if list.is_empty() {
        out.flush()?;
        say!("session {session} has no attachments");
    } else {
        let style = Style::stdout();
        writeln!(
            out,
            "{}",
            style.bold(&format!(
                "{:<16}  {:>9}  {:<20}  {:<17}  {}",
                "ID (SHA-256)", "SIZE", "TYPE", "PUT (UTC)", "LABEL"
            ))
        )?;
        for a in &list {
            let id = a.id.to_string();
            let when = time::utc(a.created_ms);
            writeln!(
                out,
                "{:<16}  {:>9}  {:<20}  {:<17}  {}",
                id.get(..16).unwrap_or(&id),
                human_bytes(a.len),
                a.meta.media_type,
                format!("{}Z", when.get(..16).unwrap_or(&when)),
                a.meta.label.as_deref().unwrap_or("")
            )?;
        }
        writeln!(
            out,
            "{}",
            style.dim("ids: the first 16 hex digits of the SHA-256; `annals attachments get SESSION ID` takes them")
        )?;
    }
    out.flush()?;
    Ok(OK)
}

fn get(target: &Target, session: &str, which: &str, output: Option<&Path>, force: bool) -> Outcome {
    let session = session_of(target, session)?;
    let list = target
        .store()
        .list_attachments(session)
        .map_err(|e| target.err(e))?;
    let attachment = pick(&list, which)?;
    if output.is_none() && io::stdout().is_terminal() {
        return Err(Failure::usage(
            "refusing to write an attachment's bytes to a terminal",
            "pass -o FILE, or pipe the output",
        ));
    }
    if let Some(path) = output {
        if !force && fs::symlink_metadata(path).is_ok() {
            return Err(Failure::new(
                CANNOT_RUN,
                "the output file exists",
                path.display(),
                "pass --force to overwrite it, or another -o FILE",
            ));
        }
    }
    let bytes = target
        .store()
        .get_blob(session, &attachment.id)
        .map_err(|e| target.err(e))?;
    match output {
        None => {
            let mut out = io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
        Some(path) => {
            fs::write(path, &bytes).map_err(|e| {
                let cause = Cause::of(&e, Some(path));
                Failure::new(
                    CANNOT_RUN,
                    format!("could not write the attachment ({})", cause.what),
                    path.display(),
                    cause.todo.unwrap_or(""),
                )
            })?;
            say!(
                "wrote {} ({}) to {}",
                attachment.meta.label.as_deref().unwrap_or("the attachment"),
                human_bytes(bytes.len() as u64),
                path.display()
            );
        }
    }
    Ok(OK)
}

/// The attachment an argument names: a unique start of its SHA-256, or its label.
fn pick<'a>(list: &'a [Attachment], which: &str) -> Result<&'a Attachment, Failure> {
    let lower = which.to_ascii_lowercase();
    let by_id: Vec<&Attachment> =
        if lower.len() >= 4 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            list.iter()
                .filter(|a| a.id.to_string().starts_with(&lower))
                .collect()
        } else {
            Vec::new()
        };
    let by_label: Vec<&Attachment> = list
        .iter()
        .filter(|a| a.meta.label.as_deref() == Some(which))
        .collect();
    let mut found = if by_id.is_empty() { by_label } else { by_id };
    found.dedup_by_key(|a| a.id);
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Failure::new(
            PROBLEMS,
            format!("no attachment matches {which:?}"),
            "",
            "`annals attachments list SESSION` shows their ids and labels",
        )),
        many => Err(Failure::usage(
            format!("{which:?} matches {} attachments", many.len()),
            "give more digits of its id",
        )),
    }
}

/// Reads the file to attach, refusing one larger than the store takes before reading it all.
fn read_input(file: &Path, max: usize) -> Result<Vec<u8>, Failure> {
    let unreadable = |e: io::Error| {
        let cause = Cause::of(&e, Some(file));
        Failure::new(
            CANNOT_RUN,
            format!("could not read the file to attach ({})", cause.what),
            file.display(),
            cause.todo.unwrap_or(""),
        )
    };
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    if file.as_os_str() == "-" {
        io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
    } else {
        let f = fs::File::open(file).map_err(unreadable)?;
        let meta = f.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(Failure::usage(
                format!("{} is not a regular file", file.display()),
                "attach a file, or `-` for stdin",
            ));
        }
        f.take(limit).read_to_end(&mut bytes).map_err(unreadable)?;
    }
    if bytes.len() > max {
        return Err(Failure::new(
            CANNOT_RUN,
            format!(
                "the file is larger than the store's limit of {}",
                human_bytes(max as u64)
            ),
            file.display(),
            "attach a smaller file",
        ));
    }
    Ok(bytes)
}

fn guess_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("pdf") => "application/pdf",
        Some("json") => "application/json",
        Some("txt" | "log") => "text/plain",
        Some("md") => "text/markdown",
        Some("html" | "htm") => "text/html",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}
