//! plan: pure. Which newer image a service may move to (fleet.md §3): its
//! policy over the tags a registry lists, within the tag's own pattern
//! (`v` prefix and suffixes like `-alpine` kept), never a version that
//! failed its gate; and whether an update window is open now.

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

/// `updates.window`: days of the week and a time span in UTC, e.g.
/// `Sat 02:00-05:00 UTC`, `Mon-Fri 22:00-06:00 UTC` (a span past
/// midnight belongs to the day it starts), `Sun,Wed 01:00-02:00 UTC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday = 0.
    days: [bool; 7],
    start: u32,
    end: u32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    pub fn parse(text: &str) -> Result<Window, String> {
        let expected = || format!("{text:?} is not a window like \"Sat 02:00-05:00 UTC\"");
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (days_part, span, zone) = match parts.as_slice() {
            [d, s, z] => (*d, *s, *z),
            [d, s] => (*d, *s, "UTC"),
            _ => return Err(expected()),
        };
        if !zone.eq_ignore_ascii_case("UTC") {
            return Err(format!("{text:?}: windows are in UTC (write `UTC`)"));
        }
        let day = |d: &str| DAYS.iter().position(|n| n.eq_ignore_ascii_case(d));
        let mut days = [false; 7];
        for item in days_part.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(expected)?, day(b).ok_or_else(expected)?);
                    let mut d = a;
                    loop {
                        days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(item).ok_or_else(expected)?] = true,
            }
        }
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (a, b) = span.split_once('-').ok_or_else(expected)?;
        let (start, end) = (
            minutes(a).ok_or_else(expected)?,
            minutes(b).ok_or_else(expected)?,
        );
        if start == end {
            return Err(format!("{text:?}: the window is empty"));
        }
        Ok(Window { days, start, end })
    }

    /// Whether `at` (milliseconds since the epoch) falls in the window.
    pub fn contains(&self, at_ms: i64) -> bool {
        let minutes = at_ms.div_euclid(60_000);
        let day_index = minutes.div_euclid(24 * 60);
        let minute = minutes.rem_euclid(24 * 60) as u32;
        // 1970-01-01 was a Thursday (index 3).
        let weekday = (day_index + 3).rem_euclid(7) as usize;
        let yesterday = (weekday + 6) % 7;
        if self.start < self.end {
            self.days[weekday] && minute >= self.start && minute < self.end
        } else {
            // Past midnight: the evening of a listed day, or the early
            // hours after one.
            (self.days[weekday] && minute >= self.start)
                || (self.days[yesterday] && minute < self.end)
        }
    }
}

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

    /// 2026-12-05 was a Saturday.
    fn at(day: i64, h: i64, m: i64) -> i64 {
        let sat = chrono::NaiveDate::from_ymd_opt(2026, 12, 5)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        sat + ((day * 24 + h) * 60 + m) * 60_000
    }

    #[test]
    fn windows_hold_updates_outside_their_hours() {
        let w = Window::parse("Sat 02:00-05:00 UTC").unwrap();
        assert!(w.contains(at(0, 2, 0)));
        assert!(w.contains(at(0, 4, 59)));
        assert!(!w.contains(at(0, 5, 0)));
        assert!(!w.contains(at(0, 1, 59)));
        assert!(!w.contains(at(1, 3, 0)), "Sunday");
        let night = Window::parse("Mon-Fri 22:00-06:00 UTC").unwrap();
        assert!(night.contains(at(2, 23, 0)), "Monday evening");
        assert!(night.contains(at(3, 5, 0)), "Tuesday early, after Monday");
        assert!(!night.contains(at(2, 5, 0)), "Monday early follows Sunday");
        assert!(night.contains(at(7, 1, 0)), "Saturday early follows Friday");
        let list = Window::parse("Sun,Wed 01:00-02:00").unwrap();
        assert!(list.contains(at(1, 1, 30)));
        assert!(list.contains(at(4, 1, 30)));
        for bad in [
            "Sat",
            "Sat 02:00-05:00 CET",
            "Sat 2-5 UTC",
            "Xyz 02:00-05:00 UTC",
            "Sat 02:00-02:00 UTC",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
