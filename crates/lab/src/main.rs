//! `hora`: experiments -> raw results -> metrics -> figures (see `hora --help` and DESIGN.md).
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
    let matches = lab::cli::command().get_matches_from(args);
    match lab::cli::execute(matches) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(lab::error::exit_code(&e) as u8)
        }
    }
}
