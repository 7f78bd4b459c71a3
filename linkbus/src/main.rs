//! `linkbus`: see `linkbus --help` and the README.

/// Routing a case allocates and frees many short strings and buffers (JSON in and out, subjects,
/// ids) on two threads at once: glibc's allocator spent a fifth of linkbus's CPU on that in the
/// durable path's profile (docs/bench/profile-durable.md); mimalloc's thread-local free lists
/// cost a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    linkbus::cli::main()
}
