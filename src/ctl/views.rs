//! How corralctl shows things: tables like `systemctl list-units`, a status block like
//! `systemctl status`, and `--json` with the D-Bus property names as keys.

use std::fmt::Write as _;

use super::client::UnitRow;

/// `corralctl list`: one line per unit.
pub fn list_table(rows: &[UnitRow]) -> String {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<w$}  {:<9} {:<12} {:<12} {}\n",
        "UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"
    );
    for r in rows {
        let line = format!(
            "{:<w$}  {:<9} {:<12} {:<12} {}",
            r.name, r.load_state, r.active_state, r.sub_state, r.description
        );
        // No trailing blanks when the description is empty.
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out, "\n{} units listed.", rows.len());
    out
}

/// `corralctl list --json`.
pub fn list_json(rows: &[UnitRow]) -> String {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "Name": r.name,
                "Description": r.description,
                "LoadState": r.load_state,
                "ActiveState": r.active_state,
                "SubState": r.sub_state,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// The properties `status` shows, in the order it shows them.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    pub name: String,
    pub description: String,
    pub load_state: String,
    pub load_error: String,
    pub active_state: String,
    pub sub_state: String,
    pub result: String,
    #[serde(rename = "MainPID")]
    pub main_pid: u32,
    pub exit_status: i32,
    pub n_restarts: u32,
    pub control_group: String,
    pub slice: String,
    /// Configured limits: key → canonical value (`io-max`: devices joined by ", ").
    pub limits: std::collections::BTreeMap<String, String>,
    /// key → (value, binding unit).
    pub effective_limits: std::collections::BTreeMap<String, (String, String)>,
    pub memory_current: u64,
    pub memory_peak: u64,
    #[serde(rename = "CPUUsageNSec")]
    pub cpu_usage_nsec: u64,
    pub tasks_current: u64,
    #[serde(rename = "IOReadBytes")]
    pub io_read_bytes: u64,
    #[serde(rename = "IOWriteBytes")]
    pub io_write_bytes: u64,
    #[serde(rename = "OOMKills")]
    pub oom_kills: u64,
    pub freezer_state: String,
    /// Microseconds since the epoch; 0 if never active.
    pub active_enter_timestamp: u64,
    /// (pid, command line) — not a D-Bus property: from `GetProcesses`.
    pub processes: Vec<(u32, String)>,
    /// The last log lines — from `GetUnitLog`.
    pub log: Vec<String>,
}

/// 2^64-1: the kernel can't give this figure.
const UNKNOWN: u64 = u64::MAX;

/// Bytes for people: 1.5M, 96M, 12K.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, suffix) in UNITS {
        if b >= size {
            let v = b as f64 / size as f64;
            return if v >= 10.0 || b.is_multiple_of(size) {
                format!("{:.0}{suffix}", v)
            } else {
                format!("{v:.1}{suffix}")
            };
        }
    }
    format!("{b}B")
}

/// `corralctl status NAME`: the block systemctl users know.
/// `2026-12-02 19:35:08 UTC` for microseconds since the epoch.
fn utc_time(micros: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros);
    // RFC 3339 is `DATE"T"TIME"Z"`: only that one `T` becomes a space.
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    let stamp = stamp
        .strip_suffix('Z')
        .unwrap_or(&stamp)
        .replacen('T', " ", 1);
    format!("{stamp} UTC")
}

pub fn status_block(s: &Status) -> String {
    let dot = match s.active_state.as_str() {
        "active" => "●",
        "failed" => "×",
        _ => "○",
    };
    let mut out = String::new();
    let title = if s.description.is_empty() {
        s.name.clone()
    } else {
        format!("{} - {}", s.name, s.description)
    };
    let _ = writeln!(out, "{dot} {title}");
    let _ = writeln!(out, "     Loaded: {}", s.load_state);
    if !s.load_error.is_empty() {
        let _ = writeln!(out, "      Error: {}", s.load_error);
    }
    let since = if s.active_enter_timestamp > 0 && s.active_state == "active" {
        format!(" since {}", utc_time(s.active_enter_timestamp))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "     Active: {} ({}){since}",
        s.active_state, s.sub_state
    );
    if s.result != "success" {
        let _ = writeln!(out, "     Result: {} (status {})", s.result, s.exit_status);
    }
    if s.main_pid != 0 {
        let _ = writeln!(out, "   Main PID: {}", s.main_pid);
    }
    if s.n_restarts > 0 {
        let _ = writeln!(out, "   Restarts: {}", s.n_restarts);
    }
    if !s.slice.is_empty() {
        let _ = writeln!(out, "      Slice: {}", s.slice);
    }
    if s.freezer_state == "frozen" {
        let _ = writeln!(out, "     Frozen: yes");
    }
    // A usage line shows the figure beside the limits on it. It is left out when there is
    // neither (no cgroup, or the controller is not enabled, and no limit); a limit whose figure
    // the kernel can't give shows "-" for the figure, so configured limits are always seen.
    let usage = |out: &mut String, label: &str, figure: Option<String>, keys: &[&str]| {
        let ls: Vec<String> = keys
            .iter()
            .filter_map(|k| s.limits.get(*k).map(|v| format!("{k} {v}")))
            .collect();
        let line = match (figure, ls.is_empty()) {
            (None, true) => return,
            (Some(f), true) => f,
            (f, false) => format!("{} ({})", f.as_deref().unwrap_or("-"), ls.join(", ")),
        };
        let _ = writeln!(out, "{label:>11}: {line}");
    };
    let known = |v: u64| (v != UNKNOWN).then_some(v);
    usage(
        &mut out,
        "Tasks",
        known(s.tasks_current).map(|t| t.to_string()),
        &["pids-max"],
    );
    let memory = known(s.memory_current).map(|m| match known(s.memory_peak) {
        Some(p) => format!("{}, peak {}", human_bytes(m), human_bytes(p)),
        None => human_bytes(m),
    });
    usage(
        &mut out,
        "Memory",
        memory,
        &[
            "memory-max",
            "memory-high",
            "memory-low",
            "memory-min",
            "memory-swap-max",
        ],
    );
    usage(
        &mut out,
        "CPU",
        known(s.cpu_usage_nsec).map(|c| format!("{:.3}s", c as f64 / 1e9)),
        &["cpu-max", "cpu-weight", "cpuset-cpus"],
    );
    let io = known(s.io_read_bytes).map(|r| {
        format!(
            "{} read, {} written",
            human_bytes(r),
            known(s.io_write_bytes).map_or("-".into(), human_bytes)
        )
    });
    usage(&mut out, "IO", io, &["io-max", "io-weight"]);
    if s.oom_kills != UNKNOWN && s.oom_kills > 0 {
        let _ = writeln!(out, "  OOM kills: {}", s.oom_kills);
    }
    if !s.effective_limits.is_empty() {
        let mut first = true;
        for (k, (v, unit)) in &s.effective_limits {
            let label = if first {
                "  Effective:"
            } else {
                "            "
            };
            first = false;
            let _ = writeln!(out, "{label} {k} {v} (from {unit})");
        }
    }
    if !s.control_group.is_empty() {
        let _ = writeln!(out, "     CGroup: {}", s.control_group);
        for (i, (pid, cmd)) in s.processes.iter().enumerate() {
            let branch = if i + 1 == s.processes.len() {
                "└─"
            } else {
                "├─"
            };
            let _ = writeln!(out, "             {branch}{pid} {cmd}");
        }
    }
    if !s.log.is_empty() {
        let _ = writeln!(out);
        for line in &s.log {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc() {
        // 2026-12-02 19:35:08 UTC
        assert_eq!(
            super::utc_time(1_796_240_108_000_000),
            "2026-12-02 19:35:08 UTC"
        );
    }

    use super::*;

    #[test]
    fn a_limit_is_shown_even_when_its_usage_figure_is_unknown() {
        let mut s = Status {
            name: "web.service".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            result: "success".into(),
            memory_current: UNKNOWN,
            memory_peak: UNKNOWN,
            tasks_current: 3,
            cpu_usage_nsec: 1_500_000_000,
            io_read_bytes: UNKNOWN,
            io_write_bytes: UNKNOWN,
            oom_kills: UNKNOWN,
            processes: vec![(10, "a".into()), (11, "b".into())],
            control_group: "/system.slice/web.service".into(),
            ..Status::default()
        };
        s.limits.insert("memory-max".into(), "512M".into());
        let text = status_block(&s);
        assert!(
            text.contains("\n     Memory: - (memory-max 512M)\n"),
            "{text}"
        );
        assert!(text.contains("\n      Tasks: 3\n"), "{text}");
        assert!(text.contains("\n        CPU: 1.500s\n"), "{text}");
        assert!(!text.contains("IO:"), "{text}");
        assert!(text.contains("├─10 a\n             └─11 b\n"), "{text}");
    }

    #[test]
    fn list_lines_have_no_trailing_blanks() {
        let rows = [UnitRow {
            name: "-.slice".into(),
            description: String::new(),
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "active".into(),
        }];
        let text = list_table(&rows);
        assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");
    }
}
