//! outbound: the HTTP client of Kedge's own requests (notification sinks,
//! image registries): a global timeout, no redirect followed (a 3xx would
//! carry credentials to wherever `Location` points), every status an
//! answer for the caller to judge, and Kedge's user agent.

use std::time::Duration;

pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("kedge/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}
