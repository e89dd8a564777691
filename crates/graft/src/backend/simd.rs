//! Inner loops compiled for AVX-512 and AVX2+FMA as well as the baseline, one of them chosen once
//! at run time from what the processor has: the crate is built for the baseline x86-64 (SSE2),
//! so a loop left to the compiler alone is four lanes wide and has no fused multiply-add.

use std::sync::OnceLock;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The best level this processor runs, detected once.
pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    })
}

/// Defines `$name` dispatching to copies of `$body` compiled for each level. `$fma` is how the
/// body multiplies and adds (the name in brackets, called as `fma(a, b, c)` for `a * b + c`):
/// fused where the level has FMA (a separate multiply and add would otherwise call a slow
/// software `fmaf`). Functions the body calls are compiled for the level too where they inline.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) [$fma:ident] $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body<F: Fn(f32, f32, f32) -> f32 + Copy>($fma: F, $($arg: $ty),*) {
                let _ = &$fma;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                body(|a: f32, b: f32, c: f32| a.mul_add(b, c), $($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                body(|a: f32, b: f32, c: f32| a.mul_add(b, c), $($arg),*)
            }
            match $crate::backend::simd::level() {
                // SAFETY: the level was detected on this processor.
                #[cfg(target_arch = "x86_64")]
                $crate::backend::simd::Level::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::backend::simd::Level::Avx2 => unsafe { avx2($($arg),*) },
                $crate::backend::simd::Level::Baseline => body(|a: f32, b: f32, c: f32| a * b + c, $($arg),*),
            }
        }
    };
}

pub(crate) use multiversion;
