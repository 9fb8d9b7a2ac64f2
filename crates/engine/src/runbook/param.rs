//! A runbook's parameters: their types, their values, and a `pattern` a text value must match.

use serde::Serialize;

use crate::diagnostic::Position;

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub required: bool,
    pub default: Option<ParamValue>,
    /// The allowed values (`enum:` in YAML); empty when any value of the type is allowed.
    pub choices: Vec<ParamValue>,
    /// A regular expression a string value must match.
    pub pattern: Option<Pattern>,
    pub description: Option<String>,
    pub at: Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    /// A list of strings (`-p hosts=a,b` on a command line, a JSON array over the API);
    /// `enum` and `pattern` apply to each element.
    List,
}

impl ParamType {
    pub const ALL: [ParamType; 5] = [
        ParamType::String,
        ParamType::Integer,
        ParamType::Number,
        ParamType::Boolean,
        ParamType::List,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::List => "list",
        }
    }

    /// The type of one value of `enum`: a list's items are strings.
    pub fn element(self) -> ParamType {
        match self {
            ParamType::List => ParamType::String,
            other => other,
        }
    }
}

/// A parameter's value, always of its parameter's type.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    List(Vec<String>),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::String(value) => f.write_str(value),
            ParamValue::Integer(value) => write!(f, "{value}"),
            ParamValue::Number(value) => write!(f, "{value}"),
            ParamValue::Boolean(value) => write!(f, "{value}"),
            ParamValue::List(values) => f.write_str(&values.join(",")),
        }
    }
}

/// A compiled regular expression that remembers how it was written.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        regex::Regex::new(source).map(Pattern)
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}
