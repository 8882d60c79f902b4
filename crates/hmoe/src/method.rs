//! Method names: which parametrisation is fitted (THEORY.md §2), written as `lora`,
//! `replora-tanh`, `hora-identity`, ... and parsed back from the same strings.
use crate::error::{HmoeError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The generator's activation `φ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Identity,
    Tanh,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Identity => x,
            Activation::Tanh => x.tanh(),
        }
    }
    /// Derivative expressed through the output `y = φ(x)`.
    #[inline]
    pub fn derivative_from_output(self, y: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Tanh => 1.0 - y * y,
        }
    }
}

/// The three families of THEORY.md §2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Independent factors for every head, slot and atom.
    Lora,
    /// One generator per head, shared by Q and V inside the head.
    Replora,
    /// One generator for all heads of the layer (the joint hypernetwork).
    Hora,
}

/// A fitted (or true) parametrisation: family plus generator activation.
/// `lora` has no generator, so its activation is irrelevant and fixed to identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method {
    pub family: Family,
    pub activation: Activation,
}

impl Method {
    pub const LORA: Method = Method {
        family: Family::Lora,
        activation: Activation::Identity,
    };

    pub fn new(family: Family, activation: Activation) -> Self {
        match family {
            Family::Lora => Self::LORA,
            _ => Method { family, activation },
        }
    }

    /// Every method of THEORY.md §2, in a fixed order.
    pub fn all() -> Vec<Method> {
        let mut v = vec![Self::LORA];
        for f in [Family::Replora, Family::Hora] {
            for a in [Activation::Identity, Activation::Tanh] {
                v.push(Method::new(f, a));
            }
        }
        v
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = match self.family {
            Family::Lora => return write!(f, "lora"),
            Family::Replora => "replora",
            Family::Hora => "hora",
        };
        let act = match self.activation {
            Activation::Identity => "identity",
            Activation::Tanh => "tanh",
        };
        write!(f, "{fam}-{act}")
    }
}

impl FromStr for Method {
    type Err = HmoeError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || HmoeError::UnknownMethod(s.to_string());
        let (fam, act) = match s.split_once('-') {
            Some((f, a)) => (f, Some(a)),
            None => (s, None),
        };
        let family = match fam {
            "lora" => Family::Lora,
            "replora" => Family::Replora,
            "hora" => Family::Hora,
            _ => return Err(bad()),
        };
        let activation = match (family, act) {
            (Family::Lora, None) => Activation::Identity,
            (Family::Lora, Some(_)) => return Err(bad()),
            (_, Some("identity")) => Activation::Identity,
            (_, Some("tanh")) | (_, None) => Activation::Tanh,
            _ => return Err(bad()),
        };
        Ok(Method::new(family, activation))
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_round_trip() {
        for m in Method::all() {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        }
        assert!("lora-tanh".parse::<Method>().is_err());
        assert!("hira".parse::<Method>().is_err());
        assert_eq!(
            "hora".parse::<Method>().unwrap(),
            Method::new(Family::Hora, Activation::Tanh)
        );
    }
}
