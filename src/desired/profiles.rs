//! desired: compose profiles. A commit enables some (`docker.profiles`);
//! the services its files define under the others are dormant: not
//! deployed, and their containers, started by hand, are not extra.

use serde_json::Value;

use super::render::{RenderError, config};
use crate::compose::Compose;

/// `project` (given no profiles) as the `enabled` profiles make it, and its
/// dormant services, sorted. Rendered with every profile first
/// (`--profile '*'`): that shows the services of the profiles left off.
/// Only when there are some does compose render again with the enabled
/// profiles alone: the common case is one call. A service left off may not
/// render (an env file it names is absent): then the enabled profiles are
/// rendered alone, and no service is known dormant.
pub async fn render(
    project: &Compose,
    enabled: &[String],
    limit: u64,
) -> Result<(Value, Vec<String>), RenderError> {
    let all = project.clone().with_profiles(&["*".into()]);
    let enabled_project = &project.clone().with_profiles(enabled);
    let (doc, dormant) = match config(&all, limit).await {
        Ok(everything) => {
            let dormant = dormant(&everything, enabled);
            if dormant.is_empty() {
                (everything, dormant)
            } else {
                (config(enabled_project, limit).await?, dormant)
            }
        }
        Err(RenderError::Compose(e)) => {
            let doc = config(enabled_project, limit).await?;
            tracing::warn!(
                project = %project.project,
                "the services of profiles not enabled do not render, so their containers count as extra: {}",
                crate::error_chain(&e)
            );
            (doc, Vec::new())
        }
        Err(e) => return Err(e),
    };
    // A dormant service that an enabled one needs is rendered after all.
    let dormant = dormant
        .into_iter()
        .filter(|s| doc["services"].get(s).is_none())
        .collect();
    Ok((doc, dormant))
}

/// The services of a project rendered with every profile that none of the
/// `enabled` profiles turns on, sorted.
pub fn dormant(doc: &Value, enabled: &[String]) -> Vec<String> {
    let empty = serde_json::Map::new();
    doc["services"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .filter(|(_, svc)| {
            let profiles: Vec<&str> = svc["profiles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            !profiles.is_empty() && !profiles.iter().any(|p| enabled.iter().any(|e| e == p))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dormant_services_are_those_no_enabled_profile_turns_on() {
        let d = json!({"services": {
            "web": {"image": "a"},
            "tools": {"image": "a", "profiles": ["debug"]},
            "both": {"image": "a", "profiles": ["debug", "ops"]},
            "ops": {"image": "a", "profiles": ["ops"]}
        }});
        let on = |p: &[&str]| dormant(&d, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(on(&[]), ["both", "ops", "tools"]);
        assert_eq!(on(&["debug"]), ["ops"]);
        assert_eq!(on(&["ops"]), ["tools"]);
        assert!(on(&["debug", "ops"]).is_empty());
        assert!(dormant(&json!({}), &[]).is_empty());
    }
}
