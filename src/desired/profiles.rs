//! desired: compose profiles. A commit enables some (`docker.profiles`);
//! the services its files define under the others are dormant: not
//! deployed, and their containers, started by hand, are not extra.

use serde_json::Value;

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
