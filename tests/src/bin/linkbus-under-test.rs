//! The `linkbus` command line, built inside this package so that its tests can start it as a
//! separate process (`CARGO_BIN_EXE_linkbus-under-test`) and kill it.

fn main() -> std::process::ExitCode {
    linkbus::cli::main()
}
