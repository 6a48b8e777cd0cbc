//! `corralctl`: parses the command line and hands it to [`corral::ctl`].

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use corral::ctl::client::Client;
use corral::ctl::views::{self, Status};
use corral::ctl::{Cli, Command, generate, import, top, tree, verify};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corralctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Verify { host, files } = &cli.command {
        let report = verify::verify(files, *host);
        verify::print(&report, &mut std::io::stdout(), &mut std::io::stderr())?;
        return Ok(if report.errors() > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    match &cli.command {
        Command::Import { output, files } => {
            let summary = import::run(
                files,
                output.as_deref(),
                &corral::import::Host::this_machine(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )?;
            return Ok(if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Doctor => {
            let report = corral::doctor::inspect(&corral::doctor::Roots::this_machine(cli.user));
            let text = if cli.json {
                report.to_json()
            } else {
                report.to_text()
            };
            print!("{text}");
            return Ok(if report.errors() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Completions { shell } => {
            generate::emit(&mut std::io::stdout(), &generate::completions(*shell))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir: None } => {
            generate::emit(&mut std::io::stdout(), &generate::man_page()?)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir: Some(dir) } => {
            for file in generate::man_pages_to(dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?
            {
                println!("{}", file.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(remote(cli))
}

/// Every verb that talks to the daemon.
async fn remote(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::open(cli.address.as_deref(), cli.user).await?;
    match cli.command {
        Command::Verify { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Import { .. }
        | Command::Doctor => {
            unreachable!("handled offline")
        }
        Command::Tree { name } => {
            print!("{}", tree::show(&client, name.as_deref()).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Top { delay, iterations } => {
            top::run(&client, delay, iterations, &mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::List => {
            let rows = client.list_units().await?;
            if cli.json {
                println!("{}", views::list_json(&rows));
            } else {
                print!("{}", views::list_table(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { names } => {
            let mut all = Vec::new();
            for name in &names {
                all.push(status(&client, name).await?);
            }
            if cli.json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                let blocks: Vec<String> = all.iter().map(views::status_block).collect();
                print!("{}", blocks.join("\n"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Kill { name, signal } => {
            let signal = parse_signal(&signal)?;
            client
                .call_unit_method("KillUnit", &(name.as_str(), signal))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Freeze { name } => {
            client
                .call_unit_method("FreezeUnit", &(name.as_str(),))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Thaw { name } => {
            client
                .call_unit_method("ThawUnit", &(name.as_str(),))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ResetFailed { name } => {
            client
                .call_unit_method("ResetFailedUnit", &(name.as_str(),))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Limit {
            name,
            limits,
            runtime,
            dry_run,
        } => {
            let pairs = limits
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("{kv:?} is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let changes = client.limits(&name, &pairs, runtime, dry_run).await?;
            if dry_run {
                if changes.is_empty() {
                    println!("nothing would change");
                }
                for (file, old, new) in changes {
                    println!("{file}: {} → {}", old.trim(), new.trim());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs {
            name,
            lines,
            follow: false,
        } => {
            for line in client.log(&name, lines).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs {
            name,
            lines,
            follow: true,
        } => follow_log(&client, &name, lines).await,
        Command::Run {
            name,
            slice,
            properties,
            ns,
            wait,
            command,
        } => {
            let name = name.unwrap_or_else(|| format!("run-{}.service", std::process::id()));
            let path = std::env::var_os("PATH");
            let toml = corral::ctl::run::transient_toml(
                slice.as_deref(),
                &properties,
                &ns,
                &command,
                path.as_deref(),
            )?;
            let result = client.transient(&name, &toml, wait).await?;
            match result {
                Some(code) => {
                    eprintln!("{name} exited: {code}");
                    Ok(if code == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(u8::try_from(code.clamp(1, 255)).unwrap_or(1))
                    })
                }
                None => {
                    println!("Running as unit: {name}");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Cat { name } => {
            for (path, text) in client.unit_files(&name).await? {
                println!("# {path}");
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload => {
            let errors = client.reload().await?;
            for (file, err) in &errors {
                eprintln!("{file}: {err}");
            }
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Enable { name } => {
            client
                .call_unit_method("EnableUnit", &(name.as_str(),))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Disable { name } => {
            client
                .call_unit_method("DisableUnit", &(name.as_str(),))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Poweroff => {
            client.call_unit_method("PowerOff", &()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reboot => {
            client.call_unit_method("Reboot", &()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DaemonReexec => {
            client.reexec(cli.address.as_deref(), cli.user).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { names, no_block } => job(&client, "StartUnit", &names, no_block).await,
        Command::Stop { names, no_block } => job(&client, "StopUnit", &names, no_block).await,
        Command::Restart { names, no_block } => job(&client, "RestartUnit", &names, no_block).await,
    }
}

/// `logs -f`: the last lines, then new ones as they arrive (see `corral::ctl::follow`). Ends
/// quietly when the reader goes away (`| head`).
async fn follow_log(client: &Client, name: &str, lines: u32) -> anyhow::Result<ExitCode> {
    use corral::ctl::follow::{INTERVAL, WINDOW, fresh};
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut print = |lines: &[String]| -> bool {
        lines.iter().all(|l| writeln!(out, "{l}").is_ok()) && out.flush().is_ok()
    };
    let mut window = client.log(name, WINDOW.max(lines)).await?;
    if !print(&window[window.len().saturating_sub(lines as usize)..]) {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        tokio::time::sleep(INTERVAL).await;
        let next = client.log(name, WINDOW).await?;
        if !print(fresh(&window, &next)) {
            return Ok(ExitCode::SUCCESS);
        }
        window = next;
    }
}

async fn job(
    client: &Client,
    method: &str,
    names: &[String],
    no_block: bool,
) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in names {
        let result = client.job(method, name, no_block).await?;
        if result != "done" && result != "queued" {
            eprintln!(
                "corralctl: job for {name} ended: {result}. See \"corralctl status {name}\"."
            );
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}

/// Everything `status` shows about one unit.
async fn status(client: &Client, name: &str) -> anyhow::Result<Status> {
    use std::collections::{BTreeMap, HashMap};
    use zbus::zvariant::{OwnedValue, Value};
    let unit = client.unit(name).await?;
    let props = client.properties(&unit).await?;
    let limits: HashMap<String, OwnedValue> = props.get("Limits")?;
    let limits: BTreeMap<String, String> = limits
        .into_iter()
        .map(|(k, v)| {
            let text = match &*v {
                Value::Str(s) => s.to_string(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|i| match i {
                        Value::Str(s) => Some(s.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    let effective: HashMap<String, (String, String)> = props.get("EffectiveLimits")?;
    // Processes and log lines are root's (a log also its unit's user's): without them the
    // status says so once, as systemctl hints at journal access.
    let processes = client.processes(&unit).await?;
    let log = client.log_if_shown(name, 5).await?;
    if processes.is_none() || log.is_none() {
        eprintln!(
            "Hint: {name}'s {} shown to root only{}.",
            match (processes.is_none(), log.is_none()) {
                (true, true) => "processes and log lines are",
                (true, false) => "processes are",
                _ => "log lines are",
            },
            if log.is_none() {
                " (log lines also to the unit's own user)"
            } else {
                ""
            }
        );
    }
    Ok(Status {
        name: props.get("Name")?,
        description: props.get("Description")?,
        load_state: props.get("LoadState")?,
        load_error: props.get("LoadError")?,
        active_state: props.get("ActiveState")?,
        sub_state: props.get("SubState")?,
        result: props.get("Result")?,
        main_pid: props.get("MainPID")?,
        exit_status: props.get("ExitStatus")?,
        n_restarts: props.get("NRestarts")?,
        control_group: props.get("ControlGroup")?,
        slice: props.get("Slice")?,
        limits,
        effective_limits: effective.into_iter().collect(),
        memory_current: props.get("MemoryCurrent")?,
        memory_peak: props.get("MemoryPeak")?,
        cpu_usage_nsec: props.get("CPUUsageNSec")?,
        tasks_current: props.get("TasksCurrent")?,
        io_read_bytes: props.get("IOReadBytes")?,
        io_write_bytes: props.get("IOWriteBytes")?,
        oom_kills: props.get("OOMKills")?,
        freezer_state: props.get("FreezerState")?,
        active_enter_timestamp: props.get("ActiveEnterTimestamp")?,
        processes: processes.unwrap_or_default(),
        log: log.unwrap_or_default(),
    })
}

/// `SIGTERM`, `TERM` or `15`.
fn parse_signal(s: &str) -> anyhow::Result<i32> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    nix::sys::signal::Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("{s:?} is not a signal name"))
}
