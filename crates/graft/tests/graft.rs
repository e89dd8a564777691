//! graft's integration tests: real weights, real images, reference outputs. One binary, a
//! module per part of the library.

mod audit;
mod common;
mod export;
mod kernels;
mod student;
mod teachers;
mod text;
mod training;
