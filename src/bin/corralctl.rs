//! `corralctl`: parses the command line and hands it to [`corral::ctl`].

use std::process::ExitCode;

use clap::Parser;
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
    match cli.command {
        Command::Verify { host, files } => {
            let report = verify::verify(&files, host);
            verify::print(&report, &mut std::io::stdout(), &mut std::io::stderr())?;
            Ok(if report.errors() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
