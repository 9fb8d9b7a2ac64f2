//! Parameter values given for a plan or a run, checked against the runbook's declarations.

use std::collections::BTreeMap;

use crate::diagnostic::did_you_mean;
use crate::runbook::{Param, ParamType, ParamValue, Runbook};

/// The parameters of one plan or run, every declared one present and of its type.
pub type ParamValues = BTreeMap<String, ParamValue>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter `{name}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    Unknown { name: String, suggestion: Option<String> },
    #[error("parameter `{name}` is given twice")]
    Repeated { name: String },
    #[error("missing required parameter `{name}`{}", describe(description))]
    Missing { name: String, description: Option<String> },
    #[error("parameter `{name}` must be {}, got `{value}`", article(*expected))]
    WrongType { name: String, expected: ParamType, value: String },
    #[error("parameter `{name}` must be one of {allowed}, got `{value}`")]
    NotAllowed { name: String, allowed: String, value: String },
    #[error("parameter `{name}` must match `{pattern}`, got `{value}`")]
    NoMatch { name: String, pattern: String, value: String },
    #[error("parameter `{name}` has {count} items; a list holds at most {max}", max = crate::runbook::MAX_ITEMS)]
    TooManyItems { name: String, count: usize },
    #[error("parameter `{name}` lists `{item}` more than once")]
    RepeatedItem { name: String, item: String },
}

fn describe(description: &Option<String>) -> String {
    description.as_ref().map(|text| format!(" ({text})")).unwrap_or_default()
}

fn article(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "a string",
        ParamType::Integer => "a whole number",
        ParamType::Number => "a number",
        ParamType::Boolean => "true or false",
        ParamType::List => "a list of strings (`a,b` or a JSON array of strings)",
    }
}

/// Resolves `KEY=VALUE` text (as typed on a command line or in a form) into typed values,
/// filling in defaults. Reports every problem, not just the first.
pub fn resolve(
    runbook: &Runbook,
    given: &[(String, String)],
) -> Result<ParamValues, Vec<ParamError>> {
    let mut errors = Vec::new();
    let mut values = ParamValues::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, text) in given {
        let Some(param) = runbook.param(name) else {
            let suggestion =
                did_you_mean(name, runbook.params.iter().map(|param| param.name.as_str()));
            errors.push(ParamError::Unknown {
                name: name.clone(),
                suggestion: suggestion.map(str::to_owned),
            });
            continue;
        };
        if seen.contains(&name.as_str()) {
            errors.push(ParamError::Repeated { name: name.clone() });
            continue;
        }
        seen.push(name);
        match parse_value(param, text) {
            Ok(value) => {
                values.insert(name.clone(), value);
            }
            Err(error) => errors.push(error),
        }
    }
    for param in &runbook.params {
        if seen.contains(&param.name.as_str()) {
            continue;
        }
        match &param.default {
            Some(default) => {
                values.insert(param.name.clone(), default.clone());
            }
            None if param.required => errors.push(ParamError::Missing {
                name: param.name.clone(),
                description: param.description.clone(),
            }),
            // An optional parameter without a default is an empty string, zero or false, so
            // that templates can test it without tripping over an undefined value.
            None => {
                values.insert(param.name.clone(), empty_value(param.kind));
            }
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

fn empty_value(kind: ParamType) -> ParamValue {
    match kind {
        ParamType::String => ParamValue::String(String::new()),
        ParamType::Integer => ParamValue::Integer(0),
        ParamType::Number => ParamValue::Number(0.0),
        ParamType::Boolean => ParamValue::Boolean(false),
        ParamType::List => ParamValue::List(Vec::new()),
    }
}

fn parse_value(param: &Param, text: &str) -> Result<ParamValue, ParamError> {
    let wrong_type = || ParamError::WrongType {
        name: param.name.clone(),
        expected: param.kind,
        value: text.to_owned(),
    };
    let value = match param.kind {
        ParamType::String => ParamValue::String(text.to_owned()),
        ParamType::Integer => ParamValue::Integer(text.trim().parse().map_err(|_| wrong_type())?),
        ParamType::Number => ParamValue::Number(
            text.trim()
                .parse()
                .ok()
                .filter(|value: &f64| value.is_finite())
                .ok_or_else(wrong_type)?,
        ),
        ParamType::Boolean => ParamValue::Boolean(match text.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(wrong_type()),
        }),
        ParamType::List => {
            let items = list_items(text).ok_or_else(wrong_type)?;
            if items.len() > crate::runbook::MAX_ITEMS {
                return Err(ParamError::TooManyItems {
                    name: param.name.clone(),
                    count: items.len(),
                });
            }
            // A fan-out over a list with a repeated item would act on it twice, maybe at once.
            let mut seen = std::collections::HashSet::new();
            if let Some(repeated) = items.iter().find(|item| !seen.insert(item.as_str())) {
                return Err(ParamError::RepeatedItem {
                    name: param.name.clone(),
                    item: repeated.clone(),
                });
            }
            if items.is_empty() && param.required {
                return Err(ParamError::Missing {
                    name: param.name.clone(),
                    description: param.description.clone(),
                });
            }
            for item in &items {
                check_allowed(param, &ParamValue::String(item.clone()), item)?;
            }
            return Ok(ParamValue::List(items));
        }
    };
    check_allowed(param, &value, text)?;
    Ok(value)
}

/// A list parameter's items from text: a JSON array of strings (what the API sends, and how
/// an item with a comma is written), or comma-separated items, each trimmed; empty items
/// are dropped, so `""` is the empty list.
fn list_items(text: &str) -> Option<Vec<String>> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).ok();
    }
    Some(
        text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect(),
    )
}

/// Checks a value (or one item of a list) against the parameter's `enum` and `pattern`.
fn check_allowed(param: &Param, value: &ParamValue, text: &str) -> Result<(), ParamError> {
    if !param.choices.is_empty() && !param.choices.contains(value) {
        let allowed = param.choices.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(ParamError::NotAllowed {
            name: param.name.clone(),
            allowed,
            value: text.to_owned(),
        });
    }
    if let (Some(pattern), ParamValue::String(text)) = (&param.pattern, &value)
        && !pattern.is_match(text)
    {
        return Err(ParamError::NoMatch {
            name: param.name.clone(),
            pattern: pattern.as_str().to_owned(),
            value: text.clone(),
        });
    }
    Ok(())
}
