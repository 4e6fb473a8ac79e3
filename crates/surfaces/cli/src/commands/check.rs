//! `airlock check`: validate a configuration, including that its secrets resolve.

use std::path::Path;
use std::process::ExitCode;

use airlock_session::Runtime;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match airlock_config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let targets = config.targets.len();
    if let Err(e) = Runtime::build(config) {
        eprintln!("{}: {e}", path.display());
        return Ok(ExitCode::from(1));
    }
    println!(
        "{}: ok ({targets} target{})",
        path.display(),
        if targets == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
