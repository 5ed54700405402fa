//! How read commands speak: aligned text tables for people, one JSON
//! document on stdout for programs.

use std::io::Write;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
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

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
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
    fn times() {
        assert_eq!(rfc3339(1_705_314_600_000), "2024-01-15T10:30:00Z");
        assert_eq!(local_time(1_705_314_600_000).len(), 19);
    }
}
