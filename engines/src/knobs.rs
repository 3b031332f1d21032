//! Typed engine knobs: declared per engine, parsed from `knob=value,knob=value`, with errors
//! that name the nearest valid knob.

use thiserror::Error;

/// The type and range of a knob's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobKind {
    /// `true` or `false`.
    Bool,
    /// An unsigned integer in `min..=max`.
    Uint {
        /// Smallest value.
        min: u64,
        /// Largest value.
        max: u64,
    },
    /// An unsigned integer in `min..=max`, or `none` (unset).
    OptUint {
        /// Smallest value.
        min: u64,
        /// Largest value.
        max: u64,
    },
    /// One of a fixed list of words (`flavor=current|multi`).
    Choice(&'static [&'static str]),
}

/// Declaration of one knob.
#[derive(Clone, Copy, Debug)]
pub struct KnobSpec {
    /// Name on the command line.
    pub name: &'static str,
    /// Value type.
    pub kind: KnobKind,
    /// Default value, as text.
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// A parsed knob value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobValue {
    /// A boolean.
    Bool(bool),
    /// An unsigned integer.
    Uint(u64),
    /// No value (`none`).
    Unset,
    /// One word of a [`KnobKind::Choice`].
    Choice(&'static str),
}

/// Why an engine variant could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KnobError {
    /// No engine of that name.
    #[error("unknown engine `{name}`{}; engines in this build: {valid}", suggest(.suggestion))]
    UnknownEngine {
        /// What was given.
        name: String,
        /// The nearest valid name.
        suggestion: Option<String>,
        /// All valid names.
        valid: String,
    },
    /// The engine has no knob of that name.
    #[error("unknown knob `{knob}` for engine `{engine}`{}; its knobs: {valid}", suggest(.suggestion))]
    UnknownKnob {
        /// Engine name.
        engine: &'static str,
        /// What was given.
        knob: String,
        /// The nearest valid knob.
        suggestion: Option<String>,
        /// All its knobs.
        valid: String,
    },
    /// The value does not parse or is out of range.
    #[error("bad value `{value}` for knob `{engine}:{knob}`: expected {expected}")]
    BadValue {
        /// Engine name.
        engine: &'static str,
        /// Knob name.
        knob: &'static str,
        /// What was given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// Not of the form `knob=value`.
    #[error(
        "malformed knob `{text}` for engine `{engine}`: write knob=value, separated by commas"
    )]
    Malformed {
        /// Engine name.
        engine: &'static str,
        /// The offending text.
        text: String,
    },
    /// The combination of knobs cannot work.
    #[error("engine `{engine}`: {reason}")]
    Conflict {
        /// Engine name.
        engine: &'static str,
        /// Why, and what to do.
        reason: String,
    },
}

fn suggest(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate nearest to `given`, if it is close enough to be a plausible typo.
pub fn nearest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(given, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

/// Parse `knob=value,…` against `specs`; every knob gets a value (its default when not given).
pub fn parse_knobs(
    engine: &'static str,
    specs: &'static [KnobSpec],
    text: &str,
) -> Result<Vec<(&'static str, KnobValue)>, KnobError> {
    let mut out: Vec<(&'static str, KnobValue)> = Vec::with_capacity(specs.len());
    for spec in specs {
        out.push((spec.name, parse_value(engine, spec, spec.default)?));
    }
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| KnobError::Malformed {
            engine,
            text: part.to_string(),
        })?;
        let (k, v) = (k.trim(), v.trim());
        let spec = specs.iter().find(|s| s.name == k).ok_or_else(|| {
            let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
            KnobError::UnknownKnob {
                engine,
                knob: k.to_string(),
                suggestion: nearest(k, &names).map(str::to_string),
                valid: if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
            }
        })?;
        let value = parse_value(engine, spec, v)?;
        if let Some(slot) = out.iter_mut().find(|(n, _)| *n == spec.name) {
            slot.1 = value;
        }
    }
    Ok(out)
}

fn parse_value(engine: &'static str, spec: &KnobSpec, text: &str) -> Result<KnobValue, KnobError> {
    let bad = |expected: String| KnobError::BadValue {
        engine,
        knob: spec.name,
        value: text.to_string(),
        expected,
    };
    match spec.kind {
        KnobKind::Bool => match text {
            "true" | "1" | "yes" | "on" => Ok(KnobValue::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(KnobValue::Bool(false)),
            _ => Err(bad("true or false".into())),
        },
        KnobKind::Uint { min, max } => match text.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(KnobValue::Uint(v)),
            _ => Err(bad(format!("an integer from {min} to {max}"))),
        },
        KnobKind::OptUint { min, max } => match text.parse::<u64>() {
            _ if text == "none" => Ok(KnobValue::Unset),
            Ok(v) if (min..=max).contains(&v) => Ok(KnobValue::Uint(v)),
            _ => Err(bad(format!("none or an integer from {min} to {max}"))),
        },
        KnobKind::Choice(words) => match words.iter().find(|w| **w == text) {
            Some(w) => Ok(KnobValue::Choice(w)),
            None => Err(bad(format!("one of {}", words.join(", ")))),
        },
    }
}

/// Look up a boolean knob in parsed values (false when absent).
pub fn get_bool(values: &[(&'static str, KnobValue)], name: &str) -> bool {
    values
        .iter()
        .find(|(n, _)| *n == name)
        .is_some_and(|(_, v)| *v == KnobValue::Bool(true))
}

/// Look up an optional integer knob (None when `none` or absent).
pub fn get_opt_uint(values: &[(&'static str, KnobValue)], name: &str) -> Option<u64> {
    values.iter().find_map(|(n, v)| match v {
        KnobValue::Uint(u) if *n == name => Some(*u),
        _ => None,
    })
}

/// Look up an integer knob in parsed values (0 when absent).
pub fn get_uint(values: &[(&'static str, KnobValue)], name: &str) -> u64 {
    values
        .iter()
        .find_map(|(n, v)| match v {
            KnobValue::Uint(u) if *n == name => Some(*u),
            _ => None,
        })
        .unwrap_or(0)
}

/// Look up a choice knob in parsed values (`""` when absent).
pub fn get_choice(values: &[(&'static str, KnobValue)], name: &str) -> &'static str {
    values
        .iter()
        .find_map(|(n, v)| match v {
            KnobValue::Choice(w) if *n == name => Some(*w),
            _ => None,
        })
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[KnobSpec] = &[
        KnobSpec {
            name: "direct",
            kind: KnobKind::Bool,
            default: "false",
            help: "",
        },
        KnobSpec {
            name: "threads",
            kind: KnobKind::Uint { min: 0, max: 64 },
            default: "0",
            help: "",
        },
    ];

    #[test]
    fn parses_defaults_and_values() {
        let v = parse_knobs("x", SPECS, "").unwrap();
        assert!(!get_bool(&v, "direct"));
        assert_eq!(get_uint(&v, "threads"), 0);
        let v = parse_knobs("x", SPECS, "direct=true, threads=8").unwrap();
        assert!(get_bool(&v, "direct"));
        assert_eq!(get_uint(&v, "threads"), 8);
    }

    #[test]
    fn unknown_knob_names_nearest() {
        let e = parse_knobs("x", SPECS, "thread=4").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("did you mean `threads`"), "{msg}");
        assert!(msg.contains("direct, threads"), "{msg}");
    }

    #[test]
    fn bad_values_rejected() {
        assert!(matches!(
            parse_knobs("x", SPECS, "threads=65"),
            Err(KnobError::BadValue { .. })
        ));
        assert!(matches!(
            parse_knobs("x", SPECS, "direct=maybe"),
            Err(KnobError::BadValue { .. })
        ));
        assert!(matches!(
            parse_knobs("x", SPECS, "direct"),
            Err(KnobError::Malformed { .. })
        ));
    }

    #[test]
    fn choice_knob() {
        const C: &[KnobSpec] = &[KnobSpec {
            name: "flavor",
            kind: KnobKind::Choice(&["current", "multi"]),
            default: "current",
            help: "",
        }];
        assert_eq!(
            get_choice(&parse_knobs("x", C, "").unwrap(), "flavor"),
            "current"
        );
        let v = parse_knobs("x", C, "flavor=multi").unwrap();
        assert_eq!(get_choice(&v, "flavor"), "multi");
        let e = parse_knobs("x", C, "flavor=many").unwrap_err().to_string();
        assert!(e.contains("one of current, multi"), "{e}");
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(nearest("bufered", &["null", "buffered"]), Some("buffered"));
        assert_eq!(nearest("zzzzzzzz", &["null", "buffered"]), None);
    }
}
