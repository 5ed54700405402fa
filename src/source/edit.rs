//! source: the smallest edit of a stack's files that moves one service's
//! image to a new tag (fleet.md §3, write-back). Pure: file texts in, one
//! changed file out; the tag is changed where it is written — the image
//! line, a variable's value in an env file, or a `${VAR:-default}` —
//! and nowhere else, so comments and formatting stay as they were.

use std::ops::Range;

use crate::config::yaml::{self, Value};

/// A file of the stack, its path relative to the repository.
#[derive(Debug, Clone)]
pub struct FileText {
    pub path: String,
    pub text: String,
    /// A SOPS-encrypted file: never edited.
    pub encrypted: bool,
}

/// The edit: `path`'s new text, and the line it changes (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub path: String,
    pub line: usize,
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("service {service} names no image in {files}")]
    NoImage { service: String, files: String },
    #[error("{path} line {line}: the image of {service} is not written on that line")]
    NotOnLine {
        path: String,
        line: u32,
        service: String,
    },
    #[error(
        "{path} line {line}: `{written}` reads as {read}, not the deployed {deployed} (the branch moved, or a variable is set outside the repository)"
    )]
    Differs {
        path: String,
        line: u32,
        written: String,
        read: String,
        deployed: String,
    },
    #[error("the tag {tag} is made of several parts in `{written}`: edit it by hand")]
    Split { tag: String, written: String },
    #[error("{path} is encrypted with SOPS: Kedge never edits it")]
    Sops { path: String },
}

/// Where a piece of the read image came from.
#[derive(Debug, Clone)]
struct Piece {
    /// The file and the byte range in it.
    file: usize,
    range: Range<usize>,
    text: String,
}

/// The edit that makes `service`'s image, read as `deployed` (its
/// `name:tag` as compose resolved it), name `to_tag` instead of its tag.
/// `compose`: the stack's compose files in order (a later one overrides);
/// `env`: the env files compose interpolates from, in order.
pub fn tag_edit(
    compose: &[FileText],
    env: &[FileText],
    service: &str,
    deployed: &str,
    to_tag: &str,
) -> Result<Edit, EditError> {
    let (file, line, written) = image_line(compose, service)?;
    let source = &compose[file];
    let line_range = line_range(&source.text, line as usize).ok_or(EditError::NotOnLine {
        path: source.path.clone(),
        line,
        service: service.to_string(),
    })?;
    // The value as written on the line: plain, or in quotes without escapes.
    let at = source.text[line_range.clone()]
        .find(&written)
        .map(|i| line_range.start + i)
        .ok_or(EditError::NotOnLine {
            path: source.path.clone(),
            line,
            service: service.to_string(),
        })?;
    let mut files: Vec<&FileText> = compose.iter().collect();
    let env_base = files.len();
    files.extend(env.iter());
    let values = env_values(env, env_base);
    let pieces = expand(&written, at, file, &values);
    let read: String = pieces.iter().map(|p| p.text.as_str()).collect();
    let differs = || EditError::Differs {
        path: source.path.clone(),
        line,
        written: written.clone(),
        read: read.clone(),
        deployed: deployed.to_string(),
    };
    if read != deployed {
        return Err(differs());
    }
    let tag = tag_of(deployed).ok_or_else(differs)?;
    let new_tag = to_tag;
    // The tag is the end of the read image. The piece that changes is the
    // one whose part of the tag is all that differs: the rest of the tag
    // (a `v` written before `$VER`, an `-alpine` after) stays as written.
    let tag_start = read.len() - tag.len();
    let mut offset = 0;
    let mut spans = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let end = offset + piece.text.len();
        if end > tag_start {
            spans.push((
                i,
                offset.max(tag_start) - offset,
                end - tag_start.max(offset),
            ));
        }
        offset = end;
    }
    // Longest part first: a whole tag in one piece is the usual case.
    spans.sort_by_key(|(_, _, len)| std::cmp::Reverse(*len));
    for (i, from, len) in spans {
        let piece = &pieces[i];
        let at_tag = offset_in_tag(&pieces, i, tag_start);
        let (before, after) = (&tag[..at_tag], &tag[at_tag + len..]);
        let Some(middle) = new_tag
            .strip_prefix(before)
            .and_then(|rest| rest.strip_suffix(after))
        else {
            continue;
        };
        let target = files[piece.file];
        if target.encrypted {
            return Err(EditError::Sops {
                path: target.path.clone(),
            });
        }
        let start = piece.range.start + from;
        let mut text = target.text.clone();
        text.replace_range(start..start + len, middle);
        let line = target.text[..start].matches('\n').count() + 1;
        return Ok(Edit {
            path: target.path.clone(),
            line,
            text,
        });
    }
    Err(EditError::Split {
        tag: tag.to_string(),
        written,
    })
}

/// Where piece `i`'s part of the tag starts within the tag.
fn offset_in_tag(pieces: &[Piece], i: usize, tag_start: usize) -> usize {
    let start: usize = pieces[..i].iter().map(|p| p.text.len()).sum();
    start.saturating_sub(tag_start)
}

/// The tag of `name:tag` (no digest): after the last `:` past the last `/`.
fn tag_of(image: &str) -> Option<&str> {
    let tail = image.rsplit('/').next()?;
    let (_, tag) = tail.rsplit_once(':')?;
    (!tag.is_empty() && !image.contains('@')).then_some(tag)
}

/// The file index, line and text of the last `services.<service>.image`.
fn image_line(compose: &[FileText], service: &str) -> Result<(usize, u32, String), EditError> {
    for (i, file) in compose.iter().enumerate().rev() {
        let Ok(doc) = yaml::parse(&file.text) else {
            continue;
        };
        let found = entry(&doc.value, "services")
            .and_then(|s| entry(&s.node.value, service))
            .and_then(|s| entry(&s.node.value, "image"));
        if let Some(image) = found
            && let Value::Scalar(text) = &image.node.value
        {
            return Ok((i, image.node.line, text.clone()));
        }
    }
    Err(EditError::NoImage {
        service: service.to_string(),
        files: compose
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn entry<'a>(value: &'a Value, key: &str) -> Option<&'a yaml::Entry> {
    match value {
        Value::Map(entries) => entries.iter().find(|e| e.key == key),
        _ => None,
    }
}

/// The byte range of line `n` (1-based), without its newline.
fn line_range(text: &str, n: usize) -> Option<Range<usize>> {
    let mut start = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == n {
            let content = line.trim_end_matches(['\n', '\r']);
            return Some(start..start + content.len());
        }
        start += line.len();
    }
    None
}

/// A variable's value as an env file sets it: the last setting wins.
#[derive(Debug, Clone)]
struct EnvValue {
    file: usize,
    range: Range<usize>,
    text: String,
}

/// `KEY=value` lines of dotenv files (`export`, quotes and trailing
/// comments as compose reads them), by name; the last file wins.
fn env_values(env: &[FileText], base: usize) -> std::collections::HashMap<String, EnvValue> {
    let mut out = std::collections::HashMap::new();
    for (i, file) in env.iter().enumerate() {
        let mut start = 0;
        for line in file.text.split_inclusive('\n') {
            let content = line.trim_end_matches(['\n', '\r']);
            if let Some((name, range)) = dotenv_value(content) {
                let range = start + range.start..start + range.end;
                out.insert(
                    name,
                    EnvValue {
                        file: base + i,
                        text: file.text[range.clone()].to_string(),
                        range,
                    },
                );
            }
            start += line.len();
        }
    }
    out
}

/// The name and value range of a `KEY=value` line.
fn dotenv_value(line: &str) -> Option<(String, Range<usize>)> {
    let lead = line.len() - line.trim_start().len();
    let rest = &line[lead..];
    let (skip, rest) = match rest.strip_prefix("export ") {
        Some(r) => (lead + 7 + (r.len() - r.trim_start().len()), r.trim_start()),
        None => (lead, rest),
    };
    if rest.starts_with('#') {
        return None;
    }
    let eq = rest.find('=')?;
    let name = rest[..eq].trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let after = skip + eq + 1;
    let value = &line[after..];
    let pad = value.len() - value.trim_start().len();
    let value = value.trim_start();
    let start = after + pad;
    let range = match value.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let close = value[1..].find(q)?;
            start + 1..start + 1 + close
        }
        _ => {
            // An unquoted value ends at ` #` (a comment) or the line's end.
            let end = value.find(" #").unwrap_or(value.len());
            start..start + value[..end].trim_end().len()
        }
    };
    Some((name.to_string(), range))
}

/// `written` (at byte `at` of file `file`) read as compose interpolates
/// it, each piece with where it came from.
fn expand(
    written: &str,
    at: usize,
    file: usize,
    values: &std::collections::HashMap<String, EnvValue>,
) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let literal = |pieces: &mut Vec<Piece>, range: Range<usize>| {
        if !range.is_empty() {
            pieces.push(Piece {
                file,
                text: written[range.clone()].to_string(),
                range: at + range.start..at + range.end,
            });
        }
    };
    let bytes = written.as_bytes();
    let (mut i, mut lit) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        literal(&mut pieces, lit..i);
        if bytes.get(i + 1) == Some(&b'$') {
            // `$$` is a literal `$`: one byte of the two.
            literal(&mut pieces, i..i + 1);
            i += 2;
            lit = i;
            continue;
        }
        let (name, default, end) = if bytes.get(i + 1) == Some(&b'{') {
            let close = written[i..].find('}').map_or(written.len(), |c| i + c);
            let inner = &written[i + 2..close];
            let split = inner.find([':', '-', '?', '+']);
            let name = &inner[..split.unwrap_or(inner.len())];
            // `${VAR:-def}` and `${VAR-def}`: the default's range.
            let default = split.and_then(|s| {
                let op = &inner[s..];
                let skip = if op.starts_with(":-") {
                    2
                } else if op.starts_with('-') {
                    1
                } else {
                    return None;
                };
                let from = i + 2 + s + skip;
                Some(from..close)
            });
            (name.to_string(), default, (close + 1).min(written.len()))
        } else {
            let len = written[i + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(written.len() - i - 1);
            (written[i + 1..i + 1 + len].to_string(), None, i + 1 + len)
        };
        match (values.get(&name), default) {
            // A set variable wins, unless it is empty under `:-`.
            (Some(v), _) if !v.text.is_empty() || !written[i..end].contains(":-") => {
                pieces.push(Piece {
                    file: v.file,
                    range: v.range.clone(),
                    text: v.text.clone(),
                })
            }
            (_, Some(d)) => literal(&mut pieces, d),
            (_, None) => {}
        }
        i = end;
        lit = end;
    }
    literal(&mut pieces, lit..bytes.len());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, text: &str) -> FileText {
        FileText {
            path: path.to_string(),
            text: text.to_string(),
            encrypted: text.contains("sops_mac="),
        }
    }

    /// The changed lines of an edit: (before, after).
    fn changed(before: &[FileText], edit: &Edit) -> Vec<(String, String)> {
        let old = &before.iter().find(|f| f.path == edit.path).unwrap().text;
        old.lines()
            .zip(edit.text.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_tag_is_changed_where_it_is_written() {
        let compose = "# the app\nservices:\n  web:\n    image: \"reg:5000/app:1.4.2\"  # pinned\n    ports: [\"80\"]\n  db:\n    image: db:1.4.2\n";
        let files = [f("compose.yaml", compose)];
        let edit = tag_edit(&files, &[], "web", "reg:5000/app:1.4.2", "1.4.3").unwrap();
        assert_eq!(edit.line, 4);
        assert_eq!(
            changed(&files, &edit),
            [(
                "    image: \"reg:5000/app:1.4.2\"  # pinned".to_string(),
                "    image: \"reg:5000/app:1.4.3\"  # pinned".to_string()
            )]
        );
        assert_eq!(edit.text.lines().count(), compose.lines().count());

        // An override file later in the list is the one that counts.
        let files = [
            f("compose.yaml", compose),
            f(
                "prod.yaml",
                "services:\n  web:\n    image: app:v2.0.0-alpine\n",
            ),
        ];
        let edit = tag_edit(&files, &[], "web", "app:v2.0.0-alpine", "v2.0.1-alpine").unwrap();
        assert_eq!(edit.path, "prod.yaml");
        assert_eq!(
            edit.text,
            "services:\n  web:\n    image: app:v2.0.1-alpine\n"
        );
    }

    #[test]
    fn an_interpolated_tag_is_changed_in_the_env_file_that_sets_it() {
        let compose = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:${APP_TAG}\n",
        )];
        let env = [
            f(".env", "# versions\nAPP_TAG=1.4.2 # keep\nOTHER=1.4.2\n"),
            f("prod.env", "export APP_TAG=\"1.4.2\"\n"),
        ];
        let edit = tag_edit(&compose, &env, "web", "app:1.4.2", "1.4.3").unwrap();
        assert_eq!(edit.path, "prod.env", "the last file setting it wins");
        assert_eq!(edit.text, "export APP_TAG=\"1.4.3\"\n");
        let edit = tag_edit(&compose, &env[..1], "web", "app:1.4.2", "1.4.3").unwrap();
        assert_eq!(
            (edit.path.as_str(), edit.line, edit.text.as_str()),
            (".env", 2, "# versions\nAPP_TAG=1.4.3 # keep\nOTHER=1.4.2\n")
        );
        // Part of a tag: the variable's part moves.
        let compose = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:v$VER-alpine\n",
        )];
        let env = [f(".env", "VER=1.4.2\n")];
        let edit = tag_edit(&compose, &env, "web", "app:v1.4.2-alpine", "v1.4.3-alpine").unwrap();
        assert_eq!(edit.text, "VER=1.4.3\n");
        // A tag made of two variables cannot move as one.
        let compose = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:${MAJOR}.${MINOR}\n",
        )];
        let env = [f(".env", "MAJOR=1\nMINOR=4\n")];
        let err = tag_edit(&compose, &env, "web", "app:1.4", "2.0");
        assert!(matches!(err, Err(EditError::Split { .. })), "{err:?}");
        // A whole image in a variable.
        let compose = [f("compose.yaml", "services:\n  web:\n    image: ${WEB}\n")];
        let env = [f(".env", "WEB=app:1.4.2\n")];
        let edit = tag_edit(&compose, &env, "web", "app:1.4.2", "1.4.3").unwrap();
        assert_eq!(edit.text, "WEB=app:1.4.3\n");
        // An unset variable's default in the compose file.
        let compose = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:${TAG:-1.4.2}\n",
        )];
        let edit = tag_edit(&compose, &[], "web", "app:1.4.2", "1.4.3").unwrap();
        assert_eq!(
            edit.text,
            "services:\n  web:\n    image: app:${TAG:-1.4.3}\n"
        );
    }

    #[test]
    fn an_empty_variable_gives_way_to_its_colon_dash_default() {
        let compose = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:${TAG:-1.4.2}\n",
        )];
        let env = [f(".env", "TAG=\n")];
        let edit = tag_edit(&compose, &env, "web", "app:1.4.2", "1.4.3").unwrap();
        assert_eq!(
            (edit.path.as_str(), edit.text.as_str()),
            (
                "compose.yaml",
                "services:\n  web:\n    image: app:${TAG:-1.4.3}\n"
            )
        );
        // `-` alone keeps an empty value: it reads as `app:`, not as deployed.
        let compose = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:${TAG-1.4.2}\n",
        )];
        let err = tag_edit(&compose, &env, "web", "app:1.4.2", "1.4.3").unwrap_err();
        assert!(matches!(err, EditError::Differs { .. }), "{err}");
    }

    #[test]
    fn what_cannot_be_edited_safely_is_refused() {
        let compose = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:${APP_TAG}\n",
        )];
        // Set by the environment, not the repository.
        let err = tag_edit(&compose, &[], "web", "app:1.4.2", "1.4.3").unwrap_err();
        assert!(matches!(err, EditError::Differs { .. }), "{err}");
        // A SOPS-encrypted env file (values left in clear by its rules).
        let sops = FileText {
            encrypted: true,
            ..f("secrets.env", "APP_TAG=1.4.2\nsops_version=3.11.0\n")
        };
        let err = tag_edit(&compose, &[sops], "web", "app:1.4.2", "1.4.3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "secrets.env is encrypted with SOPS: Kedge never edits it"
        );
        // The branch moved the image on: not the deployed one.
        let files = [f(
            "compose.yaml",
            "services:\n  web:\n    image: app:1.5.0\n",
        )];
        let err = tag_edit(&files, &[], "web", "app:1.4.2", "1.4.3").unwrap_err();
        assert!(
            err.to_string().contains("not the deployed app:1.4.2"),
            "{err}"
        );
        // No image line (a build).
        let files = [f("compose.yaml", "services:\n  web:\n    build: .\n")];
        assert!(matches!(
            tag_edit(&files, &[], "web", "app:1.4.2", "1.4.3"),
            Err(EditError::NoImage { .. })
        ));
        // A value split over lines is not found as written on its line.
        let files = [f(
            "compose.yaml",
            "services:\n  web:\n    image: \"app:\\\n      1.4.2\"\n",
        )];
        let err = tag_edit(&files, &[], "web", "app:1.4.2", "1.4.3");
        assert!(matches!(err, Err(EditError::NotOnLine { .. })), "{err:?}");
    }

    #[test]
    fn dotenv_values_are_found_with_their_quotes_and_comments() {
        let cases = [
            ("A=1", Some(("A", "1"))),
            ("  export B = 'x y' # c", Some(("B", "x y"))),
            ("C=\"q\"", Some(("C", "q"))),
            ("D=v # note", Some(("D", "v"))),
            ("# E=1", None),
            ("not a line", None),
        ];
        for (line, want) in cases {
            let got = dotenv_value(line).map(|(n, r)| (n, line[r].to_string()));
            assert_eq!(
                got,
                want.map(|(n, v)| (n.to_string(), v.to_string())),
                "{line}"
            );
        }
    }
}
