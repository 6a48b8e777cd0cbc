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
        let _ = writeln!(
            out,
            "{:<w$}  {:<9} {:<12} {:<12} {}",
            r.name, r.load_state, r.active_state, r.sub_state, r.description
        );
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
    let _ = writeln!(out, "     Active: {} ({})", s.active_state, s.sub_state);
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
    let limit = |k: &str| s.limits.get(k).map(|v| format!("{k} {v}"));
    let with = |figure: String, keys: &[&str]| {
        let ls: Vec<String> = keys.iter().filter_map(|k| limit(k)).collect();
        if ls.is_empty() {
            figure
        } else {
            format!("{figure} ({})", ls.join(", "))
        }
    };
    if s.tasks_current != UNKNOWN {
        let _ = writeln!(
            out,
            "      Tasks: {}",
            with(s.tasks_current.to_string(), &["pids-max"])
        );
    }
    if s.memory_current != UNKNOWN {
        let mut figure = human_bytes(s.memory_current);
        if s.memory_peak != UNKNOWN {
            figure.push_str(&format!(", peak {}", human_bytes(s.memory_peak)));
        }
        let _ = writeln!(
            out,
            "     Memory: {}",
            with(
                figure,
                &[
                    "memory-max",
                    "memory-high",
                    "memory-low",
                    "memory-min",
                    "memory-swap-max"
                ]
            )
        );
    }
    if s.cpu_usage_nsec != UNKNOWN {
        let figure = format!("{:.3}s", s.cpu_usage_nsec as f64 / 1e9);
        let _ = writeln!(
            out,
            "        CPU: {}",
            with(figure, &["cpu-max", "cpu-weight", "cpuset-cpus"])
        );
    }
    if s.io_read_bytes != UNKNOWN {
        let figure = format!(
            "{} read, {} written",
            human_bytes(s.io_read_bytes),
            human_bytes(s.io_write_bytes)
        );
        let _ = writeln!(
            out,
            "         IO: {}",
            with(figure, &["io-max", "io-weight"])
        );
    }
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
        for (pid, cmd) in &s.processes {
            let _ = writeln!(out, "             └─{pid} {cmd}");
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
