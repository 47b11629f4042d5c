//! The `ferrobus` binary: parses the command line, sets up logging, runs the subcommand and
//! maps its outcome to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use ferrobus::cli::{self, Cli};
use ferrobus::{config, ctl, daemon};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Cli::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Cli::Version) => {
            println!("{}", cli::version_text());
            ExitCode::SUCCESS
        }
        Ok(Cli::Serve(serve)) => {
            init_logging();
            let overrides = config::Overrides {
                data_dir: serve.data_dir,
                admin_addr: serve.admin_addr,
            };
            let config = match config::load_with_cluster(
                serve.config.as_deref(),
                &overrides,
                &serve.cluster,
            ) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            match daemon::serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Ok(Cli::Ctl(args)) => ExitCode::from(ctl::run(args).clamp(0, 255) as u8),
        Ok(Cli::Export(args)) => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
                .init();
            match daemon::export::export_offline(
                &args.data_dir,
                &args.to,
                args.file.as_deref(),
                args.force,
            ) {
                Ok(report) => {
                    for (name, why) in &report.skipped {
                        eprintln!("warning: skipped {name}: {why}");
                    }
                    for (name, bytes) in &report.written {
                        println!("exported {name}: {bytes} bytes");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
}
