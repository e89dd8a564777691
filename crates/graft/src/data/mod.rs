//! Data: decoding and preprocessing images for a teacher.

pub mod image;
