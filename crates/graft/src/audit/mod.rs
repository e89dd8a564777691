//! What a student inherits from its public teacher: the teacher-mimicry attack (Wang et al.,
//! USENIX Security 2018) measured on the student, and the perceptual budget it works within.

pub mod dssim;
pub mod fingerprint;
pub mod harden;
pub mod mimicry;
pub mod pixels;
pub mod run;
