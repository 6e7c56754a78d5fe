//! Keeping freed memory for reuse, so a training loop stops paying the kernel for every buffer.
//!
//! A training step allocates the same large activations and gradients every step (tens of MB
//! each). glibc's `malloc` serves blocks above its mmap threshold (at most 32 MB) with a fresh
//! `mmap` and gives them back with `munmap` on free, so every step page-faults its buffers in
//! again and the kernel zeroes each page: a quarter of an MNIST step went to `clear_page` and
//! page faults before this. [`reuse_freed_memory`] tells glibc to serve every block from its
//! heap and never trim it, so after the first step the buffers of the previous step are reused.
//! The cost is that the process keeps its peak heap until it exits, which is what a training
//! run wants. It changes process-wide allocator policy, so the runner and the benchmarks call
//! it explicitly; a library user decides for their own program.

/// Makes glibc keep freed memory in the heap for reuse instead of returning it to the kernel.
/// Does nothing on other platforms. Safe to call more than once.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator tuning parameters; it is documented as callable
    // at any time, and these values are in range.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
