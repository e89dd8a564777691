//! Settings that take one of a few names (strategy, optimizer, head, augmentation): parsed from
//! text once, at the edge, into the library's own types, so a typo fails before any work starts.

use std::fmt::Display;
use std::str::FromStr;

use crate::error::GraftError;

/// A setting with a fixed list of names, each parsing to one value.
pub trait Choice: FromStr<Err = GraftError> + Display + Copy + Send + Sync + 'static {
    /// What the setting is, for messages ("strategy").
    const WHAT: &'static str;
    /// Every accepted name, in the order help should list them.
    const NAMES: &'static [&'static str];
}

/// Implements [`Choice`], `FromStr` (case-insensitive) and `Display` for a unit enum from its
/// `(variant, name)` pairs.
macro_rules! choice {
    ($type:ty, $what:literal, [$(($variant:path, $name:literal)),+ $(,)?]) => {
        impl $crate::choice::Choice for $type {
            const WHAT: &'static str = $what;
            const NAMES: &'static [&'static str] = &[$($name),+];
        }

        impl std::str::FromStr for $type {
            type Err = $crate::error::GraftError;

            fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
                $(if text.eq_ignore_ascii_case($name) {
                    return Ok($variant);
                })+
                Err($crate::choice::unknown::<$type>(text))
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($variant => $name),+
                })
            }
        }
    };
}

pub(crate) use choice;

/// The error for a name that is not one of `T`'s.
pub fn unknown<T: Choice>(text: &str) -> GraftError {
    GraftError::UnknownValue { what: T::WHAT, value: text.to_owned(), expected: T::NAMES }
}

#[cfg(test)]
mod tests {
    use crate::data::augment::AugmentChoice;
    use crate::train::{HeadChoice, Optimizer, Strategy};

    use super::Choice;

    fn round_trips<T: Choice + PartialEq + std::fmt::Debug>() {
        for name in T::NAMES {
            let value: T = name.parse().unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(value.to_string(), *name);
            assert_eq!(name.to_uppercase().parse::<T>().ok(), Some(value), "case-insensitive");
        }
        let error = "nonsense".parse::<T>().err().map(|error| error.to_string()).unwrap_or_default();
        assert!(error.contains(T::WHAT) && error.contains(T::NAMES[0]), "{error}");
    }

    #[test]
    fn every_name_parses_to_a_value_that_prints_as_it() {
        round_trips::<Strategy>();
        round_trips::<Optimizer>();
        round_trips::<HeadChoice>();
        round_trips::<AugmentChoice>();
    }
}
