//! How the process's memory allocator keeps what it frees (glibc on Linux).
//!
//! Training on images allocates and frees tensors of tens to hundreds of megabytes at every
//! operation (ResNet-50's first stage, 16 images of 256 x 56 x 56, is 51 MB). glibc serves
//! anything above its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh mapping and
//! unmaps it again on free, and worker threads get arenas of their own that unmap too; every
//! such block then costs page faults, the kernel zeroing each page, and on more than one core
//! TLB shootdowns when it is unmapped. Measured with `graft bench` (docs/PERFORMANCE.md section
//! 2c has the figures): a large share of a 224x224 step's time in the kernel, and a faster full
//! step with the settings below.
//!
//! So, before any thread starts, the `graft` binary asks glibc for one arena, no mmap for large
//! blocks and no trimming of the heap's top: freed memory stays in the process and the next
//! operation reuses it. Peak memory stays that of the largest step, which the process reaches
//! anyway. A library embedding graft keeps its own allocator settings: this is the binary's
//! choice only. Anyone who sets glibc's malloc variables (`MALLOC_ARENA_MAX`,
//! `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`, or `GLIBC_TUNABLES`)
//! keeps theirs: then graft changes nothing.

/// The variables by which a user sets glibc's allocator; any one of them leaves it as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const USER_SETTINGS: [&str; 5] =
    ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"];

/// Keeps freed memory in the process (see the module's documentation). Call first in `main`,
/// before any thread exists. Returns whether the settings were applied.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() -> bool {
    if USER_SETTINGS.iter().any(|name| std::env::var_os(name).is_some()) {
        return false;
    }
    // SAFETY: mallopt only changes glibc's malloc parameters; called before any other thread
    // exists. Each call returns 1 on success. -1 means "never" for both thresholds (for
    // trimming in glibc's manual; for mmap it is the largest size, and should a glibc refuse
    // it, the largest an int carries, 2 GiB).
    unsafe {
        let arena = libc::mallopt(libc::M_ARENA_MAX, 1) == 1;
        let mmap =
            libc::mallopt(libc::M_MMAP_THRESHOLD, -1) == 1 || libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) == 1;
        let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1;
        arena && mmap && trim
    }
}

/// Other platforms' allocators keep their own policies.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// glibc takes all three settings, or leaves them when the user set malloc variables. (That
    /// blocks then stay in the heap shows only in a process that sets them before any thread:
    /// the test harness's threads already have arenas of their own. Measured with strace on
    /// `graft bench --teachers efficientnet_lite0 --iterations 1`: 10 munmap calls against 222.)
    #[test]
    fn glibc_takes_the_settings_unless_the_user_set_their_own() {
        let user = super::USER_SETTINGS.iter().any(|name| std::env::var_os(name).is_some());
        assert_eq!(super::keep_freed_memory(), !user);
    }
}
