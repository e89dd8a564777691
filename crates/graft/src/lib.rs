//! graft: transfer learning on burn.
//!
//! A pretrained *teacher* ([`models::Teacher`]) is cut into named blocks; what is frozen in front
//! of the cut is computed once, what is behind it is trained with a new head into a *student*.
//! Weight files are read as data by [`graft_weights`], never executed.

pub mod audit;
pub mod backend;
pub mod bench;
pub mod cache_entry;
pub mod choice;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod interrupt;
pub mod modality;
pub mod models;
pub mod net;
pub mod predict;
pub mod report;
pub mod rng;
pub mod run;
pub mod tensor;
pub mod text;
pub mod train;
pub mod weights;

pub use burn;
pub use error::{GraftError, Result};
