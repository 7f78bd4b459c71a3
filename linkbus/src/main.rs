//! `linkbus`: see `linkbus --help` and the README.

fn main() -> std::process::ExitCode {
    linkbus::cli::main()
}
