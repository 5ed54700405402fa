//! web: the page shell every dashboard page shares — head, header with the
//! signed-in token and the sign-out form, the live-update status line —
//! and the small pieces of markup the pages repeat (states, commits, times).

use maud::{DOCTYPE, Markup, html};

use super::Session;
use super::assets;

/// A whole page. `stream`: the event stream its script follows (none for
/// pages that do not update live).
pub fn page(title: &str, session: Option<&Session>, stream: Option<&str>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Kedge" }
                link rel="stylesheet" href=(assets::CSS_PATH);
                link rel="icon" href=(assets::ICON_PATH);
                @if stream.is_some() {
                    script src=(assets::JS_PATH) defer {}
                }
            }
            body data-stream=[stream] {
                header.top {
                    a.brand href="/" { "Kedge" }
                    @if let Some(s) = session {
                        nav aria-label="Account" {
                            span.who {
                                "Signed in as " strong { (s.token_name) }
                                " (" (s.role.as_str()) ")"
                            }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    (main)
                    @if stream.is_some() {
                        p id="live" class="live" role="status" aria-live="polite" {
                            "Live updates need JavaScript; reload the page for the latest state."
                        }
                    }
                }
            }
        }
    }
}

/// The page of a refusal or failure.
pub fn error_page(status: u16, title: &str, message: &str) -> Markup {
    page(
        title,
        None,
        None,
        html! {
            h1 { (status) " " (title) }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the overview" } }
        },
    )
}

/// A sync state as text and colour: the word carries the meaning.
pub fn state(state: &str) -> Markup {
    html! { span class={ "state s-" (state) } { (state.replace('_', " ")) } }
}

/// A deployment status as text and colour.
pub fn status(status: &str) -> Markup {
    html! { span class={ "state d-" (status) } { (status.replace('_', " ")) } }
}

/// A commit's short hash, its full hash on hover.
pub fn commit(hash: &str) -> Markup {
    html! { code.commit title=(hash) { (short(hash)) } }
}

pub fn short(hash: &str) -> &str {
    hash.get(..7).unwrap_or(hash)
}

/// A time (ms since the epoch) as `2026-11-28 10:02:03 UTC`, machine-readable too.
pub fn time(ms: i64) -> Markup {
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
            (at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// An RFC 3339 time as the page shows it.
pub fn time_text(rfc3339: &str) -> Markup {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => time(t.timestamp_millis()),
        Err(_) => html! { (rfc3339) },
    }
}
