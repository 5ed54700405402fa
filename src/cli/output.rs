//! How read commands speak: aligned text tables for people, one JSON
//! document on stdout for programs, all written through [`Out`], which
//! reports a closed stdout (`kedge status | head -1`) as [`OutputError::Closed`]
//! instead of panicking as `println!` does.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write as _};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (`| head -1`, `| grep -m1`): nothing failed,
    /// there is only no one left to print to.
    #[error("stdout was closed by its reader")]
    Closed,
    #[error("cannot write to stdout: {0}")]
    Write(#[source] io::Error),
    #[error("cannot encode the output as JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Write(e)
        }
    }
}

/// The exit status of a command whose stdout was closed under it: 128 +
/// SIGPIPE, what a shell reports for `git log` or `seq` cut short by
/// `| head -1` (they die of the signal; Kedge ignores it, as every Rust
/// program does, and exits with the same number, saying nothing).
pub const CLOSED_STDOUT_EXIT: u8 = 141;

/// Whether `error` is, or was caused by, stdout closed by its reader.
pub fn is_closed_stdout(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|e| matches!(e.downcast_ref::<OutputError>(), Some(OutputError::Closed)))
}

/// Stdout, for commands: `writeln!(out, …)?` fails with
/// [`OutputError::Closed`] once the reader is gone.
pub struct Out(io::StdoutLock<'static>);

pub fn stdout() -> Out {
    Out(io::stdout().lock())
}

impl Out {
    /// What `write!` and `writeln!` call.
    pub fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> Result<(), OutputError> {
        Ok(self.0.write_fmt(args)?)
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        Ok(self.0.write_all(bytes)?)
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        Ok(self.0.flush()?)
    }
}

/// A line on stderr for the operator (a warning, a hint). Never fails: a
/// closed stderr loses the advice, not the command.
pub fn note(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), OutputError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(OutputError::Json)?;
    text.push(b'\n');
    stdout().write_all(&text)
}

/// Columns padded to the widest cell plus three spaces, the layout of the
/// spec's `kedge history` example.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

const GAP: usize = 3;

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Cells are shown on one line, control characters escaped: they may
    /// come from commit messages, remotes and containers.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| one_line(&c.into()).into_owned())
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(columns) {
                text.push_str(cell);
                if i + 1 < columns {
                    let pad = widths[i] + GAP - cell.chars().count();
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

pub use crate::time::{local_time, rfc3339};

/// Text from outside Kedge (commit messages, errors, event messages, names
/// and images) for one line of text output: every control character (C0,
/// DEL, C1) escaped, newlines included, so that none reaches the terminal
/// (`ESC]0;…` retitles it, `ESC[2J` clears it). JSON output needs none of
/// this: JSON escapes them itself.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// The same for text printed over several lines: newlines are kept.
pub fn lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let shown = |c: char| !is_control(c) || (keep_newlines && c == '\n');
    if text.chars().all(shown) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if shown(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_layout_matches_the_spec_example() {
        let mut t = Table::new(["COMMIT", "STATUS", "DEPLOYED AT"]);
        t.row(["abc1234", "success", "2024-01-15 10:30:00"]);
        t.row(["ghi9012", "failed", "2024-01-14 12:00:00"]);
        assert_eq!(
            t.render(),
            "COMMIT    STATUS    DEPLOYED AT\n\
             abc1234   success   2024-01-15 10:30:00\n\
             ghi9012   failed    2024-01-14 12:00:00\n"
        );
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        for (text, line, multi) in [
            ("plain text", "plain text", "plain text"),
            ("ünïcode ✓", "ünïcode ✓", "ünïcode ✓"),
            ("a\\b", "a\\b", "a\\b"),
            (
                "\x1b]0;owned\x07",
                "\\x1b]0;owned\\x07",
                "\\x1b]0;owned\\x07",
            ),
            ("\x1b[2Jclear", "\\x1b[2Jclear", "\\x1b[2Jclear"),
            ("one\ntwo", "one\\ntwo", "one\ntwo"),
            ("cr\rtab\t", "cr\\rtab\\t", "cr\\rtab\\t"),
            ("\0nul\x7f", "\\x00nul\\x7f", "\\x00nul\\x7f"),
            (
                "c1\u{9b}2J\u{85}",
                "c1\\u{9b}2J\\u{85}",
                "c1\\u{9b}2J\\u{85}",
            ),
            ("\u{a0}nbsp", "\u{a0}nbsp", "\u{a0}nbsp"),
        ] {
            assert_eq!(one_line(text), line, "{text:?}");
            assert_eq!(lines(text), multi, "{text:?}");
        }
        assert!(matches!(one_line("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn table_cells_are_escaped() {
        let mut t = Table::new(["A", "B"]);
        t.row(["\x1b[2J", "x\ny"]);
        assert_eq!(t.render(), "A         B\n\\x1b[2J   x\\ny\n");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(1_705_314_600_000), "2024-01-15T10:30:00Z");
        assert_eq!(local_time(1_705_314_600_000).len(), 19);
    }
}
