//! Conditions over token attributes: a small expression language, parsed once from configuration
//! and evaluated per request with three-valued logic that fails closed.
//!
//! # Syntax
//!
//! ```text
//! condition  := or
//! or         := and ( "||" and )*
//! and        := unary ( "&&" unary )*
//! unary      := "!" unary | primary
//! primary    := "(" or ")"
//!             | attr ( "==" | "!=" ) literal
//!             | attr ( "<" | "<=" | ">" | ">=" ) integer
//!             | attr "in" "[" literal ( "," literal )* "]"
//!             | string "in" attr
//!             | "starts_with" "(" attr "," string ")"
//!             | "ends_with" "(" attr "," string ")"
//!             | "has" "(" attr ")"
//! literal    := string | integer | "true" | "false"
//! ```
//!
//! `!` binds tighter than `&&`, which binds tighter than `||`. Attribute names are
//! `[a-z_][a-z0-9_]{0,63}`. Strings are in double or single quotes with the escapes `\"`, `\'`
//! and `\\` only; integers are decimal `i64`, optionally negative. Whitespace is free. There is no
//! bare `true` condition: a condition must look at the token. The source is at most
//! [`Condition::MAX_SOURCE_BYTES`] bytes, nests `(` and `!` at most [`MAX_DEPTH`] deep and has at
//! most [`MAX_NODES`] nodes (each comparison, call, `!`, `&&`/`||` chain and list item counts one).
//!
//! # Semantics: three-valued, fails closed
//!
//! Attributes come from an untrusted token, and a claim may be missing or of an unexpected type.
//! Every comparison therefore yields *true*, *false* or *unknown*:
//!
//! - a comparison, `in` or function on an attribute absent from the token is *unknown*;
//! - so is one whose attribute has a different type than the literal (`run_attempt == "1"` when
//!   `run_attempt` is an integer; `<` on a string; `"x" in attr` when `attr` is not a list;
//!   `starts_with` on a non-string); no conversion is ever made;
//! - `has(attr)` is the one test of presence: *true* when the attribute exists, *false* when not;
//! - `attr in [a, b]` is `attr == a || attr == b`, and `attr != a` is `!(attr == a)`;
//! - `!`, `&&` and `||` follow Kleene's logic: `!unknown` is unknown, `unknown && false` is
//!   false, `unknown && true` is unknown, `unknown || true` is true, `unknown || false` is unknown.
//!
//! Only *true* at the top grants; *unknown* denies like *false*. So a negation cannot turn a
//! missing or mistyped claim into a grant: `!(actor in ["dependabot[bot]"])` and
//! `actor != "dependabot[bot]"` both deny a token without `actor`. More generally, a condition
//! without `has` that holds for a token lacking some attribute holds for every value that
//! attribute could take; a condition that should accept a missing claim must say so with
//! `!has(attr) || ...`.

use std::collections::BTreeSet;
use std::iter::Peekable;
use std::str::CharIndices;

use super::mapping::{AttrValue, Attributes, is_valid_attribute_name};

/// Deepest nesting of `(` and `!` accepted.
pub const MAX_DEPTH: usize = 32;
/// Most nodes (comparisons, calls, `!`, `&&`/`||` chains, list items) in one condition.
pub const MAX_NODES: usize = 1024;

/// A parsed condition over attributes, such as
/// `repository_owner == "acme" && (ref == "refs/heads/main" || ref in ["refs/heads/release"])`.
///
/// See the module documentation for the syntax and the three-valued semantics.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    expr: Expr,
    attributes: BTreeSet<String>,
}

/// Why a condition does not parse; each variant says where (a byte offset into the source).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("condition is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("condition: expected {expected} at byte {offset}, found {found}")]
    Unexpected {
        offset: usize,
        expected: &'static str,
        found: String,
    },
    #[error("condition: unexpected character `{found}` at byte {offset}")]
    UnexpectedChar { offset: usize, found: char },
    #[error("condition: string starting at byte {offset} is not terminated")]
    UnterminatedString { offset: usize },
    #[error(
        "condition: unknown escape `\\{found}` at byte {offset} (only `\\\"`, `\\'` and `\\\\` are allowed)"
    )]
    UnknownEscape { offset: usize, found: char },
    #[error("condition: integer at byte {offset} does not fit in 64 bits")]
    IntegerOutOfRange { offset: usize },
    #[error(
        "condition: unknown function `{name}` at byte {offset} (expected `has`, `starts_with` or `ends_with`)"
    )]
    UnknownFunction { offset: usize, name: String },
    #[error(
        "condition: `{name}` at byte {offset} is not an attribute name (lowercase letters, digits and `_`, at most 64)"
    )]
    InvalidAttributeName { offset: usize, name: String },
    #[error("condition nests `(` and `!` deeper than {max} at byte {offset}")]
    TooDeep { offset: usize, max: usize },
    #[error("condition has more than {max} nodes (at byte {offset})")]
    TooManyNodes { offset: usize, max: usize },
}

/// Result of evaluating part of a condition: Kleene's three-valued logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        attr: String,
        op: CompareOp,
        value: Literal,
    },
    InList {
        attr: String,
        values: Vec<Literal>,
    },
    /// `"value" in attr`, where `attr` is a list.
    Contains {
        value: String,
        attr: String,
    },
    StartsWith {
        attr: String,
        prefix: String,
    },
    EndsWith {
        attr: String,
        suffix: String,
    },
    Has {
        attr: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Literal {
    Str(String),
    Int(i64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    True,
    False,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    And,
    Or,
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    offset: usize,
}

/// What `peek` returns past the last token (the lexer always ends with `End`, so only in theory).
static END: Tok = Tok::End;

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    end_offset: usize,
    nodes: usize,
    attributes: BTreeSet<String>,
}

impl Condition {
    /// Longest condition source accepted, in bytes.
    pub const MAX_SOURCE_BYTES: usize = 4096;

    /// Parses `source` (module docs for the syntax and limits).
    ///
    /// Errors say at which byte offset what was expected: an unterminated string, an unknown
    /// escape or function, an invalid attribute name, a missing operand or operator, trailing
    /// tokens, nesting deeper than [`MAX_DEPTH`], more than [`MAX_NODES`] nodes, or a source over
    /// [`Self::MAX_SOURCE_BYTES`] bytes.
    pub fn parse(source: &str) -> Result<Self, ConditionError> {
        if source.len() > Self::MAX_SOURCE_BYTES {
            return Err(ConditionError::TooLong {
                max: Self::MAX_SOURCE_BYTES,
            });
        }
        let tokens = lex(source)?;
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
            end_offset: source.len(),
            nodes: 0,
            attributes: BTreeSet::new(),
        };
        let expr = parser.or(0)?;
        let (tok, offset) = parser.peek();
        if *tok != Tok::End {
            return Err(ConditionError::Unexpected {
                offset,
                expected: "`&&`, `||` or the end of the condition",
                found: describe(tok),
            });
        }
        Ok(Self {
            source: source.to_owned(),
            expr,
            attributes: parser.attributes,
        })
    }

    /// Whether the condition is *true* for `attrs`; *false* and *unknown* (a comparison with an
    /// absent or mistyped attribute that the logic could not settle) both return `false`.
    pub fn evaluate(&self, attrs: &Attributes) -> bool {
        eval(&self.expr, attrs) == Truth::True
    }

    /// The condition text as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The attribute names the condition refers to, sorted and without repeats (for checking
    /// them against an attribute mapping when the configuration loads).
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.attributes.iter().map(String::as_str)
    }
}

impl Truth {
    fn from_bool(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }

    /// `Some(b)` is a known answer; `None` (absent attribute, type mismatch) is unknown.
    fn from_option(b: Option<bool>) -> Self {
        b.map_or(Self::Unknown, Self::from_bool)
    }

    fn not(self) -> Self {
        match self {
            Self::True => Self::False,
            Self::False => Self::True,
            Self::Unknown => Self::Unknown,
        }
    }
}

fn eval(expr: &Expr, attrs: &Attributes) -> Truth {
    match expr {
        Expr::Or(items) => {
            let mut acc = Truth::False;
            for item in items {
                match eval(item, attrs) {
                    Truth::True => return Truth::True,
                    Truth::Unknown => acc = Truth::Unknown,
                    Truth::False => {}
                }
            }
            acc
        }
        Expr::And(items) => {
            let mut acc = Truth::True;
            for item in items {
                match eval(item, attrs) {
                    Truth::False => return Truth::False,
                    Truth::Unknown => acc = Truth::Unknown,
                    Truth::True => {}
                }
            }
            acc
        }
        Expr::Not(inner) => eval(inner, attrs).not(),
        Expr::Compare { attr, op, value } => {
            let Some(actual) = attrs.get(attr) else {
                return Truth::Unknown;
            };
            Truth::from_option(compare(actual, *op, value))
        }
        Expr::InList { attr, values } => {
            let Some(actual) = attrs.get(attr) else {
                return Truth::Unknown;
            };
            let mut acc = Truth::False;
            for value in values {
                match Truth::from_option(equals(actual, value)) {
                    Truth::True => return Truth::True,
                    Truth::Unknown => acc = Truth::Unknown,
                    Truth::False => {}
                }
            }
            acc
        }
        Expr::Contains { value, attr } => match attrs.get(attr) {
            Some(AttrValue::List(items)) => Truth::from_bool(items.iter().any(|i| i == value)),
            _ => Truth::Unknown,
        },
        Expr::StartsWith { attr, prefix } => match attrs.get(attr) {
            Some(AttrValue::Str(s)) => Truth::from_bool(s.starts_with(prefix.as_str())),
            _ => Truth::Unknown,
        },
        Expr::EndsWith { attr, suffix } => match attrs.get(attr) {
            Some(AttrValue::Str(s)) => Truth::from_bool(s.ends_with(suffix.as_str())),
            _ => Truth::Unknown,
        },
        Expr::Has { attr } => Truth::from_bool(attrs.contains_key(attr)),
    }
}

/// `None` when the types differ (or the operator does not apply to them).
fn compare(actual: &AttrValue, op: CompareOp, literal: &Literal) -> Option<bool> {
    match (op, actual, literal) {
        (CompareOp::Eq, _, _) => equals(actual, literal),
        (CompareOp::Ne, _, _) => equals(actual, literal).map(|b| !b),
        (CompareOp::Lt, AttrValue::Int(a), Literal::Int(b)) => Some(a < b),
        (CompareOp::Le, AttrValue::Int(a), Literal::Int(b)) => Some(a <= b),
        (CompareOp::Gt, AttrValue::Int(a), Literal::Int(b)) => Some(a > b),
        (CompareOp::Ge, AttrValue::Int(a), Literal::Int(b)) => Some(a >= b),
        (CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge, _, _) => None,
    }
}

/// `None` when the types differ; a list attribute equals no literal.
fn equals(actual: &AttrValue, literal: &Literal) -> Option<bool> {
    match (actual, literal) {
        (AttrValue::Str(a), Literal::Str(b)) => Some(a == b),
        (AttrValue::Int(a), Literal::Int(b)) => Some(a == b),
        (AttrValue::Bool(a), Literal::Bool(b)) => Some(a == b),
        _ => None,
    }
}

fn lex(source: &str) -> Result<Vec<Token>, ConditionError> {
    let mut tokens = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        let mut second = |want: char, expected: &'static str| match chars.peek() {
            Some(&(_, next)) if next == want => {
                chars.next();
                Ok(())
            }
            Some(&(at, next)) => Err(ConditionError::Unexpected {
                offset: at,
                expected,
                found: format!("`{next}`"),
            }),
            None => Err(ConditionError::Unexpected {
                offset: source.len(),
                expected,
                found: describe(&Tok::End),
            }),
        };
        let tok = match c {
            ' ' | '\t' | '\n' | '\r' => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '&' => {
                second('&', "`&&`")?;
                Tok::And
            }
            '|' => {
                second('|', "`||`")?;
                Tok::Or
            }
            '=' => {
                second('=', "`==`")?;
                Tok::Eq
            }
            '!' | '<' | '>' => {
                let with_eq = matches!(chars.peek(), Some(&(_, '=')));
                if with_eq {
                    chars.next();
                }
                match c {
                    '!' if with_eq => Tok::Ne,
                    '!' => Tok::Not,
                    '<' if with_eq => Tok::Le,
                    '<' => Tok::Lt,
                    _ if with_eq => Tok::Ge,
                    _ => Tok::Gt,
                }
            }
            '"' | '\'' => Tok::Str(lex_string(&mut chars, offset, c)?),
            '-' | '0'..='9' => Tok::Int(lex_integer(source, &mut chars, offset, c)?),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&(_, next)) = chars.peek() {
                    if !(next.is_ascii_alphanumeric() || next == '_') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                match word.as_str() {
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "in" => Tok::In,
                    _ => Tok::Ident(word),
                }
            }
            found => return Err(ConditionError::UnexpectedChar { offset, found }),
        };
        tokens.push(Token { tok, offset });
    }
    tokens.push(Token {
        tok: Tok::End,
        offset: source.len(),
    });
    Ok(tokens)
}

/// Reads a string whose opening `quote` is at `start`, already consumed.
fn lex_string(
    chars: &mut Peekable<CharIndices<'_>>,
    start: usize,
    quote: char,
) -> Result<String, ConditionError> {
    let mut value = String::new();
    loop {
        match chars.next() {
            None => return Err(ConditionError::UnterminatedString { offset: start }),
            Some((_, c)) if c == quote => return Ok(value),
            Some((offset, '\\')) => match chars.next() {
                Some((_, c @ ('"' | '\'' | '\\'))) => value.push(c),
                Some((_, found)) => return Err(ConditionError::UnknownEscape { offset, found }),
                None => return Err(ConditionError::UnterminatedString { offset: start }),
            },
            Some((_, c)) => value.push(c),
        }
    }
}

/// Reads a decimal integer whose first character `first` (a digit or `-`) at `start` is consumed.
fn lex_integer(
    source: &str,
    chars: &mut Peekable<CharIndices<'_>>,
    start: usize,
    first: char,
) -> Result<i64, ConditionError> {
    let mut end = start + first.len_utf8();
    while let Some(&(at, c)) = chars.peek() {
        if !c.is_ascii_digit() {
            break;
        }
        end = at + 1;
        chars.next();
    }
    let text = source.get(start..end).unwrap_or_default();
    if text == "-" {
        let (offset, found) = match chars.peek() {
            Some(&(at, c)) => (at, format!("`{c}`")),
            None => (source.len(), describe(&Tok::End)),
        };
        return Err(ConditionError::Unexpected {
            offset,
            expected: "a digit after `-`",
            found,
        });
    }
    text.parse()
        .map_err(|_| ConditionError::IntegerOutOfRange { offset: start })
}

/// How a token is named in an error message.
fn describe(tok: &Tok) -> String {
    let text = match tok {
        Tok::Ident(name) => return format!("`{name}`"),
        Tok::Str(_) => return "a string".to_owned(),
        Tok::Int(i) => return format!("`{i}`"),
        Tok::End => return "the end of the condition".to_owned(),
        Tok::True => "true",
        Tok::False => "false",
        Tok::In => "in",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::And => "&&",
        Tok::Or => "||",
        Tok::Not => "!",
        Tok::Eq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
    };
    format!("`{text}`")
}

impl Parser<'_> {
    fn peek(&self) -> (&Tok, usize) {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> (&Tok, usize) {
        match self.tokens.get(self.pos + ahead) {
            Some(token) => (&token.tok, token.offset),
            None => (&END, self.end_offset),
        }
    }

    fn advance(&mut self) {
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
    }

    fn unexpected(&self, expected: &'static str) -> ConditionError {
        let (tok, offset) = self.peek();
        ConditionError::Unexpected {
            offset,
            expected,
            found: describe(tok),
        }
    }

    /// Consumes `want` or fails saying `expected`.
    fn expect(&mut self, want: &Tok, expected: &'static str) -> Result<(), ConditionError> {
        if self.peek().0 == want {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn count_node(&mut self, offset: usize) -> Result<(), ConditionError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ConditionError::TooManyNodes {
                offset,
                max: MAX_NODES,
            });
        }
        Ok(())
    }

    fn nest(depth: usize, offset: usize) -> Result<usize, ConditionError> {
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(ConditionError::TooDeep {
                offset,
                max: MAX_DEPTH,
            });
        }
        Ok(depth)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let offset = self.peek().1;
        let first = self.and(depth)?;
        if *self.peek().0 != Tok::Or {
            return Ok(first);
        }
        self.count_node(offset)?;
        let mut items = vec![first];
        while *self.peek().0 == Tok::Or {
            self.advance();
            items.push(self.and(depth)?);
        }
        Ok(Expr::Or(items))
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let offset = self.peek().1;
        let first = self.unary(depth)?;
        if *self.peek().0 != Tok::And {
            return Ok(first);
        }
        self.count_node(offset)?;
        let mut items = vec![first];
        while *self.peek().0 == Tok::And {
            self.advance();
            items.push(self.unary(depth)?);
        }
        Ok(Expr::And(items))
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let (tok, offset) = self.peek();
        if *tok != Tok::Not {
            return self.primary(depth);
        }
        let depth = Self::nest(depth, offset)?;
        self.count_node(offset)?;
        self.advance();
        Ok(Expr::Not(Box::new(self.unary(depth)?)))
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let (tok, offset) = self.peek();
        match tok {
            Tok::LParen => {
                let depth = Self::nest(depth, offset)?;
                self.advance();
                let inner = self.or(depth)?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(inner)
            }
            Tok::Str(value) => {
                let value = value.clone();
                self.count_node(offset)?;
                self.advance();
                self.expect(&Tok::In, "`in` after a string")?;
                let attr = self.attribute()?;
                Ok(Expr::Contains { value, attr })
            }
            Tok::Ident(name) if *self.peek_at(1).0 == Tok::LParen => {
                let name = name.clone();
                self.count_node(offset)?;
                self.call(name, offset)
            }
            Tok::Ident(_) => {
                self.count_node(offset)?;
                self.comparison()
            }
            _ => Err(self.unexpected(
                "an attribute, `has`, `starts_with`, `ends_with`, a string followed by `in`, `!` or `(`",
            )),
        }
    }

    /// `name(...)`, with the name at `offset` not yet consumed.
    fn call(&mut self, name: String, offset: usize) -> Result<Expr, ConditionError> {
        let expr = match name.as_str() {
            "has" | "starts_with" | "ends_with" => {
                self.advance();
                self.expect(&Tok::LParen, "`(`")?;
                let attr = self.attribute()?;
                let expr = if name == "has" {
                    Expr::Has { attr }
                } else {
                    self.expect(&Tok::Comma, "`,` and a string")?;
                    let (tok, _) = self.peek();
                    let Tok::Str(text) = tok else {
                        return Err(self.unexpected("a string"));
                    };
                    let text = text.clone();
                    self.advance();
                    if name == "starts_with" {
                        Expr::StartsWith { attr, prefix: text }
                    } else {
                        Expr::EndsWith { attr, suffix: text }
                    }
                };
                self.expect(&Tok::RParen, "`)`")?;
                expr
            }
            _ => return Err(ConditionError::UnknownFunction { offset, name }),
        };
        Ok(expr)
    }

    /// `attr op literal` or `attr in [...]`.
    fn comparison(&mut self) -> Result<Expr, ConditionError> {
        let attr = self.attribute()?;
        let op = match self.peek().0 {
            Tok::Eq => CompareOp::Eq,
            Tok::Ne => CompareOp::Ne,
            Tok::Lt => CompareOp::Lt,
            Tok::Le => CompareOp::Le,
            Tok::Gt => CompareOp::Gt,
            Tok::Ge => CompareOp::Ge,
            Tok::In => {
                self.advance();
                return self.in_list(attr);
            }
            _ => {
                return Err(
                    self.unexpected("`==`, `!=`, `<`, `<=`, `>`, `>=` or `in` after an attribute")
                );
            }
        };
        self.advance();
        let value = if matches!(op, CompareOp::Eq | CompareOp::Ne) {
            self.literal()?
        } else {
            match self.peek().0 {
                Tok::Int(i) => {
                    let i = *i;
                    self.advance();
                    Literal::Int(i)
                }
                _ => {
                    return Err(
                        self.unexpected("an integer (`<`, `<=`, `>`, `>=` compare integers)")
                    );
                }
            }
        };
        Ok(Expr::Compare { attr, op, value })
    }

    /// `[lit, ...]` after `attr in`.
    fn in_list(&mut self, attr: String) -> Result<Expr, ConditionError> {
        self.expect(&Tok::LBracket, "`[` after `in`")?;
        let mut values = Vec::new();
        loop {
            self.count_node(self.peek().1)?;
            values.push(self.literal()?);
            match self.peek().0 {
                Tok::Comma => self.advance(),
                Tok::RBracket => {
                    self.advance();
                    return Ok(Expr::InList { attr, values });
                }
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, ConditionError> {
        let literal = match self.peek().0 {
            Tok::Str(s) => Literal::Str(s.clone()),
            Tok::Int(i) => Literal::Int(*i),
            Tok::True => Literal::Bool(true),
            Tok::False => Literal::Bool(false),
            _ => return Err(self.unexpected("a string, an integer, `true` or `false`")),
        };
        self.advance();
        Ok(literal)
    }

    fn attribute(&mut self) -> Result<String, ConditionError> {
        let (tok, offset) = self.peek();
        let Tok::Ident(name) = tok else {
            return Err(self.unexpected("an attribute name"));
        };
        if !is_valid_attribute_name(name) {
            return Err(ConditionError::InvalidAttributeName {
                offset,
                name: name.clone(),
            });
        }
        let name = name.clone();
        self.advance();
        self.attributes.insert(name.clone());
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::oauth::mapping::AttributeMapping;

    /// Attributes mapped from GitHub-Actions-like claims, the way the token exchange will.
    fn github_attrs() -> Attributes {
        let names = [
            "repository_owner",
            "repository",
            "ref",
            "actor",
            "event_name",
            "run_attempt",
            "environment",
            "groups",
            "private",
        ];
        let mapping =
            AttributeMapping::new(names.iter().map(|n| (n.to_string(), n.to_string()))).unwrap();
        let claims = json!({
            "iss": "https://token.actions.githubusercontent.com",
            "repository_owner": "acme",
            "repository": "acme/app",
            "ref": "refs/tags/v1.2.0",
            "actor": "octocat",
            "event_name": "push",
            "run_attempt": 1,
            "environment": "production",
            "groups": ["deploy", "build"],
            "private": true,
        });
        let claims = claims.as_object().unwrap();
        mapping.apply(claims).unwrap()
    }

    fn with(attrs: &Attributes, name: &str, value: AttrValue) -> Attributes {
        let mut attrs = attrs.clone();
        attrs.insert(name.into(), value);
        attrs
    }

    fn without(attrs: &Attributes, name: &str) -> Attributes {
        let mut attrs = attrs.clone();
        attrs.remove(name);
        attrs
    }

    fn s(v: &str) -> AttrValue {
        AttrValue::Str(v.into())
    }

    fn holds(source: &str, attrs: &Attributes) -> bool {
        Condition::parse(source).unwrap().evaluate(attrs)
    }

    fn err(source: &str) -> ConditionError {
        Condition::parse(source).unwrap_err()
    }

    const BRANCH_EXAMPLE: &str = r#"repository_owner == "acme" && (ref == "refs/heads/main" || ref in ["refs/heads/release", "refs/heads/hotfix"]) && !(actor in ["dependabot[bot]"])"#;
    const TAG_EXAMPLE: &str = r#"starts_with(ref, "refs/tags/v") && event_name != "pull_request" && run_attempt == 1 && has(environment) && "deploy" in groups"#;

    #[test]
    fn branch_example_holds_for_main_and_release_branches_only() {
        let attrs = github_attrs();
        for (branch, expected) in [
            ("refs/heads/main", true),
            ("refs/heads/release", true),
            ("refs/heads/hotfix", true),
            ("refs/heads/feature", false),
            ("refs/tags/v1.2.0", false),
        ] {
            let a = with(&attrs, "ref", s(branch));
            assert_eq!(holds(BRANCH_EXAMPLE, &a), expected, "{branch}");
        }
        let main = with(&attrs, "ref", s("refs/heads/main"));
        assert!(!holds(
            BRANCH_EXAMPLE,
            &with(&main, "repository_owner", s("evil"))
        ));
        assert!(!holds(
            BRANCH_EXAMPLE,
            &with(&main, "actor", s("dependabot[bot]"))
        ));
    }

    #[test]
    fn tag_example_holds_for_a_tag_push_with_an_environment() {
        let attrs = github_attrs();
        assert!(holds(TAG_EXAMPLE, &attrs));
        assert!(!holds(
            TAG_EXAMPLE,
            &with(&attrs, "ref", s("refs/heads/main"))
        ));
        assert!(!holds(
            TAG_EXAMPLE,
            &with(&attrs, "event_name", s("pull_request"))
        ));
        assert!(!holds(
            TAG_EXAMPLE,
            &with(&attrs, "run_attempt", AttrValue::Int(2))
        ));
        assert!(!holds(TAG_EXAMPLE, &without(&attrs, "environment")));
        assert!(!holds(
            TAG_EXAMPLE,
            &with(&attrs, "groups", AttrValue::List(vec!["build".into()]))
        ));
        // A missing claim behind `!=` denies rather than passing the check.
        assert!(!holds(TAG_EXAMPLE, &without(&attrs, "event_name")));
    }

    #[test]
    fn equality_and_inequality_on_each_type() {
        let a = github_attrs();
        assert!(holds(r#"actor == "octocat""#, &a));
        assert!(holds(r#"actor == 'octocat'"#, &a));
        assert!(!holds(r#"actor == "Octocat""#, &a));
        assert!(holds(r#"actor != "Octocat""#, &a));
        assert!(!holds(r#"actor != "octocat""#, &a));
        assert!(holds("run_attempt == 1", &a));
        assert!(holds("run_attempt != 2", &a));
        assert!(holds("private == true", &a));
        assert!(holds("private != false", &a));
        assert!(!holds("private == false", &a));
    }

    #[test]
    fn integer_ordering_operators() {
        let a = with(&github_attrs(), "run_attempt", AttrValue::Int(3));
        for (source, expected) in [
            ("run_attempt < 3", false),
            ("run_attempt < 4", true),
            ("run_attempt <= 3", true),
            ("run_attempt <= 2", false),
            ("run_attempt > 2", true),
            ("run_attempt > 3", false),
            ("run_attempt >= 3", true),
            ("run_attempt >= 4", false),
            ("run_attempt > -1", true),
            ("run_attempt >= -9223372036854775808", true),
        ] {
            assert_eq!(holds(source, &a), expected, "{source}");
        }
    }

    #[test]
    fn in_list_and_string_in_list_attribute() {
        let a = github_attrs();
        assert!(holds(r#"actor in ["a", "octocat"]"#, &a));
        assert!(!holds(r#"actor in ["a", "b"]"#, &a));
        assert!(holds("run_attempt in [1, 2]", &a));
        assert!(holds(r#""deploy" in groups"#, &a));
        assert!(holds(r#"'build' in groups"#, &a));
        assert!(!holds(r#""admin" in groups"#, &a));
    }

    #[test]
    fn string_functions_and_has() {
        let a = github_attrs();
        assert!(holds(r#"starts_with(ref, "refs/tags/")"#, &a));
        assert!(!holds(r#"starts_with(ref, "refs/heads/")"#, &a));
        assert!(holds(r#"ends_with(repository, "/app")"#, &a));
        assert!(!holds(r#"ends_with(repository, "/lib")"#, &a));
        assert!(holds("has(environment)", &a));
        assert!(!holds("has(environment)", &without(&a, "environment")));
        assert!(holds("!has(environment)", &without(&a, "environment")));
    }

    #[test]
    fn string_escapes_in_literals() {
        let a = with(&github_attrs(), "actor", s(r#"a"b'c\d"#));
        assert!(holds(r#"actor == "a\"b'c\\d""#, &a));
        assert!(holds(r#"actor == 'a"b\'c\\d'"#, &a));
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        let a: Attributes = [
            ("a".to_string(), AttrValue::Bool(true)),
            ("b".to_string(), AttrValue::Bool(false)),
            ("c".to_string(), AttrValue::Bool(false)),
        ]
        .into_iter()
        .collect();
        // a || (b && c) is true; (a || b) && c would be false.
        assert!(holds("a == true || b == true && c == true", &a));
        assert!(!holds("(a == true || b == true) && c == true", &a));
        // (!b) && a is true; !(b && a) is also true, so tell them apart with c: (!a) || c is false.
        assert!(!holds("!a == true || c == true", &a));
        assert!(holds("!b == true && a == true", &a));
        assert!(holds("!!a == true", &a));
    }

    #[test]
    fn negation_of_a_missing_attribute_does_not_grant() {
        let a = without(&github_attrs(), "actor");
        // Positive path first: with the attribute present and different, each one holds.
        let present = with(&a, "actor", s("octocat"));
        for source in [
            r#"!(actor == "dependabot[bot]")"#,
            r#"actor != "dependabot[bot]""#,
            r#"!(actor in ["dependabot[bot]"])"#,
            r#"!starts_with(actor, "dependabot")"#,
            r#"!ends_with(actor, "[bot]")"#,
            r#"!("x" in actor)"#,
            r#"!!!(actor == "dependabot[bot]")"#,
            r#"!(actor == "x" && repository_owner == "acme")"#,
        ] {
            let present = if source.contains("\"x\" in") {
                with(&present, "actor", AttrValue::List(vec!["y".into()]))
            } else {
                present.clone()
            };
            assert!(holds(source, &present), "{source} with actor present");
            assert!(!holds(source, &a), "{source} with actor absent");
        }
    }

    #[test]
    fn unknown_is_settled_only_by_a_known_operand() {
        let a = github_attrs();
        // unknown && false = false, so its negation is true.
        assert!(holds(r#"!(missing == "x" && actor == "nobody")"#, &a));
        // unknown && true = unknown: neither it nor its negation holds.
        assert!(!holds(r#"missing == "x" && actor == "octocat""#, &a));
        assert!(!holds(r#"!(missing == "x" && actor == "octocat")"#, &a));
        // unknown || true = true.
        assert!(holds(r#"missing == "x" || actor == "octocat""#, &a));
        // unknown || false = unknown.
        assert!(!holds(r#"missing == "x" || actor == "nobody""#, &a));
        assert!(!holds(r#"!(missing == "x" || actor == "nobody")"#, &a));
    }

    #[test]
    fn type_mismatch_is_unknown_in_both_directions() {
        let a = github_attrs();
        for source in [
            r#"run_attempt == "1""#,
            "actor == 1",
            "private == 1",
            r#"groups == "deploy""#,
            "actor < 3",
            r#""x" in actor"#,
            r#"starts_with(run_attempt, "1")"#,
            r#"ends_with(groups, "y")"#,
            r#"groups in ["deploy"]"#,
            r#"run_attempt in ["1", "2"]"#,
        ] {
            assert!(!holds(source, &a), "{source}");
            assert!(!holds(&format!("!({source})"), &a), "!({source})");
        }
        // A list with one literal of the right type still matches.
        assert!(holds(r#"run_attempt in ["1", 1]"#, &a));
    }

    #[test]
    fn source_and_attributes_are_reported() {
        let c = Condition::parse(TAG_EXAMPLE).unwrap();
        assert_eq!(c.source(), TAG_EXAMPLE);
        assert_eq!(
            c.attributes().collect::<Vec<_>>(),
            ["environment", "event_name", "groups", "ref", "run_attempt"]
        );
    }

    #[test]
    fn unterminated_string_names_its_start() {
        assert_eq!(
            err(r#"actor == "octocat"#),
            ConditionError::UnterminatedString { offset: 9 }
        );
        assert_eq!(
            err(r#"actor == 'a\'"#),
            ConditionError::UnterminatedString { offset: 9 }
        );
        assert_eq!(
            err(r#"actor == "a\"#),
            ConditionError::UnterminatedString { offset: 9 }
        );
    }

    #[test]
    fn unknown_escape_and_characters_are_refused() {
        assert_eq!(
            err(r#"actor == "a\n""#),
            ConditionError::UnknownEscape {
                offset: 11,
                found: 'n'
            }
        );
        assert_eq!(
            err("actor = 'a'"),
            ConditionError::Unexpected {
                offset: 7,
                expected: "`==`",
                found: "` `".into()
            }
        );
        assert_eq!(
            err("a == 1 & b == 2"),
            ConditionError::Unexpected {
                offset: 8,
                expected: "`&&`",
                found: "` `".into()
            }
        );
        assert_eq!(
            err("a == 1 |"),
            ConditionError::Unexpected {
                offset: 8,
                expected: "`||`",
                found: "the end of the condition".into()
            }
        );
        assert_eq!(
            err("a == 1 ; b"),
            ConditionError::UnexpectedChar {
                offset: 7,
                found: ';'
            }
        );
        assert_eq!(
            err("a == -x"),
            ConditionError::Unexpected {
                offset: 6,
                expected: "a digit after `-`",
                found: "`x`".into()
            }
        );
        assert_eq!(
            err("a == 9223372036854775808"),
            ConditionError::IntegerOutOfRange { offset: 5 }
        );
    }

    #[test]
    fn unknown_function_is_refused() {
        assert_eq!(
            err(r#"a == 1 && contains(ref, "x")"#),
            ConditionError::UnknownFunction {
                offset: 10,
                name: "contains".into()
            }
        );
    }

    #[test]
    fn trailing_tokens_are_refused() {
        assert_eq!(
            err(r#"actor == "a" "b""#),
            ConditionError::Unexpected {
                offset: 13,
                expected: "`&&`, `||` or the end of the condition",
                found: "a string".into()
            }
        );
        assert_eq!(
            err("(a == 1))"),
            ConditionError::Unexpected {
                offset: 8,
                expected: "`&&`, `||` or the end of the condition",
                found: "`)`".into()
            }
        );
    }

    #[test]
    fn missing_operands_and_operators_are_refused() {
        let expected_at = |source: &str| match err(source) {
            ConditionError::Unexpected { offset, .. } => offset,
            other => panic!("{source}: {other:?}"),
        };
        assert_eq!(expected_at(""), 0);
        assert_eq!(expected_at("   "), 3);
        assert_eq!(expected_at("true"), 0);
        assert_eq!(expected_at("actor"), 5);
        assert_eq!(expected_at("actor =="), 8);
        assert_eq!(expected_at("a == 1 &&"), 9);
        assert_eq!(expected_at("(a == 1"), 7);
        assert_eq!(expected_at(r#"actor < "b""#), 8);
        assert_eq!(expected_at("actor in []"), 10);
        assert_eq!(expected_at("actor in [1,]"), 12);
        assert_eq!(expected_at("actor in [1 2]"), 12);
        assert_eq!(expected_at("actor in 1"), 9);
        assert_eq!(expected_at(r#""x" == groups"#), 4);
        assert_eq!(expected_at("has(1)"), 4);
        assert_eq!(expected_at("starts_with(ref, 1)"), 17);
        assert_eq!(expected_at("starts_with(ref)"), 15);
        assert_eq!(expected_at("has(ref"), 7);
    }

    #[test]
    fn invalid_attribute_names_are_refused() {
        assert_eq!(
            err(r#"Actor == "x""#),
            ConditionError::InvalidAttributeName {
                offset: 0,
                name: "Actor".into()
            }
        );
        let long = "a".repeat(65);
        assert_eq!(
            err(&format!("has({long})")),
            ConditionError::InvalidAttributeName {
                offset: 4,
                name: long
            }
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let nested = |n: usize| format!("{}a == 1{}", "(".repeat(n), ")".repeat(n));
        assert!(Condition::parse(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(
            err(&nested(MAX_DEPTH + 1)),
            ConditionError::TooDeep {
                offset: MAX_DEPTH,
                max: MAX_DEPTH
            }
        );
        let nots = |n: usize| format!("{}a == 1", "!".repeat(n));
        assert!(Condition::parse(&nots(MAX_DEPTH)).is_ok());
        assert_eq!(
            err(&nots(MAX_DEPTH + 1)),
            ConditionError::TooDeep {
                offset: MAX_DEPTH,
                max: MAX_DEPTH
            }
        );
        // Far past the limit, parsing still ends with an error rather than a stack overflow.
        assert!(matches!(
            err(&"(!".repeat(2000)),
            ConditionError::TooDeep { .. }
        ));
    }

    #[test]
    fn too_long_and_too_many_nodes_are_refused() {
        let pad = |n: usize| format!("a == 1{}", " ".repeat(n - 6));
        assert!(Condition::parse(&pad(Condition::MAX_SOURCE_BYTES)).is_ok());
        assert_eq!(
            err(&pad(Condition::MAX_SOURCE_BYTES + 1)),
            ConditionError::TooLong {
                max: Condition::MAX_SOURCE_BYTES
            }
        );
        let list = |n: usize| format!("a in [{}]", vec!["1"; n].join(","));
        // One node for the comparison, one per item.
        assert!(Condition::parse(&list(MAX_NODES - 1)).is_ok());
        assert!(matches!(
            err(&list(MAX_NODES)),
            ConditionError::TooManyNodes { max: MAX_NODES, .. }
        ));
    }

    #[test]
    fn error_messages_are_lowercase_and_name_the_input() {
        assert_eq!(
            err(r#"foo(ref)"#).to_string(),
            "condition: unknown function `foo` at byte 0 (expected `has`, `starts_with` or `ends_with`)"
        );
        assert_eq!(
            err("a == 1 b").to_string(),
            "condition: expected `&&`, `||` or the end of the condition at byte 7, found `b`"
        );
    }

    // ---- properties ----

    /// Writes `expr` back as source, parenthesising every operand so the tree round-trips.
    fn to_source(expr: &Expr) -> String {
        let lit = |l: &Literal| match l {
            Literal::Str(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            Literal::Int(i) => i.to_string(),
            Literal::Bool(b) => b.to_string(),
        };
        let quote = |s: &str| lit(&Literal::Str(s.to_owned()));
        let join = |items: &[Expr], op: &str| {
            items
                .iter()
                .map(|i| format!("({})", to_source(i)))
                .collect::<Vec<_>>()
                .join(op)
        };
        match expr {
            Expr::Or(items) => join(items, " || "),
            Expr::And(items) => join(items, " && "),
            Expr::Not(inner) => format!("!({})", to_source(inner)),
            Expr::Compare { attr, op, value } => {
                let op = match op {
                    CompareOp::Eq => "==",
                    CompareOp::Ne => "!=",
                    CompareOp::Lt => "<",
                    CompareOp::Le => "<=",
                    CompareOp::Gt => ">",
                    CompareOp::Ge => ">=",
                };
                format!("{attr} {op} {}", lit(value))
            }
            Expr::InList { attr, values } => format!(
                "{attr} in [{}]",
                values.iter().map(lit).collect::<Vec<_>>().join(", ")
            ),
            Expr::Contains { value, attr } => format!("{} in {attr}", quote(value)),
            Expr::StartsWith { attr, prefix } => format!("starts_with({attr}, {})", quote(prefix)),
            Expr::EndsWith { attr, suffix } => format!("ends_with({attr}, {})", quote(suffix)),
            Expr::Has { attr } => format!("has({attr})"),
        }
    }

    fn attr_name() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(String::from)
    }

    fn small_string() -> impl Strategy<Value = String> {
        prop_oneof![Just("x"), Just("xy"), Just("y\"\\"), Just("")].prop_map(String::from)
    }

    fn literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            small_string().prop_map(Literal::Str),
            (-1i64..3).prop_map(Literal::Int),
            any::<bool>().prop_map(Literal::Bool),
        ]
    }

    fn attr_value() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            small_string().prop_map(AttrValue::Str),
            (-1i64..3).prop_map(AttrValue::Int),
            any::<bool>().prop_map(AttrValue::Bool),
            proptest::collection::vec(small_string(), 0..3).prop_map(AttrValue::List),
        ]
    }

    /// Conditions over `a`, `b`, `c`; `with_has` decides whether `has(..)` may appear.
    fn expr(with_has: bool) -> impl Strategy<Value = Expr> {
        let ops = prop_oneof![
            Just(CompareOp::Eq),
            Just(CompareOp::Ne),
            Just(CompareOp::Lt),
            Just(CompareOp::Le),
            Just(CompareOp::Gt),
            Just(CompareOp::Ge),
        ];
        let compare = (attr_name(), ops, literal()).prop_map(|(attr, op, value)| {
            let value = match (op, value) {
                (CompareOp::Eq | CompareOp::Ne, v) => v,
                (_, Literal::Int(i)) => Literal::Int(i),
                (_, _) => Literal::Int(1),
            };
            Expr::Compare { attr, op, value }
        });
        let base = prop_oneof![
            compare,
            (attr_name(), proptest::collection::vec(literal(), 1..3))
                .prop_map(|(attr, values)| Expr::InList { attr, values }),
            (small_string(), attr_name()).prop_map(|(value, attr)| Expr::Contains { value, attr }),
            (attr_name(), small_string())
                .prop_map(|(attr, prefix)| Expr::StartsWith { attr, prefix }),
            (attr_name(), small_string())
                .prop_map(|(attr, suffix)| Expr::EndsWith { attr, suffix }),
        ];
        let leaf = if with_has {
            prop_oneof![5 => base, 1 => attr_name().prop_map(|attr| Expr::Has { attr })].boxed()
        } else {
            base.boxed()
        };
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                proptest::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    fn attrs_strategy() -> impl Strategy<Value = Attributes> {
        proptest::collection::btree_map(attr_name(), attr_value(), 0..4)
    }

    proptest! {
        #[test]
        fn parse_never_panics(source in "\\PC{0,200}") {
            let _ = Condition::parse(&source);
        }

        #[test]
        fn parse_never_panics_on_token_soup(words in proptest::collection::vec(
            prop_oneof![
                Just("a"), Just("has"), Just("starts_with"), Just("in"), Just("true"),
                Just("("), Just(")"), Just("["), Just("]"), Just(","), Just("!"),
                Just("&&"), Just("||"), Just("=="), Just("<="), Just("\"s\""), Just("'"),
                Just("\\"), Just("-"), Just("12"), Just("99999999999999999999"),
            ],
            0..40,
        )) {
            let _ = Condition::parse(&words.concat());
            let _ = Condition::parse(&words.join(" "));
        }

        #[test]
        fn written_conditions_parse_back_to_the_same_tree(e in expr(true)) {
            let parsed = Condition::parse(&to_source(&e)).unwrap();
            prop_assert_eq!(parsed.expr, e);
        }

        /// Fails closed: without `has`, a condition that holds when an attribute is absent holds
        /// for every value it could take, so a missing claim can never be what grants.
        #[test]
        fn absence_never_grants_what_a_value_would_deny(
            e in expr(false),
            attrs in attrs_strategy(),
            name in attr_name(),
        ) {
            let c = Condition::parse(&to_source(&e)).unwrap();
            if c.evaluate(&without(&attrs, &name)) {
                prop_assert!(c.evaluate(&attrs));
            }
        }
    }
}
