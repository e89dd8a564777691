//! Text students: BERT-family sentence encoders as teachers (their tokenizer, encoder and
//! pooling), labelled texts as data, and students trained on the cached sentence features.

pub mod bert;
pub mod cache;
pub mod data;
pub mod finetune;
pub mod student;
pub mod teacher;
pub mod tokenize;
pub mod zoo;

pub use data::{Columns, TextDataset};
pub use student::{
    TextRunConfig, TextStudent, TextTrainOptions, evaluate_text, is_text_run, predict_texts, train_text,
};
pub use teacher::{Embedded, Pooling, TextTeacher};
pub use tokenize::{Encoded, TextTokenizer};
pub use zoo::{is_text_teacher, load_text_teacher, text_card, text_cards};
