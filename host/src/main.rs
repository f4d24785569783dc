/// Batch-sized buffers are reused from a bounded cache instead of faulting in fresh pages
/// for every batch (see `weir::alloc`).
#[global_allocator]
static ALLOCATOR: weir::alloc::BatchAllocator = weir::alloc::BatchAllocator::new();

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
