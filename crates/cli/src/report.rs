//! Problems found in manifests, and how `drmesh validate` prints them: text for people,
//! JSON for scripts, JUnit XML for CI systems.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a problem is. Errors fail `drmesh validate` (exit 1); warnings fail it only
/// with `--strict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A drmesh (or Kubernetes) object named in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self { kind: kind.to_string(), namespace: namespace.to_string(), name: name.to_string() }
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Where an object was declared: a file and the position of the document in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: PathBuf,
    /// Position of the YAML document in the file, from 0.
    pub document: usize,
}

/// One problem: where, which object, which field, which rule, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `yaml`, `schema`, `cel`, `metadata`, `duplicate`, `clearance-label`, or a status
    /// reason of the operator (`InputNotGranted`, `Expired`, ...).
    pub rule: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(severity: Severity, origin: &Origin, rule: impl AsRef<str>, message: impl Into<String>) -> Self {
        Self {
            severity,
            file: origin.file.clone(),
            document: Some(origin.document),
            object: None,
            field: None,
            rule: rule.as_ref().to_string(),
            message: message.into(),
        }
    }
    pub fn error(origin: &Origin, rule: impl AsRef<str>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, origin, rule, message)
    }
    pub fn warning(origin: &Origin, rule: impl AsRef<str>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, origin, rule, message)
    }
    /// A problem the core found, with its reason, field and message as the operator
    /// reports them.
    pub fn problem(severity: Severity, origin: &Origin, problem: &crate::mesh::rules::Problem) -> Self {
        let d = Self::new(severity, origin, problem.reason, problem.message.clone());
        match &problem.field {
            Some(field) => d.at(field.clone()),
            None => d,
        }
    }
    pub fn on(mut self, object: &ObjectId) -> Self {
        self.object = Some(object.clone());
        self
    }
    pub fn at(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// `file#doc: error: Kind ns/name: field: message [rule]`
    pub fn line(&self) -> String {
        let mut out = self.file.display().to_string();
        if let Some(document) = self.document {
            let _ = write!(out, "#{document}");
        }
        let _ = write!(out, ": {}: ", self.severity.as_str());
        if let Some(object) = &self.object {
            let _ = write!(out, "{object}: ");
        }
        let mut message = self.message.as_str();
        if let Some(field) = &self.field {
            // Core messages often start with the field, or a less precise one: say it once.
            match message.split_once(": ") {
                Some((head, rest)) if !head.contains(' ') && field.starts_with(head) && field != head => {
                    let _ = write!(out, "{field}: ");
                    message = rest;
                }
                _ if message.starts_with(field.as_str()) => {}
                _ => {
                    let _ = write!(out, "{field}: ");
                }
            }
        }
        let _ = write!(out, "{message} [{}]", self.rule);
        out
    }
}

/// Sorts diagnostics by file, document, then errors before warnings; stable otherwise.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| (&a.file, a.document, a.severity).cmp(&(&b.file, b.document, b.severity)));
}

/// Counts (errors, warnings).
pub fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    (errors, diagnostics.len() - errors)
}

/// The text report: one line per problem, then a summary.
pub fn text(diagnostics: &[Diagnostic], checked: usize) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.line());
        out.push('\n');
    }
    let (errors, warnings) = counts(diagnostics);
    let _ = writeln!(out, "{checked} object(s) checked: {errors} error(s), {warnings} warning(s)");
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    objects: usize,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

/// The JSON report: `{valid, objects, errors, warnings, diagnostics: [...]}`.
pub fn json(diagnostics: &[Diagnostic], checked: usize, valid: bool) -> String {
    let (errors, warnings) = counts(diagnostics);
    let report = JsonReport { valid, objects: checked, errors, warnings, diagnostics };
    let mut out = serde_json::to_string_pretty(&report).unwrap_or_default();
    out.push('\n');
    out
}

/// Escapes text for XML attributes and content.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A test case of the JUnit report: one object (or one unreadable document).
pub struct Case {
    pub file: PathBuf,
    pub name: String,
}

/// The JUnit XML report: one test suite per file, one test case per object, a failure
/// per error (warnings go to `system-out`).
pub fn junit(cases: &[Case], diagnostics: &[Diagnostic], strict: bool) -> String {
    let mut suites: BTreeMap<&Path, Vec<(String, Vec<&Diagnostic>)>> = BTreeMap::new();
    for case in cases {
        suites.entry(case.file.as_path()).or_default().push((case.name.clone(), vec![]));
    }
    for d in diagnostics {
        let name = match &d.object {
            Some(object) => object.to_string(),
            None => format!("document {}", d.document.unwrap_or(0)),
        };
        let suite = suites.entry(d.file.as_path()).or_default();
        match suite.iter_mut().find(|(n, _)| *n == name) {
            Some((_, found)) => found.push(d),
            None => suite.push((name, vec![d])),
        }
    }
    let fails = |d: &Diagnostic| d.severity == Severity::Error || strict;
    let total: usize = suites.values().map(Vec::len).sum();
    let failed: usize = suites.values().flatten().filter(|(_, ds)| ds.iter().any(|d| fails(d))).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"drmesh validate\" tests=\"{total}\" failures=\"{failed}\" errors=\"0\">");
    for (file, tests) in &suites {
        let file = xml_escape(&file.display().to_string());
        let suite_failed = tests.iter().filter(|(_, ds)| ds.iter().any(|d| fails(d))).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{file}\" tests=\"{}\" failures=\"{suite_failed}\" errors=\"0\">",
            tests.len()
        );
        for (name, ds) in tests {
            let _ = write!(out, "    <testcase classname=\"{file}\" name=\"{}\"", xml_escape(name));
            if ds.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            for d in ds.iter().filter(|d| fails(d)) {
                let _ = writeln!(
                    out,
                    "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                    xml_escape(&d.rule),
                    xml_escape(&d.message),
                    xml_escape(&d.line())
                );
            }
            let notes: Vec<String> = ds.iter().filter(|d| !fails(d)).map(|d| xml_escape(&d.line())).collect();
            if !notes.is_empty() {
                let _ = writeln!(out, "      <system-out>{}</system-out>", notes.join("\n"));
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { file: PathBuf::from("mesh.yaml"), document: 2 }
    }

    #[test]
    fn a_line_names_file_object_field_and_rule() {
        let d = Diagnostic::error(&origin(), "schema", "70000 is greater than the maximum of 65535")
            .on(&ObjectId::new("DataSource", "police", "incident-db"))
            .at("spec.endpoint.port");
        assert_eq!(
            d.line(),
            "mesh.yaml#2: error: DataSource police/incident-db: spec.endpoint.port: 70000 is greater than the maximum of 65535 [schema]"
        );
        let core = Diagnostic::error(&origin(), "InputNotFound", "spec.inputs: DataSource police/x does not exist")
            .at("spec.inputs");
        assert!(!core.line().contains("spec.inputs: spec.inputs"), "{}", core.line());
        let precise = Diagnostic::error(&origin(), "InputNotFound", "spec.inputs: DataSource police/x does not exist")
            .at("spec.inputs[1]");
        assert!(
            precise.line().ends_with(": spec.inputs[1]: DataSource police/x does not exist [InputNotFound]"),
            "{}",
            precise.line()
        );
    }

    #[test]
    fn junit_has_a_case_per_object_and_a_failure_per_error() {
        let object = ObjectId::new("AccessPolicy", "police", "g<1>");
        let cases = vec![
            Case { file: PathBuf::from("mesh.yaml"), name: object.to_string() },
            Case { file: PathBuf::from("mesh.yaml"), name: "DataSource police/ok".into() },
        ];
        let diagnostics = vec![
            Diagnostic::error(&origin(), "Expired", "the grant expired at 2020-01-01T00:00:00Z").on(&object),
            Diagnostic::warning(&origin(), "InputNotFound", "not in the manifests").on(&object),
        ];
        let xml = junit(&cases, &diagnostics, false);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"AccessPolicy police/g&lt;1&gt;\""), "{xml}");
        assert!(xml.contains("<failure type=\"Expired\""), "{xml}");
        assert!(xml.contains("<system-out>"), "{xml}");
        assert!(xml.contains("<testcase classname=\"mesh.yaml\" name=\"DataSource police/ok\"/>"), "{xml}");
        let strict = junit(&cases, &diagnostics, true);
        assert_eq!(strict.matches("<failure").count(), 2, "{strict}");
    }

    #[test]
    fn xml_escape_drops_forbidden_control_characters() {
        assert_eq!(xml_escape("a\u{1}b<&>\"'"), "a\u{FFFD}b&lt;&amp;&gt;&quot;&apos;");
    }
}
