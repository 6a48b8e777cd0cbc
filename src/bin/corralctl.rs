//! `corralctl`: parses the command line and hands it to [`corral::ctl`].

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use corral::ctl::client::{Client, socket_path};
use corral::ctl::views::{self, Status};
use corral::ctl::{Cli, Command, verify};

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(remote(cli))
}

/// Every verb that talks to the daemon.
async fn remote(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = socket_path(cli.address.as_deref())?;
    let client = Client::connect(path).await?;
    match cli.command {
        Command::Verify { .. } => unreachable!("handled offline"),
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
                let unit = client.unit(name).await?;
                all.push(Status {
                    name: client.property(&unit, "Name").await?,
                    description: client.property(&unit, "Description").await?,
                    load_state: client.property(&unit, "LoadState").await?,
                    load_error: client.property(&unit, "LoadError").await?,
                    active_state: client.property(&unit, "ActiveState").await?,
                    sub_state: client.property(&unit, "SubState").await?,
                    result: client.property(&unit, "Result").await?,
                    main_pid: client.property(&unit, "MainPID").await?,
                    exit_status: client.property(&unit, "ExitStatus").await?,
                    n_restarts: client.property(&unit, "NRestarts").await?,
                    control_group: client.property(&unit, "ControlGroup").await?,
                    slice: client.property(&unit, "Slice").await?,
                });
            }
            if cli.json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                let blocks: Vec<String> = all.iter().map(views::status_block).collect();
                print!("{}", blocks.join("\n"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { names, no_block } => job(&client, "StartUnit", &names, no_block).await,
        Command::Stop { names, no_block } => job(&client, "StopUnit", &names, no_block).await,
        Command::Restart { names, no_block } => job(&client, "RestartUnit", &names, no_block).await,
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
