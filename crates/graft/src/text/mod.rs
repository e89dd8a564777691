//! Text students: BERT-family sentence encoders as teachers (their tokenizer, encoder and
//! pooling), and labelled texts as data.

pub mod bert;
pub mod teacher;
pub mod tokenize;

pub use teacher::{Embedded, Pooling, TextTeacher};
pub use tokenize::{Encoded, TextTokenizer};
