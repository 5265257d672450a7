use std::process::ExitCode;

fn main() -> ExitCode {
    keel_host::cli::main()
}
