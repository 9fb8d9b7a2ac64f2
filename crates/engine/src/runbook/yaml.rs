//! The first stage of parsing: YAML text to a tree of nodes that know their position, and the
//! typed, position-reporting accessors the second stage reads that tree with.
//!
//! `serde_yaml` cannot say where a semantic error is, so this reads YAML with `marked-yaml`,
//! whose nodes carry their source spans.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node};

use crate::diagnostic::{Diagnostic, Position, with_suggestion};

/// Loads YAML text into a node tree. A runbook is always one mapping, in one document.
pub(crate) fn load(source: &str) -> Result<Node, Diagnostic> {
    load_mapping(source, "a runbook must be a YAML mapping with `name` and `steps`")
}

/// Loads YAML text that must be one mapping, in one document; `not_a_mapping` is the error
/// when it is something else.
pub(crate) fn load_mapping(source: &str, not_a_mapping: &str) -> Result<Node, Diagnostic> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true).prevent_coercion(true);
    let root =
        marked_yaml::parse_yaml_with_options(0, source, options).map_err(|error| match error {
            LoadError::TopLevelMustBeMapping(marker) => {
                Diagnostic::error(position(&marker), not_a_mapping)
            }
            other => diagnostic(other),
        })?;
    // Only a line starting with a document marker (`---`, `...`) can begin another document;
    // without one, the second parse is not needed.
    if source.lines().any(|line| line.starts_with("---") || line.starts_with("...")) {
        one_document(source)?;
    }
    Ok(root)
}

/// `marked-yaml` reads the first document of a stream and ignores the rest, so a file with a
/// second document (a `---` line, often two runbooks pasted into one file) would silently run
/// the first. Which one the author meant is ambiguous: the second document is refused where it
/// starts, as is anything after the first document that is not YAML.
fn one_document(source: &str) -> Result<(), Diagnostic> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(source);
    let mut documents = 0;
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return Ok(()),
            Ok((Event::DocumentStart, marker)) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(
                        Position { line: marker.line(), column: marker.col() + 1 },
                        "a second YAML document: a file holds one runbook, \
                         so move this one to its own file",
                    ));
                }
            }
            Ok(_) => {}
            Err(error) => {
                let marker = error.marker();
                return Err(Diagnostic::error(
                    Position { line: marker.line(), column: marker.col() + 1 },
                    format!("YAML syntax: {}", error.info()),
                ));
            }
        }
    }
}

fn diagnostic(error: LoadError) -> Diagnostic {
    match error {
        LoadError::TopLevelMustBeMapping(marker) => Diagnostic::error(
            position(&marker),
            "a runbook must be a YAML mapping with `name` and `steps`",
        ),
        LoadError::TopLevelMustBeSequence(marker) => {
            Diagnostic::error(position(&marker), "unexpected YAML document shape")
        }
        LoadError::UnexpectedAnchor(marker) => Diagnostic::error(
            position(&marker),
            "YAML anchors and aliases are not supported in runbooks: write the value out",
        ),
        LoadError::MappingKeyMustBeScalar(marker) => {
            Diagnostic::error(position(&marker), "a mapping key must be a plain word")
        }
        LoadError::UnexpectedTag(marker) => Diagnostic::error(
            position(&marker),
            "YAML tags (`!name`) are not supported in runbooks",
        ),
        LoadError::ScanError(marker, error) => {
            Diagnostic::error(position(&marker), format!("YAML syntax: {}", error.info()))
        }
        LoadError::DuplicateKey(duplicate) => Diagnostic::error(
            scalar_at(&duplicate.key),
            format!(
                "duplicate key `{}` (first on line {})",
                duplicate.key.as_str(),
                scalar_at(&duplicate.prev_key).line
            ),
        ),
    }
}

fn position(marker: &marked_yaml::Marker) -> Position {
    Position { line: marker.line(), column: marker.column() }
}

pub(crate) fn at(node: &Node) -> Position {
    node.span().start().map(position).unwrap_or_default()
}

pub(crate) fn scalar_at(scalar: &MarkedScalarNode) -> Position {
    scalar.span().start().map(position).unwrap_or_default()
}

/// `null`, `~` or nothing at all after the colon.
pub(crate) fn is_null(node: &Node) -> bool {
    matches!(node, Node::Scalar(scalar)
        if scalar.may_coerce() && matches!(scalar.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

/// How a node looks to an author, for "expected X, found Y" messages.
fn describe(node: &Node) -> &'static str {
    match node {
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
        _ if is_null(node) => "nothing",
        Node::Scalar(scalar) if !scalar.may_coerce() => "a quoted string",
        Node::Scalar(scalar) if scalar.as_bool().is_some() => "true/false",
        Node::Scalar(scalar) if scalar.parse::<f64>().is_ok() => "a number",
        Node::Scalar(_) => "a string",
    }
}

fn mismatch(node: &Node, field: &str, expected: &str) -> Diagnostic {
    Diagnostic::error(at(node), format!("`{field}` must be {expected}, found {}", describe(node)))
}

/// A YAML mapping read as a set of known fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'n> {
    map: &'n MarkedMappingNode,
}

/// Reads `node` as a mapping of the `known` fields; reports the node if it is not a mapping and
/// every key that is not known, suggesting the closest known one.
pub(crate) fn fields<'n>(
    node: &'n Node,
    field: &str,
    known: &[&str],
    out: &mut Vec<Diagnostic>,
) -> Option<Fields<'n>> {
    let Node::Mapping(map) = node else {
        out.push(Diagnostic::error(
            at(node),
            format!("{field} must be a mapping, found {}", describe(node)),
        ));
        return None;
    };
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            let message = format!("unknown field `{}` in {field}", key.as_str());
            out.push(Diagnostic::error(
                scalar_at(key),
                with_suggestion(message, key.as_str(), known.iter().copied()),
            ));
        }
    }
    Some(Fields { map })
}

impl<'n> Fields<'n> {
    /// Where the mapping starts: its first key, which is where a reader's eye lands.
    pub(crate) fn at(&self) -> Position {
        match self.map.keys().next() {
            Some(key) => scalar_at(key),
            None => self.map.span().start().map(position).unwrap_or_default(),
        }
    }

    /// The value of `key`, treating an explicit `null` like an absent key.
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.map.get_node(key).filter(|node| !is_null(node))
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.get_node(key).is_some()
    }

    /// Where `key` is written, for errors about the field as a whole.
    pub(crate) fn key_at(&self, key: &str) -> Position {
        self.map
            .keys()
            .find(|candidate| candidate.as_str() == key)
            .map(scalar_at)
            .unwrap_or_else(|| self.at())
    }

    /// The value of a field that must be present.
    pub(crate) fn require(
        &self,
        key: &str,
        what: &str,
        out: &mut Vec<Diagnostic>,
    ) -> Option<&'n Node> {
        let value = self.get(key);
        if value.is_none() {
            out.push(Diagnostic::error(self.at(), format!("{what} is missing `{key}`")));
        }
        value
    }
}

/// Iterates a mapping's entries without a fixed set of keys (params, roles, env, headers).
pub(crate) fn entries<'n>(
    node: &'n Node,
    field: &str,
    out: &mut Vec<Diagnostic>,
) -> Vec<(&'n MarkedScalarNode, &'n Node)> {
    match node {
        Node::Mapping(map) => map.iter().collect(),
        _ => {
            out.push(mismatch(node, field, "a mapping"));
            Vec::new()
        }
    }
}

pub(crate) fn sequence<'n>(
    node: &'n Node,
    field: &str,
    out: &mut Vec<Diagnostic>,
) -> Option<&'n [Node]> {
    match node {
        Node::Sequence(items) => Some(items.as_slice()),
        _ => {
            out.push(mismatch(node, field, "a list"));
            None
        }
    }
}

/// Any scalar read as text: in runbooks `port: 5432` in a string field means "5432".
pub(crate) fn string(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<String> {
    match node {
        Node::Scalar(scalar) if !is_null(node) => Some(scalar.as_str().to_owned()),
        _ => {
            out.push(mismatch(node, field, "a string"));
            None
        }
    }
}

pub(crate) fn boolean(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<bool> {
    let value = node.as_scalar().and_then(MarkedScalarNode::as_bool);
    if value.is_none() {
        out.push(mismatch(node, field, "true or false"));
    }
    value
}

pub(crate) fn integer(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<i64> {
    let value = node
        .as_scalar()
        .filter(|scalar| scalar.may_coerce())
        .and_then(|scalar| scalar.as_str().parse::<i64>().ok());
    if value.is_none() {
        out.push(mismatch(node, field, "a whole number"));
    }
    value
}

pub(crate) fn number(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<f64> {
    let value = node
        .as_scalar()
        .filter(|scalar| scalar.may_coerce())
        .and_then(|scalar| scalar.as_str().parse::<f64>().ok())
        .filter(|value| value.is_finite());
    if value.is_none() {
        out.push(mismatch(node, field, "a number"));
    }
    value
}

/// A YAML value as JSON, for `http.json` bodies: plain scalars keep their YAML type.
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Mapping(map) => Value::Object(
            map.iter().map(|(key, value)| (key.as_str().to_owned(), to_json(value))).collect(),
        ),
        Node::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        _ if is_null(node) => Value::Null,
        Node::Scalar(scalar) => {
            let text = scalar.as_str();
            if let Some(value) = scalar.as_bool() {
                Value::Bool(value)
            } else if let Some(value) = text.parse::<i64>().ok().filter(|_| scalar.may_coerce()) {
                Value::from(value)
            } else if let Some(value) =
                serde_json::Number::from_f64(text.parse().unwrap_or(f64::NAN))
                    .filter(|_| scalar.may_coerce())
            {
                Value::Number(value)
            } else {
                Value::String(text.to_owned())
            }
        }
    }
}
