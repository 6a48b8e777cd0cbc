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
    if !s.control_group.is_empty() {
        let _ = writeln!(out, "     CGroup: {}", s.control_group);
    }
    out
}
