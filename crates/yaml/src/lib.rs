//! YAML as `kubectl apply` reads it, and YAML that every reader reads back the same.
//!
//! kubectl turns each YAML document into JSON with sigs.k8s.io/yaml, that is go-yaml v2's
//! YAML 1.1 resolution of plain scalars: `yes`, `on`, `y` are `true`; `0755` is 493;
//! `1_000` is 1000; `08` is 8; a key `on:` becomes `"true"`. A YAML 1.2 reader (serde_yaml,
//! most Rust crates) reads the same text as strings, so drmesh's offline checks would pass
//! manifests that the API server then refuses, or read a different value. [`documents`]
//! resolves scalars as kubectl does, over the events of `saphyr-parser` (a maintained YAML
//! parser); quoted and block scalars are always strings. [`to_string`] writes block YAML
//! whose strings are quoted whenever either reading could take them for something else.
//! `tests/e2e/yaml.rs` compares [`documents`] with sigs.k8s.io/yaml itself.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

/// Why a text is not YAML that kubectl would read, with where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", location.map(|(l, c)| format!(" at line {l} column {c}")).unwrap_or_default())]
pub struct Error {
    pub message: String,
    pub location: Option<(usize, usize)>,
}

impl Error {
    fn at(message: impl Into<String>, span: Option<&Span>) -> Self {
        Self { message: message.into(), location: span.map(|s| (s.start.line(), s.start.col() + 1)) }
    }
}

/// The documents of a YAML stream, each as JSON; an empty document is `null`. After a
/// syntax error the stream cannot be resynchronised: the error is the last item.
pub fn documents(text: &str) -> Documents<'_> {
    Documents { parser: Parser::new_from_str(text), anchors: HashMap::new(), done: false }
}

/// One document (the first of the stream; `null` when there is none).
pub fn from_str_value(text: &str) -> Result<Value, Error> {
    documents(text).next().unwrap_or(Ok(Value::Null))
}

/// One document, deserialized from its JSON form.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    let value = from_str_value(text)?;
    serde_json::from_value(value).map_err(|e| Error::at(e.to_string(), None))
}

/// The stream of [`documents`].
pub struct Documents<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Value>,
    done: bool,
}

impl Iterator for Documents<'_> {
    type Item = Result<Value, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.document();
        match result {
            Ok(Some(value)) => Some(Ok(value)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<'a> Documents<'a> {
    fn event(&mut self) -> Result<(Event<'a>, Span), Error> {
        match self.parser.next() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => {
                let m = e.marker();
                Err(Error { message: e.info().to_string(), location: Some((m.line(), m.col() + 1)) })
            }
            None => Err(Error::at("unexpected end of the YAML stream", None)),
        }
    }

    /// The next document, `None` at the end of the stream.
    fn document(&mut self) -> Result<Option<Value>, Error> {
        loop {
            let (event, _) = self.event()?;
            match event {
                Event::StreamStart | Event::Nothing => {}
                Event::StreamEnd => return Ok(None),
                Event::DocumentStart(_) => break,
                other => return Err(Error::at(format!("unexpected {other:?} between documents"), None)),
            }
        }
        self.anchors.clear();
        let (event, span) = self.event()?;
        let value = match event {
            // `---` followed by nothing: an empty document.
            Event::DocumentEnd => return Ok(Some(Value::Null)),
            event => self.node(event, span)?,
        };
        match self.event()?.0 {
            Event::DocumentEnd => Ok(Some(value)),
            other => Err(Error::at(format!("expected the end of the document, found {other:?}"), None)),
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Value, Error> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_deref(), &span)?;
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::Alias(id) => {
                self.anchors.get(&id).cloned().ok_or_else(|| Error::at("an alias to an unknown anchor", Some(&span)))
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.event()?;
                    match event {
                        Event::SequenceEnd => break,
                        event => items.push(self.node(event, span)?),
                    }
                }
                let value = Value::Array(items);
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Map::new();
                loop {
                    let (event, key_span) = self.event()?;
                    let key_event = match event {
                        Event::MappingEnd => break,
                        event => event,
                    };
                    // `<<: *base` (or a list of them): the merged entries are set in
                    // place, as go-yaml v2 does (a later key wins).
                    let merge = matches!(&key_event, Event::Scalar(k, ScalarStyle::Plain, _, None) if k == "<<");
                    let key = self.node(key_event, key_span)?;
                    let (value_event, value_span) = self.event()?;
                    let value = self.node(value_event, value_span)?;
                    if merge {
                        merge_into(&mut map, value, &key_span)?;
                    } else {
                        map.insert(key_string(key, &key_span)?, value);
                    }
                }
                let value = Value::Object(map);
                self.remember(anchor, &value);
                Ok(value)
            }
            other => Err(Error::at(format!("unexpected {other:?}"), Some(&span))),
        }
    }

    fn remember(&mut self, anchor: usize, value: &Value) {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
    }
}

fn merge_into(map: &mut Map<String, Value>, value: Value, span: &Span) -> Result<(), Error> {
    match value {
        Value::Object(entries) => {
            map.extend(entries);
            Ok(())
        }
        Value::Array(items) => {
            for item in items {
                let Value::Object(entries) = item else {
                    return Err(Error::at("a merge key (<<) takes a mapping or a list of mappings", Some(span)));
                };
                map.extend(entries);
            }
            Ok(())
        }
        _ => Err(Error::at("a merge key (<<) takes a mapping or a list of mappings", Some(span))),
    }
}

/// A map key as JSON has it: sigs.k8s.io/yaml writes numbers and booleans as text.
fn key_string(key: Value, span: &Span) -> Result<String, Error> {
    match key {
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => format_float_key(f),
            _ => n.to_string(),
        }),
        other => Err(Error::at(format!("unsupported map key {other}: JSON keys are strings"), Some(span))),
    }
}

/// go's strconv.FormatFloat(f, 'g', -1, 32) for the float keys that reach here (finite).
fn format_float_key(f: f64) -> String {
    let f = f as f32;
    let plain = format!("{f}");
    let exp = f.abs().log10().floor();
    if f != 0.0 && !(-4.0..21.0).contains(&exp) {
        format!("{f:e}").replace('e', "e+").replace("e+-", "e-")
    } else {
        plain
    }
}

/// A scalar as go-yaml v2 resolves it, then as JSON.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>, span: &Span) -> Result<Value, Error> {
    let core = |t: &Tag| t.is_yaml_core_schema() || t.handle == "!!";
    let explicit = tag.filter(|t| core(t)).map(|t| t.suffix.as_str());
    if style != ScalarStyle::Plain || explicit == Some("str") || explicit == Some("binary") {
        return Ok(Value::String(text.to_string()));
    }
    // A local tag (`!foo`): go-yaml v2 keeps the text.
    if tag.is_some_and(|t| !core(t)) {
        return Ok(Value::String(text.to_string()));
    }
    let value = resolve(text).map_err(|m| Error::at(m, Some(span)))?;
    let kind_ok = match explicit {
        None | Some("timestamp") => true,
        Some("int") => value.is_i64() || value.is_u64(),
        Some("float") => value.is_number(),
        Some("bool") => value.is_boolean(),
        Some("null") => value.is_null(),
        Some(other) => return Err(Error::at(format!("unsupported tag !!{other} on a scalar"), Some(span))),
    };
    if !kind_ok {
        return Err(Error::at(format!("cannot decode {text:?} as !!{}", explicit.unwrap_or("")), Some(span)));
    }
    Ok(value)
}

/// go-yaml v2's `resolve` for a plain scalar, as JSON (sigs.k8s.io/yaml's conversion).
pub fn resolve(text: &str) -> Result<Value, String> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false));
        }
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
        | "-.INF" => return Err(format!("{text} is not a number JSON can carry (kubectl refuses it too)")),
        _ => {}
    }
    let first = text.as_bytes()[0];
    let number = match first {
        b'.' => text.parse::<f64>().ok().filter(|_| is_yaml_float(text)).map(float),
        b'0'..=b'9' | b'+' | b'-' => {
            let plain: String = text.chars().filter(|c| *c != '_').collect();
            if let Some(i) = go_parse_int(&plain) {
                Some(Value::Number(Number::from(i)))
            } else if let Some(u) = go_parse_uint(&plain) {
                Some(Value::Number(Number::from(u)))
            } else if is_yaml_float(&plain) {
                plain.parse::<f64>().ok().map(float)
            } else {
                None
            }
        }
        _ => None,
    };
    Ok(number.unwrap_or_else(|| Value::String(text.to_string())))
}

/// A float as encoding/json writes it: integral values without a fraction.
fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$` (go-yaml v2's yamlStyleFloat).
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// go's strconv.ParseInt(s, 0, 64): sign, then `0x`, `0o`, `0b` or a leading `0` (octal).
fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(rest)?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 { Some((magnitude as i128).wrapping_neg() as i64) } else { None }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// go's strconv.ParseUint(s, 0, 64).
fn go_parse_uint(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Block-style YAML of `value` (a document, without `---`). Strings that a YAML 1.1 or 1.2
/// reader could take for another type, or that need escapes, are double-quoted;
/// multi-line strings are literal blocks.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let value = serde_json::to_value(value).map_err(|e| Error::at(e.to_string(), None))?;
    let mut out = String::new();
    match &value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            write_scalar(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    Ok(out)
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, map: &Map<String, Value>, level: usize) {
    let mut first = true;
    for (key, value) in map {
        if !first {
            indent(out, level);
        }
        first = false;
        write_string(out, key, level, true);
        out.push(':');
        write_value_after(out, value, level, true);
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    let mut first = true;
    for item in items {
        if !first {
            indent(out, level);
        }
        first = false;
        out.push('-');
        write_value_after(out, item, level, false);
    }
}

/// A value after `key:` or `-`, at `level`.
fn write_value_after(out: &mut String, value: &Value, level: usize, in_map: bool) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            if in_map {
                out.push('\n');
                indent(out, level + 2);
            } else {
                out.push(' ');
            }
            write_map(out, map, level + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            // Sequences under a key at the key's own indentation (as kubectl prints them).
            if in_map {
                out.push('\n');
                indent(out, level);
                write_seq(out, items, level);
            } else {
                out.push(' ');
                write_seq(out, items, level + 2);
            }
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

fn write_scalar(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, level, false),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

fn write_string(out: &mut String, s: &str, level: usize, key: bool) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else if !key && literal_is_safe(s) {
        let chomp = if !s.ends_with('\n') {
            "-"
        } else if s.ends_with("\n\n") {
            "+"
        } else {
            ""
        };
        out.push('|');
        out.push_str(chomp);
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, level);
                out.push_str(line);
            }
        }
        // The caller ends the line.
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// Text that every YAML reader takes for this very string when written plain (in block
/// context, which is all this writer uses): no indicator first, no `: ` or ` #` inside,
/// no trailing `:` or space, printable ASCII only, and a string under YAML 1.1 and 1.2.
fn plain_is_safe(s: &str) -> bool {
    let b = s.as_bytes();
    let inner_ok = |i: usize, c: u8| match c {
        b':' => b.get(i + 1).is_some_and(|n| *n != b' '),
        b'#' => b[i - 1] != b' ',
        b' ' => b.get(i + 1).is_some_and(|n| *n != b' '),
        c => c.is_ascii_graphic(),
    };
    !b.is_empty()
        && (b[0].is_ascii_alphanumeric() || matches!(b[0], b'/' | b'_' | b'.' | b'(' | b'^' | b'$'))
        && b.iter().enumerate().skip(1).all(|(i, c)| inner_ok(i, *c))
        && matches!(resolve(s), Ok(Value::String(_)))
}

/// A multi-line string that a literal block carries unchanged.
fn literal_is_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with(' ')
        && !s.starts_with('\n')
        // A tab may not start a block scalar's content (the first line sets the indentation).
        && !s.starts_with('\t')
        && s.trim_end_matches('\n').contains(|c: char| !c.is_whitespace())
        && s.chars().all(|c| c == '\n' || c == '\t' || (!c.is_control() && c != '\u{feff}'))
        && !s.split('\n').any(|line| line.starts_with(' ') && line.trim().is_empty())
}

#[cfg(test)]
mod tests;
