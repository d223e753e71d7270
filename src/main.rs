//! Thin entry point: parse the command line, run, print the error chain, map to an exit code
//! (0 done and gates passed, 1 a gate failed, 2 bad input, 3 runtime failure).

use clap::Parser;

fn main() {
    // Like other Unix filters, end quietly when the reader of our output goes away
    // (`compress zoo | head`) instead of failing on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match compress::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // A panic is a bug, never the user's fault: report it as a runtime failure (3), not 101.
    let code = match std::panic::catch_unwind(|| compress::cli::dispatch(cli)) {
        Err(_) => 3,
        Ok(Ok(code)) => code,
        Ok(Err(err)) => {
            eprintln!("error: {}", compress::error::without_backtraces(&format!("{err:#}")));
            if compress::error::is_bad_input(&err) {
                2
            } else {
                3
            }
        }
    };
    std::process::exit(code);
}
