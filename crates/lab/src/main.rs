//! `hora`: experiments -> raw results -> metrics -> figures (see `hora --help` and DESIGN.md).
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Unix manners: a closed stdout (`hora list | head -1`) ends the program quietly, as it does
    // for any Unix tool, instead of a panic in `println!`. Rust ignores SIGPIPE by default.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Before any thread starts (rayon's and candle's pools start lazily, later).
    finetune::train::one_elementwise_thread_on_small_hosts();
    let args = lab::cli::normalise_args(std::env::args().collect());
    let cli = lab::cli::Cli::parse_from(args);
    match lab::cli::execute(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(lab::error::exit_code(&e) as u8)
        }
    }
}
