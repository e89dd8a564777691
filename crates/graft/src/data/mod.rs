//! Data: data sets on disk, decoding, preprocessing and augmentation.

pub mod augment;
pub mod dataset;
pub mod image;
