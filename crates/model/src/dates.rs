//! Dates as OneFolder stores them: ms since the Unix epoch, shown and parsed as UTC ISO 8601.

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// `2026-11-25T22:23:08.000Z` (what JavaScript's `Date.toJSON` gives, as OneFolder stores dates).
pub fn iso_time(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (y, m, d) = civil_from_days(days);
    let s = rest / 1000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, rest % 1000)
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.mmm]]Z` (UTC) or a number of ms since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, rest)) => (d, Some(rest.trim_end_matches('Z'))),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * DAY_MS;
    if civil_from_days(ms.div_euclid(DAY_MS)) != (y, m, d) {
        return None; // 2026-02-31
    }
    if let Some(time) = time {
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let mut f = hms.split(':');
        let h: i64 = f.next()?.parse().ok()?;
        let mi: i64 = f.next()?.parse().ok()?;
        let s: i64 = f.next().map_or(Some(0), |s| s.parse().ok())?;
        if f.next().is_some() || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let frac: String = frac.chars().chain("000".chars()).take(3).collect();
        ms += ((h * 60 + mi) * 60 + s) * 1000 + frac.parse::<i64>().ok()?;
    }
    Some(ms)
}

/// The start (ms) of the UTC day holding `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-800_000, -1, 0, 1, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn times_format_and_parse() {
        let ms = parse_time("2026-11-25T22:23:08.5Z").unwrap();
        assert_eq!(iso_time(ms), "2026-11-25T22:23:08.500Z");
        assert_eq!(parse_time(&iso_time(ms)), Some(ms));
        assert_eq!(parse_time("2026-11-25"), Some(day_start(ms)));
        assert_eq!(parse_time("1764000000000"), Some(1_764_000_000_000));
        for bad in ["2026-02-31", "2026-13-01", "yesterday", "2026-01-01T25:00Z", ""] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
