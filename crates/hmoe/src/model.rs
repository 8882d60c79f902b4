//! STUB
pub struct Model;
