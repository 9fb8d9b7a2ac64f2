//! The secrets of one run, and the one place that masks them.
//!
//! A secret's value comes only from `STEADY_SECRET_<NAME>` (read by the binary) and only for
//! the secrets a runbook declares: [`Secrets::for_runbook`] picks them out. Its real value
//! reaches the step's effect and the expressions that judge it (`expect`, `check`, `when`,
//! later steps' templates), in memory. Everything that is stored, shown, sent to live
//! clients, notified or audited passes through [`Secrets::mask`] first, which replaces every
//! occurrence of every value — and of the forms the value takes on its way out (percent-encoded,
//! normalised by a URL parser, JSON- or shell-escaped, base64) — with `***`.
//!
//! Overlapping secrets are masked as one span: the union of every match is replaced, so one
//! secret's mask never leaves another's prefix standing. Output that was cut at a size limit
//! is masked before it is cut, and a cut that falls inside a secret drops the partial value
//! (see [`Secrets::mask_capture`]).

use std::collections::BTreeMap;
use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use crate::runbook::Runbook;
use crate::template::MASK;

mod forms;

use forms::forms_of;

/// The shortest secret value Steady accepts: a shorter one would mask common text everywhere
/// (a secret `5` would turn every `15` into `1***`).
pub const MIN_SECRET_LEN: usize = 4;

/// Why a run's secrets are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// Declared secrets without a value: the run would send empty credentials.
    #[error("{} no value: set {}", describe(.0, "has", "have"), env_names(.0))]
    Missing(Vec<String>),
    /// Declared secrets whose value is shorter than [`MIN_SECRET_LEN`] characters.
    #[error("{} a value shorter than {MIN_SECRET_LEN} characters, too short to be masked reliably", describe(.0, "has", "have"))]
    TooShort(Vec<String>),
    /// A parameter value holds a declared secret: parameters are stored and shown as typed.
    #[error(
        "parameter `{param}` holds the value of secret `{secret}`: parameters are stored and shown, so a secret must come from STEADY_SECRET_{secret}"
    )]
    InParameter { param: String, secret: String },
}

fn describe(names: &[String], one: &str, many: &str) -> String {
    let list = names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ");
    if names.len() == 1 {
        format!("declared secret {list} {one}")
    } else {
        format!("declared secrets {list} {many}")
    }
}

fn env_names(names: &[String]) -> String {
    names.iter().map(|name| format!("STEADY_SECRET_{name}")).collect::<Vec<_>>().join(", ")
}

/// The values of the secrets one runbook declares, and their masker. `Debug` shows names only.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Declared name → real value; only secrets that have a usable value.
    values: BTreeMap<String, String>,
    /// Declared secrets with no value in this process.
    missing: Vec<String>,
    masker: Option<Masker>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("missing", &self.missing)
            .finish()
    }
}

impl Secrets {
    /// The declared secrets of `runbook` out of every value this process has (`available`,
    /// name → value as read from `STEADY_SECRET_<NAME>`). Undeclared values are ignored: they
    /// are neither given to the run nor masked in its output.
    ///
    /// Errors: a declared secret without a value, or with one shorter than
    /// [`MIN_SECRET_LEN`]; a run must not start then.
    pub fn for_runbook(
        runbook: &Runbook,
        available: &BTreeMap<String, String>,
    ) -> Result<Secrets, SecretsError> {
        let value = |name: &String| available.get(name).filter(|value| !value.is_empty());
        let missing: Vec<String> =
            runbook.secrets.iter().filter(|name| value(name).is_none()).cloned().collect();
        if !missing.is_empty() {
            return Err(SecretsError::Missing(missing));
        }
        let short: Vec<String> = runbook
            .secrets
            .iter()
            .filter(|name| value(name).is_some_and(|v| v.chars().count() < MIN_SECRET_LEN))
            .cloned()
            .collect();
        if !short.is_empty() {
            return Err(SecretsError::TooShort(short));
        }
        Ok(Secrets::available_for(runbook, available))
    }

    /// Like [`Secrets::for_runbook`], for a run that already started: the values this process
    /// has are used and masked, and the missing ones (or too short to mask) are listed by
    /// [`Secrets::missing`] so that a step that needs one fails with a clear note instead of
    /// sending an empty or unmasked value.
    pub fn available_for(runbook: &Runbook, available: &BTreeMap<String, String>) -> Secrets {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for name in &runbook.secrets {
            let usable = |value: &&String| value.chars().count() >= MIN_SECRET_LEN;
            match available.get(name).filter(usable) {
                Some(value) => {
                    values.insert(name.clone(), value.clone());
                }
                None => missing.push(name.clone()),
            }
        }
        let masker = Masker::new(values.values().map(String::as_str));
        Secrets { values, missing, masker }
    }

    /// Refuses parameter values that hold a secret: what people type is stored and shown as
    /// typed, and masking it would change what the run does.
    pub fn check_params<'p>(
        &self,
        params: impl IntoIterator<Item = (&'p str, String)>,
    ) -> Result<(), SecretsError> {
        for (param, value) in params {
            // In any form masking knows (base64, percent-encoded, …), not only as typed.
            if self.mask(&value) == value {
                continue;
            }
            let secret = self.which(&value).unwrap_or_default();
            return Err(SecretsError::InParameter { param: param.to_owned(), secret });
        }
        Ok(())
    }

    /// The name of the first secret found in `text`, trying each on its own.
    fn which(&self, text: &str) -> Option<String> {
        self.values.iter().find_map(|(name, value)| {
            let one = Masker::new(std::iter::once(value.as_str()))?;
            (one.mask(text) != text).then(|| name.clone())
        })
    }

    /// Masks every string (and key) inside a JSON value: what a step's output parsed to, or an
    /// `http` step's JSON body, after escapes the text form could hide a secret behind (`\u002B`).
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.masker.is_none() {
            return;
        }
        match value {
            Value::String(text) => {
                let masked = self.mask(text);
                if masked != *text {
                    *text = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.mask_json(item)),
            Value::Object(fields) => {
                let masked: serde_json::Map<String, Value> = std::mem::take(fields)
                    .into_iter()
                    .map(|(key, mut item)| {
                        self.mask_json(&mut item);
                        (self.mask(&key), item)
                    })
                    .collect();
                *fields = masked;
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Masks every string value of a rendered action, and its JSON body as
    /// [`Secrets::mask_json`] does; its keys and `kind` are Steady's words, never a secret, so
    /// a secret that happens to equal one (`http`, `argv`) cannot rewrite what the action is.
    pub fn mask_action(&self, action: &mut crate::plan::Action) {
        if self.masker.is_none() {
            return;
        }
        action.each_value_mut(
            |text| {
                let masked = self.mask(text);
                if masked != *text {
                    *text = masked;
                }
            },
            |json| self.mask_json(json),
        );
    }

    /// Name → real value, for rendering what is executed. Never store or show these.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Declared secrets with no value in this process.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// `text` with every secret, in every form it can take, replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        match &self.masker {
            Some(masker) => masker.mask(text),
            None => text.to_owned(),
        }
    }

    /// Masks output captured up to a limit, then cuts it to `limit` bytes (at a character
    /// boundary): masking comes first, so a cut can never leave part of a secret. `cut_short`
    /// says whether the capture itself stopped before the output's end, in which case a partial
    /// secret at the very end is dropped too. Returns the text and whether anything was cut.
    pub fn mask_capture(&self, captured: &[u8], cut_short: bool, limit: usize) -> (String, bool) {
        let mut text = String::from_utf8_lossy(captured).into_owned();
        if let Some(masker) = self.masker.as_ref().filter(|_| cut_short) {
            text.truncate(text.len() - masker.partial_tail(&text));
        }
        let mut masked = self.mask(&text);
        let mut truncated = cut_short;
        if masked.len() > limit {
            let mut end = limit;
            while !masked.is_char_boundary(end) {
                end -= 1;
            }
            masked.truncate(end);
            truncated = true;
        }
        (masked, truncated)
    }

    /// How many bytes of output beyond the stored limit a runner must capture so that a secret
    /// straddling the limit is still seen whole (the longest form of any secret).
    pub fn capture_margin(&self) -> usize {
        self.masker.as_ref().map_or(0, |masker| masker.longest)
    }
}

/// Every form of every secret, searched at once.
#[derive(Clone)]
struct Masker {
    automaton: AhoCorasick,
    forms: Vec<String>,
    longest: usize,
}

impl Masker {
    fn new<'a>(values: impl Iterator<Item = &'a str>) -> Option<Masker> {
        let mut forms: Vec<String> = values.flat_map(forms_of).collect();
        forms.sort();
        forms.dedup();
        if forms.is_empty() {
            return None;
        }
        // Building fails only past the automaton's size limits, far beyond any real secret.
        // A contiguous NFA builds in time linear in the forms' length; a DFA over a long,
        // repetitive secret took tens of seconds to build.
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&forms)
            .ok()?;
        let longest = forms.iter().map(String::len).max().unwrap_or(0);
        Some(Masker { automaton, forms, longest })
    }

    fn mask(&self, text: &str) -> String {
        // A secret that itself contains `***` can reappear from what masking wrote; mask again
        // until nothing matches. Each round replaces spans of 4 or more bytes with 3, so it ends.
        let mut masked = self.mask_once(text);
        while self.automaton.is_match(&masked) {
            masked = self.mask_once(&masked);
        }
        masked
    }

    fn mask_once(&self, text: &str) -> String {
        // Every match, overlapping ones included, merged into spans: masking one secret first
        // must never leave a prefix of another that overlapped it.
        let mut found: Vec<(usize, usize)> = self
            .automaton
            .find_overlapping_iter(text)
            .map(|found| (found.start(), found.end()))
            .collect();
        found.sort_unstable();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (start, end) in found {
            match spans.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => spans.push((start, end)),
            }
        }
        if spans.is_empty() {
            return text.to_owned();
        }
        let mut masked = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            masked.push_str(&text[at..start]);
            masked.push_str(MASK);
            at = end;
        }
        masked.push_str(&text[at..]);
        masked
    }

    /// The length of the longest end of `text` that is the beginning of some form: what a cut
    /// in the middle of a secret left behind.
    fn partial_tail(&self, text: &str) -> usize {
        let mut longest = 0;
        for form in &self.forms {
            for len in (longest + 1..form.len()).rev() {
                if form.is_char_boundary(len) && text.ends_with(&form[..len]) {
                    longest = len;
                    break;
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let masker = Masker::new(values.iter().copied());
        Secrets {
            values: values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("S{i}"), (*v).to_owned()))
                .collect(),
            missing: Vec::new(),
            masker,
        }
    }

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let s = secrets(&["p@ss w/rd:é"]);
        for text in [
            "p@ss w/rd:é",
            "p%40ss%20w%2Frd%3A%C3%A9",
            "p%40ss%20w%2frd%3a%c3%a9",
            "p%40ss+w%2Frd%3A%C3%A9",
            "p@ss w\\/rd:\\u00e9",
            "'p@ss w/rd:é'",
        ] {
            assert_eq!(s.mask(&format!("<{text}>")), format!("<{MASK}>"), "{text}");
        }
    }

    #[test]
    fn a_url_secret_is_masked_as_a_client_normalises_it() {
        let s = secrets(&["http://hooks.example:80/T0/B1"]);
        assert_eq!(s.mask("error for url (http://hooks.example/T0/B1)"), "error for url (***)");
    }

    #[test]
    fn base64_of_a_secret_is_masked_at_any_alignment() {
        let s = secrets(&["correct-horse-battery-staple"]);
        for prefix in ["", "a", "ab", "abc"] {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{prefix}correct-horse-battery-staple\n"));
            let masked = s.mask(&encoded);
            assert!(masked.contains(MASK), "{prefix:?}: {encoded} → {masked}");
        }
    }

    #[test]
    fn overlapping_secrets_leave_no_prefix_of_either() {
        let s = secrets(&["password123", "word123456"]);
        assert_eq!(s.mask("x password123456 y"), "x *** y");
        let s = secrets(&["word123456", "password123"]);
        assert_eq!(s.mask("x password123456 y"), "x *** y");
    }

    #[test]
    fn masking_an_action_masks_its_values_but_never_its_keys_or_kind() {
        use crate::plan::Action;
        let s = secrets(&["http", "headers", "s3cr3t-token"]);
        let mut action = Action::Http {
            method: "POST".into(),
            url: "https://hooks.example/s3cr3t-token".into(),
            headers: vec![("authorization".into(), "Bearer s3cr3t-token".into())],
            json: Some(serde_json::json!({ "s3cr3t-token": "headers" })),
            body: None,
        };
        s.mask_action(&mut action);
        let json = action.to_value();
        assert_eq!(json["kind"], "http");
        assert!(json.get("headers").is_some(), "{json}");
        // Values are masked wherever the secret shows, even inside a word.
        assert_eq!(json["url"], "***s://hooks.example/***");
        assert_eq!(json["headers"], serde_json::json!([["authorization", "Bearer ***"]]));
        // The body is the runbook's JSON: its keys are masked as its values are.
        assert_eq!(json["json"], serde_json::json!({ "***": "***" }));
    }

    #[test]
    fn masking_comes_before_the_cut() {
        let s = secrets(&["s3cr3t-value"]);
        // The secret straddles the limit: masked whole, then cut.
        let (text, cut) = s.mask_capture(b"0123456789s3cr3t-value tail", false, 12);
        assert_eq!((text.as_str(), cut), ("0123456789**", true));
        // The capture stopped inside a secret: the partial value goes.
        let (text, cut) = s.mask_capture(b"ok s3cr3t-value ok s3cr3t-v", true, 100);
        assert_eq!((text.as_str(), cut), ("ok *** ok ", true));
    }

    #[test]
    fn a_secret_holding_the_mask_cannot_be_rebuilt_by_masking() {
        let s = secrets(&["x***"]);
        assert_eq!(s.mask("xx***"), "***");
    }

    proptest::proptest! {
        /// Whatever the secrets and the text, masking never panics and no secret survives it,
        /// nor does any cut of it through `mask_capture`.
        #[test]
        fn no_secret_survives_masking(
            values in proptest::collection::vec("[a-c*%/é\\\\\"]{4,9}", 1..4),
            pieces in proptest::collection::vec("[a-c*%/é\\\\\" ]{0,12}", 0..8),
            limit in 0usize..64,
            cut_short: bool,
        ) {
            let s = secrets(&values.iter().map(String::as_str).collect::<Vec<_>>());
            let mut text = String::new();
            for (i, piece) in pieces.iter().enumerate() {
                text.push_str(piece);
                text.push_str(&values[i % values.len()]);
            }
            let masked = s.mask(&text);
            let (captured, _) = s.mask_capture(text.as_bytes(), cut_short, limit);
            proptest::prop_assert!(captured.len() <= limit);
            for value in &values {
                proptest::prop_assert!(!masked.contains(value.as_str()), "{value:?} in {masked:?}");
                proptest::prop_assert!(!captured.contains(value.as_str()), "{value:?} in {captured:?}");
            }
        }
    }

    #[test]
    fn text_without_secrets_is_untouched() {
        assert_eq!(secrets(&[]).mask("15"), "15");
        assert_eq!(secrets(&["abcd"]).mask("15"), "15");
    }
}
