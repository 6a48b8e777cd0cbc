//! systemd's value syntaxes (booleans, time spans, sizes, percentages, bandwidths), read into
//! plain numbers. Writing them in corral's syntax and checking them against corral's rules is
//! left to [`crate::limits`] and [`crate::unit`], which the mapper calls.

use std::time::Duration;

/// systemd's `parse_boolean`.
pub fn boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// A time span, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Finite(Duration),
    Infinity,
}

/// systemd's `parse_sec`: `"90"`, `"1min 30s"`, `"1.5h"`, `"500ms"`, `"infinity"`; a bare number
/// is seconds.
pub fn timespan(s: &str) -> Option<Span> {
    let s = s.trim();
    if s == "infinity" {
        return Some(Span::Infinity);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num.starts_with('.') && num.len() == 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let factor = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "us" | "usec" | "µs" | "μs" => 1e-6,
            "ms" | "msec" => 1e-3,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "M" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += value * factor;
        rest = next;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Span::Finite(Duration::from_secs_f64(total)))
}

/// A size in systemd's 1024-based syntax (`"512M"`, `"1.5G"`, `"4096"`, `"1 T"`).
pub fn size_1024(s: &str) -> Option<u64> {
    scaled(s, 1024, true)
}

/// A number in systemd's 1000-based syntax, as bandwidths and IOPS take it (`"10M"` is
/// 10 000 000).
pub fn number_1000(s: &str) -> Option<u64> {
    scaled(s, 1000, false)
}

fn scaled(s: &str, base: u64, with_b: bool) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let power = match suffix.trim() {
        "" => 0,
        "B" if with_b => 0,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        "P" => 5,
        "E" => 6,
        _ => return None,
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let mult = u128::from(base).checked_pow(power)?;
    let whole: u128 = whole.parse().ok()?;
    let mut v = whole.checked_mul(mult)?;
    if !frac.is_empty() {
        let denom = 10u128.pow(frac.len() as u32);
        let f: u128 = frac.parse().ok()?;
        v = v.checked_add(f.checked_mul(mult)? / denom)?;
    }
    u64::try_from(v).ok()
}

/// `"N%"` or `"N.NN%"` (or `"N‰"`), as hundredths of a percent.
pub fn percent(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, per) = if let Some(n) = s.strip_suffix('%') {
        (n, 100u64)
    } else if let Some(n) = s.strip_suffix('‰') {
        (n, 10)
    } else {
        return None;
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 4
        || whole.len() > 9
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac_scaled: u64 = format!("{frac:0<4}").parse().ok()?;
    // In ten-thousandths of the unit, then to hundredths of a percent.
    let tenk = whole * 10_000 + frac_scaled;
    u32::try_from(tenk * per / 10_000).ok()
}

/// Hundredths of a percent written as corral writes percentages (`"12.5%"`).
pub fn format_percent(h: u32) -> String {
    crate::limits::Percent::from_hundredths(h).to_string()
}

/// A duration written so that corral (humantime) reads it back: `"1m 30s"`, `"100ms"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// A CPU or NUMA-node list as systemd takes it (`"0-3"`, `"0 2"`, `"1,3-4"`), in the
/// comma-separated form of cpuset files.
pub fn cpu_list(s: &str) -> String {
    s.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(boolean("Yes"), Some(true));
        assert_eq!(boolean("off"), Some(false));
        assert_eq!(boolean("maybe"), None);
    }

    #[test]
    fn timespans() {
        let f = |s: &str| match timespan(s) {
            Some(Span::Finite(d)) => Some(d),
            _ => None,
        };
        assert_eq!(f("90"), Some(Duration::from_secs(90)));
        assert_eq!(f("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(f("1min30s"), Some(Duration::from_secs(90)));
        assert_eq!(f("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(f("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(f("2 weeks"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(f("0"), Some(Duration::ZERO));
        assert_eq!(timespan("infinity"), Some(Span::Infinity));
        for bad in ["", "5 parsecs", "-1s", ".", "1e999", "99999999999999999999"] {
            assert_eq!(timespan(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(size_1024("1G"), Some(1 << 30));
        assert_eq!(size_1024("1.5K"), Some(1536));
        assert_eq!(size_1024("4096"), Some(4096));
        assert_eq!(size_1024("2 M"), Some(2 << 20));
        assert_eq!(size_1024("1P"), Some(1 << 50));
        assert_eq!(size_1024("100B"), Some(100));
        assert_eq!(size_1024("16E"), None);
        assert_eq!(size_1024("1X"), None);
        assert_eq!(size_1024("-1"), None);
        assert_eq!(number_1000("10M"), Some(10_000_000));
        assert_eq!(number_1000("2.5K"), Some(2500));
        assert_eq!(number_1000("100B"), None);
    }

    #[test]
    fn percentages() {
        assert_eq!(percent("150%"), Some(15_000));
        assert_eq!(percent("12.5%"), Some(1250));
        assert_eq!(percent("0.01%"), Some(1));
        assert_eq!(percent("500‰"), Some(5000));
        assert_eq!(percent("50"), None);
        assert_eq!(percent("%"), None);
        assert_eq!(format_percent(1250), "12.5%");
        assert_eq!(cpu_list("0-3 5,7"), "0-3,5,7");
    }
}
