//! Every form a secret value can take in what a step or a library prints: percent-encoded
//! by the common encoders, normalised by URL parsers, JSON- and shell-escaped, base64 at every
//! alignment, line-wrapped. The masker looks for all of them at once.

use base64::Engine as _;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

use super::MIN_SECRET_LEN;

/// RFC 3986's unreserved characters, which most encoders leave alone (Python's `quote`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// The same and `/`, which Python's `quote` keeps by default.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');
/// What `encodeURIComponent` leaves alone; the rest is percent-encoded.
const COMPONENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'!').remove(b'~').remove(b'*');
/// What a URL parser encodes in a path: the forms a value takes inside a normalised URL.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');
const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>').add(b'\'');
const USERINFO: &AsciiSet = &PATH
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// The forms in which a secret value can reappear in what a step or a library prints.
pub(super) fn forms_of(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    // Percent-encoded, as URL builders, form encoders and HTTP clients write it, with either
    // case of hex digits.
    for set in
        [NON_ALPHANUMERIC, UNRESERVED, UNRESERVED_AND_SLASH, COMPONENT, PATH, QUERY, USERINFO]
    {
        let encoded = utf8_percent_encode(value, set).to_string();
        forms.push(encoded.replace("%20", "+"));
        forms.push(encoded.to_lowercase_hex());
        forms.push(encoded);
    }
    forms.push(form_urlencoded::byte_serialize(value.as_bytes()).collect());
    // Hex, as `xxd -p` and `od` write it, in either case.
    let hex = hex::encode(value.as_bytes());
    forms.push(hex.to_uppercase());
    forms.push(hex);
    // Every byte percent-encoded, as some tools write it.
    let every_byte: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
    forms.push(every_byte.to_lowercase_hex());
    forms.push(every_byte);
    // As a URL parser normalises it in a path, a query or a fragment (dot segments resolved,
    // backslashes turned to slashes, tabs and newlines dropped, characters percent-encoded).
    for (base, cut) in
        [("http://x/", "http://x/"), ("http://x/?", "http://x/?"), ("http://x/#", "http://x/#")]
    {
        if let Some(url) = reqwest::Url::parse(&format!("{base}{value}")).ok()
            && let Some(rest) = url.as_str().strip_prefix(cut)
        {
            forms.push(rest.to_owned());
        }
    }
    // A URL secret as a URL parser normalises it: `http://h:80/x` is printed `http://h/x`.
    if let Ok(url) = reqwest::Url::parse(value) {
        let normalised = url.as_str();
        forms.push(normalised.to_owned());
        if !value.ends_with('/') {
            forms.push(normalised.trim_end_matches('/').to_owned());
        }
        // The default port dropped from the text as written (`h:80/x` → `h/x`).
        if let Some(port) = url.port_or_known_default() {
            for (with, without) in [(format!(":{port}/"), "/"), (format!(":{port}?"), "?")] {
                if value.contains(&with) {
                    forms.push(value.replacen(&with, without, 1));
                }
            }
            if value.ends_with(&format!(":{port}")) {
                forms.push(value[..value.len() - port.to_string().len() - 1].to_owned());
            }
        }
    }
    // JSON-escaped: as serde writes it, with non-ASCII escaped (Python's default), and with
    // `/` escaped (PHP's default).
    let json = serde_json::to_string(value).unwrap_or_default();
    // serde writes a string with its quotes, always.
    let json = json[1..json.len() - 1].to_owned();
    // .NET's default encoder writes `+ < > & '` (and more) as `\u002B`-style escapes.
    let mut dotnet = String::new();
    for c in json.chars() {
        match c {
            '+' | '<' | '>' | '&' | '\'' | '`' => dotnet.push_str(&format!("\\u{:04X}", c as u32)),
            c => dotnet.push(c),
        }
    }
    let slashed = json.replace('/', "\\/");
    for text in [json, dotnet, slashed] {
        forms.push(ascii_json(&text, false));
        forms.push(ascii_json(&text, true));
        forms.push(text);
    }
    // Every character as `\uXXXX`, as some JSON encoders write it.
    let mut escaped = String::new();
    for c in value.chars() {
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            escaped.push_str(&format!("\\u{unit:04x}"));
        }
    }
    forms.push(escaped.to_uppercase().replace("\\U", "\\u"));
    forms.push(escaped);
    // Inside double quotes, as `declare -p` and `export -p` print it (the quotes themselves are
    // left alone, so that masked JSON stays JSON).
    let mut double = String::new();
    for c in value.chars() {
        if "\\\"$`".contains(c) {
            double.push('\\');
        }
        double.push(c);
    }
    forms.push(double);
    // A multi-line value (a key) with Windows line ends, or with its lines joined.
    if value.contains('\n') {
        forms.push(value.replace("\r\n", "\n").replace('\n', "\r\n"));
        forms.push(value.replace(['\r', '\n'], ""));
    }
    // Shell-quoted: as our own shell rendering and `set -x` write it, as Python's
    // `shlex.quote` does, and backslash-escaped as bash's `printf %q` does.
    if let Ok(quoted) = shlex::try_quote(value) {
        forms.push(quoted.into_owned());
    }
    forms.push(format!("'{}'", value.replace('\'', "'\"'\"'")));
    forms.push(format!("'{}'", value.replace('\'', "'\\''")));
    // Bash escapes `#` and `~` only at the start of a word; other tools escape them anywhere.
    for everywhere in ["", "#~"] {
        let mut backslashed = String::new();
        for (at, c) in value.chars().enumerate() {
            let special = " \t\n!\"$&'()*;<>?[\\]^`{|}".contains(c)
                || ("#~".contains(c) && (at == 0 || everywhere.contains(c)));
            if special {
                backslashed.push('\\');
            }
            backslashed.push(c);
        }
        forms.push(backslashed);
    }
    // Base64 at each of the three alignments a value can have in a longer encoded text; only
    // the characters that depend on the value alone, and only when that is long enough to be
    // unmistakable.
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for offset in 0..3 {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(value.as_bytes());
            let encoded = engine.encode(&bytes);
            let skip = if offset == 0 { 0 } else { 4 };
            let whole = (bytes.len() / 3) * 4;
            if whole > skip + 8 {
                forms.push(encoded[skip..whole].to_owned());
            }
        }
    }
    // Base64 as `base64` (76 columns) and `openssl base64` (64) wrap it, from the start.
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(value.as_bytes());
    let stable = &encoded[..(value.len() / 3) * 4];
    for width in [64, 76] {
        if stable.len() > width {
            for newline in ["\n", "\r\n"] {
                let lines: Vec<&str> = stable
                    .as_bytes()
                    .chunks(width)
                    .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
                    .collect();
                forms.push(lines.join(newline));
            }
        }
    }
    forms.retain(|form| form.len() >= MIN_SECRET_LEN);
    forms
}

/// JSON text with every non-ASCII character written as `\uXXXX` (upper-case hex with `upper`).
fn ascii_json(json: &str, upper: bool) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                if upper {
                    out.push_str(&format!("\\u{unit:04X}"));
                } else {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

trait LowercaseHex {
    fn to_lowercase_hex(&self) -> String;
}

impl LowercaseHex for String {
    /// `%2F` → `%2f`, leaving every other character as it is.
    fn to_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut escape = 0;
        for c in self.chars() {
            if c == '%' {
                escape = 2;
                out.push(c);
            } else if escape > 0 {
                escape -= 1;
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}
