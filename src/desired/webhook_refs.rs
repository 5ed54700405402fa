//! desired: the root `kedge.yaml`'s `webhooks.refs` (fleet.md §5), the
//! refs whose pushes wake the repository. Read by the webhook handler
//! through `ops`, checked when the root file is rendered.

use crate::config::interpolate::Env;
use crate::config::schema::{SchemaError, Section};
use crate::config::yaml::Node;

/// `webhooks.refs`: globs over full ref names (`refs/heads/main`,
/// `refs/tags/v*`); `*` also crosses `/`, as in a git refspec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefFilter(Vec<glob::Pattern>);

impl RefFilter {
    /// Whether a push of `full_ref` passes.
    pub fn allows(&self, full_ref: &str) -> bool {
        self.0.iter().any(|p| p.matches(full_ref))
    }

    /// The globs as written, for the reason of a push ignored.
    pub fn globs(&self) -> Vec<&str> {
        self.0.iter().map(glob::Pattern::as_str).collect()
    }
}

/// The filter of a root `kedge.yaml` (`doc`, its whole document); `None`
/// when it names none.
pub fn of(doc: &Node, env: Env) -> Result<Option<RefFilter>, SchemaError> {
    let Some(top) = lenient(doc) else {
        return Ok(None);
    };
    let Some(hooks) = top.section("webhooks", &["refs"])? else {
        return Ok(None);
    };
    let Some((refs, line)) = hooks.strings("refs", env)? else {
        return Ok(None);
    };
    let invalid = |value: &str, expected: String| SchemaError::InvalidValue {
        line,
        key: hooks.key_path("refs"),
        value: format!("{value:?}"),
        expected,
    };
    if refs.is_empty() {
        return Err(invalid(
            "[]",
            "at least one ref glob, such as refs/heads/main".into(),
        ));
    }
    let mut out = Vec::with_capacity(refs.len());
    for r in &refs {
        if !r.starts_with("refs/") {
            return Err(invalid(
                r,
                "a glob over full ref names, starting with refs/ (refs/heads/main, refs/tags/v*)"
                    .into(),
            ));
        }
        out.push(
            glob::Pattern::new(r)
                .map_err(|e| invalid(r, format!("a glob over full ref names ({})", e.msg)))?,
        );
    }
    Ok(Some(RefFilter(out)))
}

/// The root file's top level, whatever other keys it has: their names are
/// `kedge_yaml::parse`'s to check.
fn lenient(doc: &Node) -> Option<Section<'_>> {
    let keys: Vec<&str> = match &doc.value {
        crate::config::yaml::Value::Map(entries) => {
            entries.iter().map(|e| e.key.as_str()).collect()
        }
        _ => return None,
    };
    Section::new(doc, "", &keys).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<RefFilter>, String> {
        let doc = crate::config::yaml::parse(text).unwrap();
        of(&doc, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn refs_are_globs_over_full_ref_names() {
        let f = parse("webhooks:\n  refs: ['refs/heads/main', 'refs/tags/v*']\ndocker: {}\n")
            .unwrap()
            .unwrap();
        for (pushed, allowed) in [
            ("refs/heads/main", true),
            ("refs/heads/feature", false),
            ("refs/heads/main2", false),
            ("refs/tags/v1.2.0", true),
            ("refs/tags/v1/rc", true),
            ("refs/tags/1.0", false),
        ] {
            assert_eq!(f.allows(pushed), allowed, "{pushed}");
        }
        assert_eq!(f.globs(), ["refs/heads/main", "refs/tags/v*"]);
    }

    #[test]
    fn no_filter_and_bad_filters() {
        assert_eq!(parse("docker: {}\n"), Ok(None));
        assert_eq!(parse("webhooks: {}\n"), Ok(None));
        for (text, why) in [
            ("webhooks:\n  refs: [main]\n", "starting with refs/"),
            ("webhooks:\n  refs: []\n", "at least one ref glob"),
            (
                "webhooks:\n  refs: ['refs/heads/[']\n",
                "a glob over full ref names",
            ),
            (
                "webhooks:\n  branches: [main]\n",
                "unknown key `webhooks.branches`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
        // The root file's render refuses a bad filter, naming it.
        let e = crate::desired::kedge_yaml::parse("webhooks:\n  refs: [main]\n", &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("webhooks.refs"), "{e}");
        assert!(
            crate::desired::kedge_yaml::parse("webhooks:\n  refs: ['refs/heads/*']\n", &|_| None)
                .is_ok()
        );
    }
}
