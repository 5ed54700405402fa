//! plan: pure. Which newer image a service may move to (fleet.md §3): its
//! policy over the tags a registry lists, within the tag's own pattern
//! (`v` prefix and suffixes like `-alpine` kept), never a version that
//! failed its gate. Its window is `plan::window`'s.

use std::cmp::Ordering;

/// `updates.services.<name>.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The tag stays; a new digest of it is an update.
    Digest,
    Patch,
    Minor,
    Major,
    None,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        Some(match s {
            "digest" => Policy::Digest,
            "patch" => Policy::Patch,
            "minor" => Policy::Minor,
            "major" => Policy::Major,
            "none" => Policy::None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Digest => "digest",
            Policy::Patch => "patch",
            Policy::Minor => "minor",
            Policy::Major => "major",
            Policy::None => "none",
        }
    }
}

/// A tag read as a version: what comes before the first digit, one to
/// three numbers, and the rest. `v1.2.3-alpine` → ("v", [1, 2, 3], "-alpine").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version<'a> {
    pub prefix: &'a str,
    pub numbers: Vec<u64>,
    pub suffix: &'a str,
}

impl<'a> Version<'a> {
    pub fn parse(tag: &'a str) -> Option<Version<'a>> {
        let start = tag.find(|c: char| c.is_ascii_digit())?;
        let (prefix, rest) = tag.split_at(start);
        // A prefix is letters only (`v`, `release-`): `1.2.3` and `v1.2.3`.
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '-' || c == '_')
        {
            return None;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        // `1.2.` keeps its dot in the suffix.
        let core = rest[..end].trim_end_matches('.');
        let suffix = &rest[core.len()..];
        let numbers: Vec<u64> = core
            .split('.')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        if numbers.is_empty() || numbers.len() > 3 {
            return None;
        }
        Some(Version {
            prefix,
            numbers,
            suffix,
        })
    }

    /// The same pattern: prefix, suffix and number of components.
    fn same_pattern(&self, other: &Version) -> bool {
        self.prefix == other.prefix
            && self.suffix == other.suffix
            && self.numbers.len() == other.numbers.len()
    }
}

/// The tag `current` may move to under `policy` among `tags`: the highest
/// of its pattern above it that the policy allows, matches `tag_pattern`
/// (when given) and is not in `failed`. `None` for `digest` and `none`
/// (no other tag is ever a candidate) and when nothing qualifies.
pub fn candidate<'t>(
    current: &str,
    tags: &'t [String],
    policy: Policy,
    tag_pattern: Option<&regex::Regex>,
    failed: &[String],
) -> Option<&'t str> {
    let cur = Version::parse(current)?;
    // How many leading numbers must stay: patch keeps all but the last,
    // minor keeps the major, major keeps nothing.
    let keep = match policy {
        Policy::Digest | Policy::None => return None,
        Policy::Patch => cur.numbers.len().saturating_sub(1),
        Policy::Minor => usize::from(cur.numbers.len() > 1),
        Policy::Major => 0,
    };
    tags.iter()
        .filter(|t| tag_pattern.is_none_or(|re| re.is_match(t)))
        .filter(|t| !failed.iter().any(|f| f == *t))
        .filter_map(|t| Version::parse(t).map(|v| (t.as_str(), v)))
        .filter(|(_, v)| v.same_pattern(&cur))
        .filter(|(_, v)| v.numbers[..keep] == cur.numbers[..keep])
        .filter(|(_, v)| v.numbers.cmp(&cur.numbers) == Ordering::Greater)
        .max_by(|(_, a), (_, b)| a.numbers.cmp(&b.numbers))
        .map(|(t, _)| t)
}

/// `updates.window`: when `apply` may act (see `plan::window`).
pub use super::window::Window;

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn candidates_follow_the_policy_within_the_tags_own_pattern() {
        let all = tags(&[
            "1.4.2",
            "1.4.3",
            "1.4.10",
            "1.5.0",
            "2.0.0",
            "latest",
            "1.4.3-alpine",
            "1.4.4-rc1",
            "v1.9.9",
            "1.4",
        ]);
        let cases: &[(&str, Policy, Option<&str>)] = &[
            ("1.4.2", Policy::Patch, Some("1.4.10")),
            ("1.4.2", Policy::Minor, Some("1.5.0")),
            ("1.4.2", Policy::Major, Some("2.0.0")),
            ("1.4.2", Policy::Digest, None),
            ("1.4.2", Policy::None, None),
            ("2.0.0", Policy::Major, None),
            // The suffix is kept: only `-alpine` tags are candidates.
            ("1.4.2-alpine", Policy::Patch, Some("1.4.3-alpine")),
            // And the prefix: `v1.9.9` is not a candidate for `1.4.2`.
            ("v1.0.0", Policy::Major, Some("v1.9.9")),
            // Two components stay two.
            ("1.3", Policy::Minor, Some("1.4")),
            // Not a version: no candidate.
            ("latest", Policy::Major, None),
        ];
        for (current, policy, want) in cases {
            assert_eq!(
                candidate(current, &all, *policy, None, &[]),
                *want,
                "{current} under {policy:?}"
            );
        }
    }

    #[test]
    fn a_failed_version_and_a_pattern_miss_are_never_proposed() {
        let all = tags(&["1.4.2", "1.4.3", "1.4.4"]);
        let failed = tags(&["1.4.4"]);
        assert_eq!(
            candidate("1.4.2", &all, Policy::Patch, None, &failed),
            Some("1.4.3")
        );
        let only_3 = regex::Regex::new(r"^1\.4\.3$").unwrap();
        assert_eq!(
            candidate("1.4.2", &all, Policy::Patch, Some(&only_3), &[]),
            Some("1.4.3")
        );
        let none = regex::Regex::new(r"^2\.").unwrap();
        assert_eq!(
            candidate("1.4.2", &all, Policy::Patch, Some(&none), &[]),
            None
        );
    }

    #[test]
    fn versions_parse_with_their_prefix_and_suffix() {
        let v = Version::parse("v1.2.3-alpine").unwrap();
        assert_eq!(
            (v.prefix, v.numbers.clone(), v.suffix),
            ("v", vec![1, 2, 3], "-alpine")
        );
        let v = Version::parse("7").unwrap();
        assert_eq!(v.numbers, vec![7]);
        assert_eq!(Version::parse("latest"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert_eq!(
            Version::parse("sha-1.2"),
            Some(Version {
                prefix: "sha-",
                numbers: vec![1, 2],
                suffix: ""
            })
        );
    }
}
