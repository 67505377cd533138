//! The crate's error type: policy loading failures located as `file:line:column`, and request bounds.

use std::fmt;
use std::path::PathBuf;

/// Where in a policy or schema file an error was found (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The file, as found in the policy directory.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl SourceLocation {
    /// The location of byte `offset` in `text` (clamped to the text; a 1:1 location for offset 0).
    pub fn from_offset(file: PathBuf, text: &str, offset: usize) -> Self {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        let before = text.get(..end).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
        Self { file, line, column }
    }
}

/// Renders "(and N more)" after the first of several errors.
fn more_suffix(more: &usize) -> String {
    match more {
        0 => String::new(),
        1 => " (and 1 more error)".to_owned(),
        n => format!(" (and {n} more errors)"),
    }
}

/// Everything that can go wrong loading policies or deciding a request.
///
/// Loading errors that point into a file display as `file:line:column: message`.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy directory or one of its files could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is larger than [`crate::MAX_FILE_BYTES`].
    #[error("{}: file is {size} bytes, more than the limit of {max}", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The directory holds more policy and schema files than [`crate::MAX_FILES`].
    #[error("{}: more than {max} policy and schema files", dir.display())]
    TooManyFiles {
        /// The directory.
        dir: PathBuf,
        /// The limit.
        max: usize,
    },
    /// A file is not UTF-8.
    #[error("{}: not valid UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The directory holds more policies than [`crate::MAX_POLICIES`].
    #[error("{location}: more than {max} policies in all")]
    TooManyPolicies {
        /// The policy that went over the limit.
        location: SourceLocation,
        /// The limit.
        max: usize,
    },
    /// A policy file does not parse.
    #[error("{location}: {message}{}", more_suffix(more))]
    Syntax {
        /// Where.
        location: SourceLocation,
        /// Cedar's message (and its help, when it has one).
        message: String,
        /// How many further errors the file has.
        more: usize,
    },
    /// A policy file holds a template (`?principal`/`?resource`), which Sigil does not link.
    #[error("{location}: templates are not supported (policy `{id}` has a slot)")]
    Template {
        /// Where.
        location: SourceLocation,
        /// The template's id.
        id: String,
    },
    /// Two policies have the same id (`@id` annotations, or an annotation equal to a generated id).
    #[error("{location}: duplicate policy id `{id}`")]
    DuplicatePolicyId {
        /// The second policy with the id.
        location: SourceLocation,
        /// The id.
        id: String,
    },
    /// A policy is not valid against the schema (strict validation).
    #[error("{location}: {message}{}", more_suffix(more))]
    Validation {
        /// Where (the first error, in file order).
        location: SourceLocation,
        /// Cedar's message (and its help, when it has one).
        message: String,
        /// How many further validation errors there are.
        more: usize,
    },
    /// A validation error cedar reported without a source location.
    #[error("policy `{id}`: {message}")]
    ValidationUnlocated {
        /// The policy.
        id: String,
        /// Cedar's message.
        message: String,
    },
    /// A schema fragment does not parse.
    #[error("{location}: {message}")]
    SchemaSyntax {
        /// Where.
        location: SourceLocation,
        /// Cedar's message.
        message: String,
    },
    /// The built-in schema and the fragments do not merge into a valid schema.
    #[error("{}: schema: {message}", dir.display())]
    Schema {
        /// The policy directory.
        dir: PathBuf,
        /// Cedar's message.
        message: String,
    },
    /// The built-in schema or default policies do not load (a bug in this crate, caught by tests).
    #[error("built-in policy data is invalid: {message}")]
    BuiltIn {
        /// Cedar's message.
        message: String,
    },
    /// The request names an action the schema does not declare.
    #[error("unknown action `{action}`")]
    UnknownAction {
        /// The action as given.
        action: String,
    },
    /// The request's context is larger than [`crate::MAX_CONTEXT_BYTES`] serialized.
    #[error("context is {size} bytes serialized, more than the limit of {max}")]
    ContextTooLarge {
        /// The serialized size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A JSON context nests deeper than [`crate::MAX_CONTEXT_DEPTH`].
    #[error("context nests deeper than {max} levels")]
    ContextTooDeep {
        /// The limit.
        max: usize,
    },
    /// A list in the request has more than [`crate::MAX_LIST_ITEMS`] items.
    #[error("`{field}` has {len} items, more than the limit of {max}")]
    ListTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string in the request is longer than [`crate::MAX_STRING_BYTES`].
    #[error("a string in `{field}` is {len} bytes, more than the limit of {max}")]
    StringTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A JSON context or request does not have the expected shape.
    #[error("invalid {what}: {message}")]
    InvalidJson {
        /// What was being read ("context", "cases").
        what: &'static str,
        /// serde's message.
        message: String,
    },
    /// The request does not fit the schema (e.g. an external subject asking for an SVID).
    #[error("request does not match the schema: {message}")]
    Request {
        /// Cedar's message.
        message: String,
    },
    /// A cases file is larger than [`crate::MAX_CASES_BYTES`].
    #[error("cases file is {size} bytes, more than the limit of {max}")]
    CasesTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
}
