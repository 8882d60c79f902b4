//! The dotted name of a tensor, built from its parts the way candle's `VarBuilder::pp` builds
//! one: `TensorPath::root().pp("encoder").pp("layer").pp(3)` is `encoder.layer.3`. Every name the
//! crate reads from a checkpoint or writes to an adapter file is made here, from parts spelled
//! once by the module that owns them.

use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorPath(String);

impl TensorPath {
    /// The empty path; its children have no leading dot.
    pub fn root() -> Self {
        Self::default()
    }

    /// The child `self.part`; a part may itself be a dotted path (a path under another root).
    pub fn pp(&self, part: impl fmt::Display) -> Self {
        if self.0.is_empty() {
            Self(part.to_string())
        } else {
            Self(format!("{}.{part}", self.0))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is this path or lies under it (`a.b` holds `a.b` and `a.b.c`, not `a.bc`).
    pub fn holds(&self, name: &str) -> bool {
        match name.strip_prefix(self.0.as_str()) {
            Some(rest) => self.0.is_empty() || rest.is_empty() || rest.starts_with('.'),
            None => false,
        }
    }
}

impl fmt::Display for TensorPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<TensorPath> for String {
    fn from(path: TensorPath) -> Self {
        path.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_join_with_dots_and_paths_nest() {
        let layer = TensorPath::root().pp("encoder").pp("layer").pp(3);
        assert_eq!(layer.as_str(), "encoder.layer.3");
        let peft = TensorPath::root().pp("base_model").pp("model");
        assert_eq!(
            peft.pp(&layer).pp("weight").to_string(),
            "base_model.model.encoder.layer.3.weight"
        );
        assert!(layer.holds("encoder.layer.3"));
        assert!(layer.holds("encoder.layer.3.attention"));
        assert!(!layer.holds("encoder.layer.30"));
        assert!(TensorPath::root().holds("anything"));
    }
}
