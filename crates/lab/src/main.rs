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
    // candle runs element-wise ops on a spinning pool of its own beside rayon's gemm workers. On
    // two cores the two pools spin on the same cores: one element-wise thread made a finetune
    // quick job 12% faster in wall time and 22% cheaper in CPU (farm-bench, 4 alternating
    // pairs, 2026-12-03), bit for bit the same records. Larger hosts keep candle's default until
    // measured; `CANDLE_NUM_THREADS` set by the user always wins.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() && lab::provenance::host_threads() <= 2 {
        // Set before any thread starts (rayon's and candle's pools start lazily, later).
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
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
