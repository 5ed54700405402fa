//! `${VAR}` / `${VAR:-default}` expansion of Kedge's own YAML files from
//! Kedge's environment (compose files are interpolated by compose itself).

/// Looks a variable up; a function so tests need not touch the process env.
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// Runs `read` with an `Env` that hides every variable it looks up from
/// Kedge's children: for keys that hold a secret (`url: ${SLACK_URL}`), so
/// that no compose file can hand the value on to a container.
pub fn hiding_secrets<R>(env: Env, read: impl FnOnce(Env) -> R) -> R {
    let hiding = |name: &str| {
        crate::process::hide_env(name);
        env(name)
    };
    read(&hiding)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("variable `{0}` is not set (write ${{{0}:-default}} for a fallback)")]
    Unset(String),
    #[error("unterminated `${{` in {0:?}")]
    Unterminated(String),
    #[error("invalid variable name {0:?}")]
    BadName(String),
}

/// Expands `${NAME}`, `${NAME:-default}` (default when unset or empty),
/// `${NAME-default}` (default when unset) and `$$` (a literal `$`). A `$` not
/// followed by `{` or `$` is kept as it is. An unset variable without a
/// default is an error rather than an empty string: a silently empty project
/// name or mode is worse than a clear refusal.
pub fn interpolate(text: &str, env: Env) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start
                .find('}')
                .ok_or_else(|| InterpolateError::Unterminated(text.to_string()))?;
            out.push_str(&expand(&body_start[..end], env)?);
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(body: &str, env: Env) -> Result<String, InterpolateError> {
    let (name, default, empty_is_unset) = if let Some((n, d)) = body.split_once(":-") {
        (n, Some(d), true)
    } else if let Some((n, d)) = body.split_once('-') {
        (n, Some(d), false)
    } else {
        (body, None, false)
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(InterpolateError::BadName(name.to_string()));
    }
    match (env(name), default) {
        (Some(v), Some(d)) if v.is_empty() && empty_is_unset => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(InterpolateError::Unset(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "MODE" => Some("notify".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// Regression: `url: ${SLACK_URL}` of a notification sink stayed in
    /// the environment of compose, which could hand it to a container.
    #[test]
    fn variables_read_for_a_secret_are_hidden_from_children() {
        // Set by cargo for the test binary; no other test reads it at run time.
        assert!(crate::process::repo_env("CARGO_PKG_DESCRIPTION").is_some());
        let value = hiding_secrets(&env, |env| interpolate("${MODE}", env)).unwrap();
        assert_eq!(value, "notify");
        let real = |name: &str| std::env::var(name).ok();
        hiding_secrets(&real, |env| interpolate("x${CARGO_PKG_DESCRIPTION}", env)).unwrap();
        assert_eq!(crate::process::repo_env("CARGO_PKG_DESCRIPTION"), None);
    }

    #[test]
    fn table() {
        let ok: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("${MODE}", "notify"),
            ("x-${MODE}-y", "x-notify-y"),
            ("${UNSET:-auto}", "auto"),
            ("${EMPTY:-auto}", "auto"),
            ("${EMPTY-auto}", ""),
            ("${UNSET-auto}", "auto"),
            ("${MODE:-auto}", "notify"),
            ("$$MODE", "$MODE"),
            ("cost $5", "cost $5"),
            ("trailing $", "trailing $"),
            ("${UNSET:-}", ""),
        ];
        for (input, want) in ok {
            assert_eq!(interpolate(input, &env).as_deref(), Ok(*want), "{input}");
        }
        let bad: &[(&str, InterpolateError)] = &[
            ("${UNSET}", InterpolateError::Unset("UNSET".into())),
            ("${MODE", InterpolateError::Unterminated("${MODE".into())),
            ("${1X}", InterpolateError::BadName("1X".into())),
            ("${}", InterpolateError::BadName(String::new())),
        ];
        for (input, want) in bad {
            assert_eq!(interpolate(input, &env).as_ref(), Err(want), "{input}");
        }
    }
}
