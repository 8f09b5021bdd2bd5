//! `cluster-tool <node-dir> <command> [options] [--json]`: see `cluster-tool --help`.

use clap::Parser;
use tandem_tools::cli::{Cli, finish, run};

fn main() {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let result = run(&cli, &mut out);
    let code = finish(result, cli.json, &mut out, &mut err);
    std::process::exit(code);
}
