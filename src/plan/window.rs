//! plan: time windows — `reconciliation.windows` (fleet.md §5) and
//! `updates.window` (§3). Days of the week and a span of the day in a time
//! zone; whether an instant is inside, and when a set of allow and deny
//! windows next lets a deployment through. Pure: instants are milliseconds
//! since the epoch.

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// `Sat 02:00-05:00 UTC`, `Mon-Fri 08:00-18:00 Europe/Berlin` (a span past
/// midnight belongs to the day it starts: `Fri 22:00-06:00` ends on
/// Saturday morning), `Sun,Wed 01:00-02:00` (UTC when no zone is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday = 0.
    days: [bool; 7],
    /// Minutes after local midnight; `end` may be 24:00.
    start: u32,
    end: u32,
    tz: Tz,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    pub fn parse(text: &str) -> Result<Window, String> {
        let expected =
            || format!("{text:?} is not a window like \"Mon-Fri 08:00-18:00 Europe/Berlin\"");
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (days_part, span, zone) = match parts.as_slice() {
            [d, s, z] => (*d, *s, *z),
            [d, s] => (*d, *s, "UTC"),
            _ => return Err(expected()),
        };
        let tz: Tz = zone.parse().map_err(|_| {
            format!("{text:?}: {zone:?} is not an IANA time zone (such as UTC or Europe/Berlin)")
        })?;
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
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (a, b) = span.split_once('-').ok_or_else(expected)?;
        let (start, end) = (
            minutes(a).ok_or_else(expected)?,
            minutes(b).ok_or_else(expected)?,
        );
        if start == end || start == 24 * 60 {
            return Err(format!("{text:?}: the window is empty"));
        }
        Ok(Window {
            days,
            start,
            end,
            tz,
        })
    }

    /// Whether `at_ms` falls in the window, on the wall clock of its zone.
    pub fn contains(&self, at_ms: i64) -> bool {
        let Some(local) = local(self.tz, at_ms) else {
            return false;
        };
        let weekday = local.weekday().num_days_from_monday() as usize;
        let yesterday = (weekday + 6) % 7;
        let minute = local.hour() * 60 + local.minute();
        if self.start < self.end {
            self.days[weekday] && minute >= self.start && minute < self.end
        } else {
            // Past midnight: the evening of a listed day, or the early
            // hours after one.
            (self.days[weekday] && minute >= self.start)
                || (self.days[yesterday] && minute < self.end)
        }
    }

    /// The instants its starts and ends fall on, from the day before
    /// `at_ms` to nine days after (every day's: `Windows` asks each).
    fn edges(&self, at_ms: i64) -> Vec<i64> {
        let Some(today) = local(self.tz, at_ms).map(|l| l.date_naive()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for offset in 0..11u64 {
            let Some(date) = today
                .checked_sub_days(Days::new(1))
                .and_then(|d| d.checked_add_days(Days::new(offset)))
            else {
                continue;
            };
            for minute in [self.start, self.end] {
                if let Some(t) = instant(self.tz, date, minute) {
                    out.push(t);
                }
            }
        }
        out
    }
}

/// `reconciliation.windows`: a deployment may go ahead inside any `allow`
/// window (always, when there is none) and outside every `deny` window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Windows {
    pub allow: Vec<Window>,
    pub deny: Vec<Window>,
}

impl Windows {
    /// The windows of `reconciliation.windows`, as checked when read
    /// (one that no longer parses is left out).
    pub fn of(w: &crate::model::settings::SyncWindows) -> Windows {
        let parse = |l: &[String]| l.iter().filter_map(|w| Window::parse(w).ok()).collect();
        Windows {
            allow: parse(&w.allow),
            deny: parse(&w.deny),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a deployment may go ahead at `at_ms`.
    pub fn open(&self, at_ms: i64) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|w| w.contains(at_ms)))
            && !self.deny.iter().any(|w| w.contains(at_ms))
    }

    /// The first instant from `at_ms` on at which a deployment may go
    /// ahead (`at_ms` itself when open now); `None` when none comes within
    /// a week (deny windows that cover every allowed hour).
    pub fn next_opening(&self, at_ms: i64) -> Option<i64> {
        if self.open(at_ms) {
            return Some(at_ms);
        }
        let mut edges: Vec<i64> = self
            .allow
            .iter()
            .chain(&self.deny)
            .flat_map(|w| w.edges(at_ms))
            .filter(|t| *t > at_ms)
            .collect();
        edges.sort_unstable();
        edges.dedup();
        edges.into_iter().find(|t| self.open(*t))
    }
}

fn local(tz: Tz, at_ms: i64) -> Option<chrono::DateTime<Tz>> {
    Utc.timestamp_millis_opt(at_ms)
        .single()
        .map(|t| t.with_timezone(&tz))
}

/// The instant of `minute` after midnight on `date` in `tz`. A wall-clock
/// time a DST change skips is taken at the change (the first minute the
/// clock shows after it); one it repeats, at its first occurrence.
fn instant(tz: Tz, date: NaiveDate, minute: u32) -> Option<i64> {
    let (date, minute) = match minute {
        1440 => (date.checked_add_days(Days::new(1))?, 0),
        m => (date, m),
    };
    let naive: NaiveDateTime = date.and_hms_opt(minute / 60, minute % 60, 0)?;
    (0..=180)
        .find_map(|skipped| {
            tz.from_local_datetime(&(naive + chrono::Duration::minutes(skipped)))
                .earliest()
        })
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC wall-clock time.
    fn utc(text: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn windows(allow: &[&str], deny: &[&str]) -> Windows {
        let parse = |l: &[&str]| l.iter().map(|w| Window::parse(w).unwrap()).collect();
        Windows {
            allow: parse(allow),
            deny: parse(deny),
        }
    }

    #[test]
    fn a_window_holds_its_days_and_hours_in_its_zone() {
        // 2026-12-05 is a Saturday.
        let w = Window::parse("Sat 02:00-05:00 UTC").unwrap();
        for (at, inside) in [
            ("2026-12-05 02:00", true),
            ("2026-12-05 04:59", true),
            ("2026-12-05 05:00", false),
            ("2026-12-05 01:59", false),
            ("2026-12-06 03:00", false),
        ] {
            assert_eq!(w.contains(utc(at)), inside, "{at}");
        }
        let night = Window::parse("Mon-Fri 22:00-06:00").unwrap();
        for (at, inside) in [
            ("2026-12-07 23:00", true),  // Monday evening
            ("2026-12-08 05:00", true),  // Tuesday early, after Monday
            ("2026-12-07 05:00", false), // Monday early follows Sunday
            ("2026-12-12 01:00", true),  // Saturday early follows Friday
        ] {
            assert_eq!(night.contains(utc(at)), inside, "{at}");
        }
        // Berlin is UTC+1 in December and UTC+2 in July.
        let berlin = Window::parse("Mon-Fri 08:00-18:00 Europe/Berlin").unwrap();
        for (at, inside) in [
            ("2026-12-07 07:00", true),
            ("2026-12-07 06:59", false),
            ("2026-12-07 16:59", true),
            ("2026-12-07 17:00", false),
            ("2026-07-06 06:00", true),
            ("2026-07-06 05:59", false),
            ("2026-12-05 10:00", false), // Saturday
        ] {
            assert_eq!(berlin.contains(utc(at)), inside, "{at}");
        }
        let whole = Window::parse("Sun 00:00-24:00 UTC").unwrap();
        assert!(whole.contains(utc("2026-12-06 23:59")));
        assert!(!whole.contains(utc("2026-12-07 00:00")));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (bad, why) in [
            ("Sat", "is not a window like"),
            ("Sat 02:00-05:00 Mars/Olympus", "not an IANA time zone"),
            ("Sat 2-5 UTC", "is not a window like"),
            ("Sat 2:00-5:00 UTC", "is not a window like"),
            ("Xyz 02:00-05:00 UTC", "is not a window like"),
            ("Sat 02:00-02:00 UTC", "the window is empty"),
            ("Sat 24:00-02:00 UTC", "the window is empty"),
            ("Sat 02:00-24:01 UTC", "is not a window like"),
        ] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn allow_and_deny_windows_decide_together_and_say_when_they_next_open() {
        let office = windows(&["Mon-Fri 08:00-18:00 Europe/Berlin"], &[]);
        // Saturday noon in Berlin: Monday 08:00 Berlin, 07:00 UTC.
        assert!(!office.open(utc("2026-12-05 11:00")));
        assert_eq!(
            office.next_opening(utc("2026-12-05 11:00")),
            Some(utc("2026-12-07 07:00"))
        );
        // Open now: now.
        let now = utc("2026-12-07 09:00");
        assert_eq!(office.next_opening(now), Some(now));

        // A deny window inside the allowed hours, and a deny-only set.
        let lunch = windows(
            &["Mon-Fri 08:00-18:00 Europe/Berlin"],
            &["Mon-Fri 12:00-13:00 Europe/Berlin"],
        );
        assert!(!lunch.open(utc("2026-12-07 11:30")));
        assert_eq!(
            lunch.next_opening(utc("2026-12-07 11:30")),
            Some(utc("2026-12-07 12:00"))
        );
        let freeze = windows(&[], &["Fri 18:00-08:00 UTC", "Sat-Sun 00:00-24:00 UTC"]);
        assert!(freeze.open(utc("2026-12-10 12:00")), "Thursday");
        assert!(!freeze.open(utc("2026-12-11 19:00")), "Friday evening");
        assert_eq!(
            freeze.next_opening(utc("2026-12-11 19:00")),
            Some(utc("2026-12-14 00:00")),
            "Monday, when Sunday's deny window ends"
        );
        // Denied at every allowed hour: never.
        let never = windows(&["Sat 02:00-05:00 UTC"], &["Sat 00:00-24:00 UTC"]);
        assert_eq!(never.next_opening(utc("2026-12-07 00:00")), None);
        assert!(windows(&[], &[]).open(0));
    }

    #[test]
    fn openings_across_a_dst_change_fall_on_the_wall_clock() {
        // Europe/Berlin went to summer time on 2026-03-29 at 02:00 → 03:00.
        let early = windows(&["Sun 02:30-04:00 Europe/Berlin"], &[]);
        assert_eq!(
            early.next_opening(utc("2026-03-28 12:00")),
            Some(utc("2026-03-29 01:00")),
            "02:30 does not exist that night: the clock jumps to 03:00 CEST"
        );
        let office = windows(&["Mon 08:00-18:00 Europe/Berlin"], &[]);
        assert_eq!(
            office.next_opening(utc("2026-03-28 12:00")),
            Some(utc("2026-03-30 06:00")),
            "08:00 CEST"
        );
    }
}
