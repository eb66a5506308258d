use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ioc_milter::cli::Cli::parse();
    match ioc_milter::app::try_main(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ioc-milter: error: {error}");
            let mut cause = error.source();
            while let Some(inner) = cause {
                eprintln!("  caused by: {inner}");
                cause = inner.source();
            }
            ExitCode::from(2)
        }
    }
}
