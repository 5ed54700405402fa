//! desired: the services `deploy.ignore`, `deploy.before` and
//! `deploy.after` name, checked against the rendered stack before
//! anything is applied.

use super::render::{Desired, RenderError};

/// `deploy.ignore`, `before` or `after` naming a service the stack does
/// not have (under a profile not enabled counts as had: hooks usually
/// are): a typo would gate what it meant to leave alone, or skip a
/// migration. Hooks need compose's `run`.
pub fn refused(desired: &Desired) -> Option<RenderError> {
    let gate = &desired.kedge.gate;
    if desired.kedge.target == crate::model::settings::Target::Swarm
        && !(gate.before.is_empty() && gate.after.is_empty())
    {
        return Some(RenderError::HooksOnSwarm);
    }
    let known = |s: &String| desired.services.contains_key(s) || desired.dormant.contains(s);
    let (key, bad) = [
        ("ignore", &gate.ignore),
        ("before", &gate.before),
        ("after", &gate.after),
    ]
    .into_iter()
    .find_map(|(key, list)| Some((key, list.iter().find(|s| !known(s))?)))?;
    let mut services: Vec<String> = desired
        .services
        .keys()
        .chain(desired.dormant.iter())
        .cloned()
        .collect();
    services.sort();
    Some(RenderError::UnknownService {
        key,
        service: bad.clone(),
        services,
    })
}
