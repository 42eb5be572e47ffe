//! Writer: gpt
