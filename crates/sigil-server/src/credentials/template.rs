//! Statement templates: operator-written SQL with `{{name}}`, `{{password}}` and
//! `{{expiration}}` placeholders, parsed once and rendered per brokered credential.

use std::fmt;

use zeroize::Zeroizing;

/// Longest template accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;

/// Why a statement template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is empty or only whitespace.
    #[error("the statement is empty")]
    Empty,
    /// The template is longer than [`MAX_TEMPLATE_BYTES`].
    #[error("the statement is {len} bytes, more than the limit of {max} bytes", max = MAX_TEMPLATE_BYTES)]
    TooLong {
        /// Length of the rejected template in bytes.
        len: usize,
    },
    /// A `{{...}}` placeholder names something other than `name`, `password` or `expiration`.
    #[error(
        "unknown placeholder `{{{{{placeholder}}}}}` at byte {offset}: expected `{{{{name}}}}`, `{{{{password}}}}` or `{{{{expiration}}}}`"
    )]
    UnknownPlaceholder {
        /// The text between the braces, trimmed.
        placeholder: String,
        /// Byte offset of the opening `{{`.
        offset: usize,
    },
    /// A `{{` has no closing `}}`.
    #[error("unterminated placeholder: `{{{{` at byte {offset} has no closing `}}}}`")]
    Unterminated {
        /// Byte offset of the opening `{{`.
        offset: usize,
    },
}

/// A value a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Name,
    Password,
    Expiration,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Value(Placeholder),
}

/// A parsed SQL statement template.
///
/// Placeholders are `{{name}}`, `{{password}}` and `{{expiration}}` (whitespace inside the
/// braces is allowed: `{{ name }}`). Rendering substitutes the values verbatim, with no quoting
/// or escaping: the template writes the quotes (`'{{password}}'`, `"{{name}}"`). This is safe
/// because Sigil generates the values itself: user names are `[a-z0-9_]` only
/// ([`super::password::generate_username`]) and passwords come from an alphabet that excludes
/// quotes, backslashes, backticks, `$`, spaces and `;` ([`super::password::PasswordPolicy`]).
///
/// The template text holds no secret, so `Debug` prints it; a rendered statement may contain a
/// password and is returned as a [`Zeroizing`] string.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
}

/// The values substituted into a [`Template`].
#[derive(Clone, Copy)]
pub struct TemplateValues<'a> {
    /// The database user name (`[a-z0-9_]`).
    pub name: &'a str,
    /// The user's password (from a [`super::password::PasswordPolicy`] alphabet).
    pub password: &'a str,
    /// When the user expires, in the form the target database expects.
    pub expiration: &'a str,
}

impl fmt::Debug for TemplateValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateValues")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl Template {
    /// Parses a statement template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLong { len: text.len() });
        }
        if text.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut segments = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some((literal, after_open)) = rest.split_once("{{") {
            let open_offset = offset + literal.len();
            if !literal.is_empty() {
                segments.push(Segment::Literal(literal.to_owned()));
            }
            let Some((inner, after_close)) = after_open.split_once("}}") else {
                return Err(TemplateError::Unterminated {
                    offset: open_offset,
                });
            };
            let placeholder = match inner.trim() {
                "name" => Placeholder::Name,
                "password" => Placeholder::Password,
                "expiration" => Placeholder::Expiration,
                other => {
                    return Err(TemplateError::UnknownPlaceholder {
                        placeholder: other.to_owned(),
                        offset: open_offset,
                    });
                }
            };
            segments.push(Segment::Value(placeholder));
            offset = open_offset + 2 + inner.len() + 2;
            rest = after_close;
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the template contains `{{password}}`.
    pub fn uses_password(&self) -> bool {
        self.segments
            .contains(&Segment::Value(Placeholder::Password))
    }

    /// The statement with every placeholder replaced by its value, verbatim (see the type's
    /// documentation for why no escaping is needed).
    pub fn render(&self, values: &TemplateValues<'_>) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(
            self.text.len() + values.password.len() + values.expiration.len(),
        ));
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Value(Placeholder::Name) => out.push_str(values.name),
                Segment::Value(Placeholder::Password) => out.push_str(values.password),
                Segment::Value(Placeholder::Expiration) => out.push_str(values.expiration),
            }
        }
        out
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.text).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: TemplateValues<'static> = TemplateValues {
        name: "v_app_abc",
        password: "s3cret-Pass",
        expiration: "2030-01-01T00:00:00Z",
    };

    #[test]
    fn renders_every_placeholder() {
        let t = Template::parse(
            "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{ password }}' VALID UNTIL '{{expiration}}'",
        )
        .unwrap();
        assert_eq!(
            t.render(&VALUES).as_str(),
            "CREATE ROLE \"v_app_abc\" LOGIN PASSWORD 's3cret-Pass' VALID UNTIL '2030-01-01T00:00:00Z'"
        );
        assert!(t.uses_password());
    }

    #[test]
    fn renders_repeated_and_adjacent_placeholders() {
        let t = Template::parse("{{name}}{{name}}:{{expiration}}").unwrap();
        assert_eq!(
            t.render(&VALUES).as_str(),
            "v_app_abcv_app_abc:2030-01-01T00:00:00Z"
        );
        assert!(!t.uses_password());
    }

    #[test]
    fn keeps_text_without_placeholders() {
        let t = Template::parse("SELECT 1 } }} {").unwrap();
        assert_eq!(t.render(&VALUES).as_str(), "SELECT 1 } }} {");
        assert_eq!(t.as_str(), "SELECT 1 } }} {");
    }

    #[test]
    fn rejects_unknown_placeholder_with_offset() {
        assert_eq!(
            Template::parse("GRANT {{ role }} TO x").unwrap_err(),
            TemplateError::UnknownPlaceholder {
                placeholder: "role".into(),
                offset: 6,
            }
        );
        assert_eq!(
            Template::parse("{{name}} {{Name}}").unwrap_err(),
            TemplateError::UnknownPlaceholder {
                placeholder: "Name".into(),
                offset: 9,
            }
        );
    }

    #[test]
    fn rejects_unterminated_placeholder() {
        assert_eq!(
            Template::parse("DROP ROLE {{name}} {{name").unwrap_err(),
            TemplateError::Unterminated { offset: 19 }
        );
        assert_eq!(
            Template::parse("x {{name}").unwrap_err(),
            TemplateError::Unterminated { offset: 2 }
        );
    }

    #[test]
    fn rejects_empty_and_too_long() {
        assert_eq!(Template::parse("").unwrap_err(), TemplateError::Empty);
        assert_eq!(Template::parse(" \n\t").unwrap_err(), TemplateError::Empty);
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert_eq!(
            Template::parse(&long).unwrap_err(),
            TemplateError::TooLong {
                len: MAX_TEMPLATE_BYTES + 1
            }
        );
        assert!(Template::parse(&"x".repeat(MAX_TEMPLATE_BYTES)).is_ok());
    }

    #[test]
    fn error_messages_show_the_placeholder() {
        let e = Template::parse("{{nmae}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown placeholder `{{nmae}}` at byte 0: expected `{{name}}`, `{{password}}` or `{{expiration}}`"
        );
        let e = Template::parse("a {{").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unterminated placeholder: `{{` at byte 2 has no closing `}}`"
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(text in "[a-z {}'\"]{0,64}") {
            if let Ok(t) = Template::parse(&text) {
                // Rendering each placeholder as itself gives back the text, up to the spaces
                // inside the braces.
                let values = TemplateValues {
                    name: "{{name}}",
                    password: "{{password}}",
                    expiration: "{{expiration}}",
                };
                let rendered = t.render(&values);
                proptest::prop_assert_eq!(
                    Template::parse(&rendered).map(|t| t.render(&values)),
                    Ok(rendered.clone())
                );
            }
        }
    }

    #[test]
    fn debug_shows_template_and_hides_password_value() {
        let t = Template::parse("ALTER USER '{{name}}' IDENTIFIED BY '{{password}}'").unwrap();
        assert_eq!(
            format!("{t:?}"),
            "Template(\"ALTER USER '{{name}}' IDENTIFIED BY '{{password}}'\")"
        );
        assert!(!format!("{VALUES:?}").contains("s3cret"));
    }
}
