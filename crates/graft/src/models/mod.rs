//! The teachers: one file per architecture, the zoo of published weights, and the `Teacher` type.

pub mod alexnet;
#[cfg(feature = "download")]
pub mod download;
pub mod efficientnet_lite;
pub mod hub;
pub mod inception_v3;
pub mod layers;
pub mod mobilenet_v2;
pub mod resnet;
pub mod teacher;
pub mod zoo;

pub use hub::{WeightOptions, load_teacher};
pub use teacher::{Backbone, Teacher};
pub use zoo::{Architecture, Preprocessing, TeacherCard};
