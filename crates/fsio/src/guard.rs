//! Parse → check → run (linfa's `ParamGuard`), one way for every configuration of the workspace:
//! the simulator's (`hmoe`), a fine-tuning run's and a checkpoint's (`finetune`), the probe's
//! (`lab`). A configuration is a plain serde struct; [`ParamGuard::check`] is the only way to a
//! [`Checked`] value, which code downstream takes, so nothing re-checks and nothing sees a value
//! outside its range. A checked value also deserialises through its check, so a stored record
//! cannot smuggle one in.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::Deref;

/// A configuration that can be checked into a [`Checked`] value.
pub trait ParamGuard: Sized {
    /// The error naming the field and its allowed range.
    type Error: std::fmt::Display;

    /// Every value against its allowed range.
    fn validate(&self) -> Result<(), Self::Error>;

    /// The only way to a [`Checked`] value.
    fn check(self) -> Result<Checked<Self>, Self::Error> {
        self.validate()?;
        Ok(Checked(self))
    }
}

/// A configuration that passed [`ParamGuard::check`]. Read-only: it dereferences to the plain
/// configuration, and a changed value needs a new check (`into_inner`, edit, `check`). It
/// serialises as the plain configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked<T>(T);

impl<T> Checked<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Checked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Serialize> Serialize for Checked<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de> + ParamGuard> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d)?.check().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rank {
        r: usize,
    }

    impl ParamGuard for Rank {
        type Error = String;
        fn validate(&self) -> Result<(), String> {
            if (1..=256).contains(&self.r) {
                Ok(())
            } else {
                Err(format!("r = {} is not in 1..=256", self.r))
            }
        }
    }

    #[test]
    fn only_a_valid_value_is_checked_and_it_round_trips_as_the_plain_one() {
        assert_eq!(
            Rank { r: 0 }.check().unwrap_err(),
            "r = 0 is not in 1..=256"
        );
        let ok = Rank { r: 8 }.check().unwrap();
        assert_eq!(ok.r, 8);
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(json, r#"{"r":8}"#);
        let back: Checked<Rank> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ok);
        let bad = serde_json::from_str::<Checked<Rank>>(r#"{"r":300}"#).unwrap_err();
        assert!(
            bad.to_string().contains("r = 300 is not in 1..=256"),
            "{bad}"
        );
        assert_eq!(ok.into_inner(), Rank { r: 8 });
    }
}
