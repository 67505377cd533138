//! Printing admin answers: pretty JSON, or spire-server style blocks of aligned `Key : value`
//! lines; plus the formats used inside them (times, TTLs).

use std::io::Write;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A block of `Key : value` lines, printed with the keys padded to one width.
#[derive(Debug, Default)]
pub struct Block {
    lines: Vec<(&'static str, String)>,
}

impl Block {
    /// Adds a line.
    pub fn line(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.lines.push((key, value.into()));
        self
    }

    /// Adds one line per value (`Selector : a`, `Selector : b`), nothing when there is none.
    pub fn lines<I, S>(mut self, key: &'static str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.lines
            .extend(values.into_iter().map(|v| (key, v.into())));
        self
    }

    /// Adds a line only when `value` is not empty.
    pub fn optional(self, key: &'static str, value: &str) -> Self {
        if value.is_empty() {
            self
        } else {
            self.line(key, value)
        }
    }

    /// The block as text, one line each, ending with a newline.
    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        self.lines
            .iter()
            .map(|(k, v)| format!("{k:<width$} : {v}\n"))
            .collect()
    }
}

/// Writes `text` to stdout.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// Writes `value` as pretty JSON (and a newline) to stdout.
pub fn emit_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text =
        serde_json::to_string_pretty(value).context("cannot encode the answer as JSON")?;
    text.push('\n');
    emit(&text)
}

/// `path` with `query` appended after `?`, or alone when `query` is empty.
pub fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Writes a list that arrives page by page to stdout as it comes, so memory holds one page.
///
/// JSON output is one document, byte for byte what [`emit_json`] writes for `{"<key>": [...]}`;
/// text output is what [`render_found`] writes when everything fits in the first page, and
/// otherwise the blocks as they come followed by the `Found …` line (the count is known only at
/// the end).
pub struct ListWriter {
    format: crate::OutputFormat,
    key: &'static str,
    singular: &'static str,
    plural: &'static str,
    count: usize,
    started: bool,
}

impl ListWriter {
    pub fn new(
        format: crate::OutputFormat,
        key: &'static str,
        singular: &'static str,
        plural: &'static str,
    ) -> Self {
        Self {
            format,
            key,
            singular,
            plural,
            count: 0,
            started: false,
        }
    }

    /// Writes one page; `last` says whether more follow.
    pub fn page<T: Serialize>(
        &mut self,
        items: &[T],
        last: bool,
        block: impl Fn(&T) -> Block,
    ) -> anyhow::Result<()> {
        let out = self.render_page(items, last, block)?;
        emit(&out)
    }

    /// What [`Self::page`] writes.
    fn render_page<T: Serialize>(
        &mut self,
        items: &[T],
        last: bool,
        block: impl Fn(&T) -> Block,
    ) -> anyhow::Result<String> {
        let first = !self.started;
        self.started = true;
        let mut out = String::new();
        match self.format {
            crate::OutputFormat::Json => {
                if first {
                    out.push_str(&format!("{{\n  \"{}\": [", self.key));
                }
                for item in items {
                    let text = serde_json::to_string_pretty(item)
                        .context("cannot encode the answer as JSON")?;
                    out.push_str(if self.count == 0 { "\n" } else { ",\n" });
                    for (n, line) in text.lines().enumerate() {
                        if n > 0 {
                            out.push('\n');
                        }
                        out.push_str("    ");
                        out.push_str(line);
                    }
                    self.count += 1;
                }
                if last {
                    out.push_str(if self.count == 0 {
                        "]\n}\n"
                    } else {
                        "\n  ]\n}\n"
                    });
                }
            }
            crate::OutputFormat::Text => {
                let blocks: Vec<Block> = items.iter().map(block).collect();
                if first && last {
                    out = render_found(items.len(), self.singular, self.plural, &blocks);
                } else {
                    for b in &blocks {
                        if self.count > 0 {
                            out.push('\n');
                        }
                        out.push_str(&b.render());
                        self.count += 1;
                    }
                    if last {
                        let noun = if self.count == 1 {
                            self.singular
                        } else {
                            self.plural
                        };
                        if self.count > 0 {
                            out.push('\n');
                        }
                        out.push_str(&format!("Found {} {noun}\n", self.count));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Unix seconds as RFC 3339 UTC (`2024-05-01T12:00:00Z`), or the number if out of range.
pub fn format_time(unix_secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_secs.to_string())
}

/// A TTL in seconds as the shortest exact unit (`90s`, `15m`, `1h`, `2d`); 0 is `default`.
pub fn format_ttl(secs: u64) -> String {
    match secs {
        0 => "default".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// `"Found 1 entry"` / `"Found 3 entries"` followed by the blocks, separated by blank lines.
pub fn render_found(count: usize, singular: &str, plural: &str, blocks: &[Block]) -> String {
    let noun = if count == 1 { singular } else { plural };
    let mut out = format!("Found {count} {noun}\n");
    for block in blocks {
        out.push('\n');
        out.push_str(&block.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_aligns_keys_and_repeats_multi_valued_lines() {
        let block = Block::default()
            .line("Entry ID", "e1")
            .lines("Selector", ["unix:uid:1", "unix:gid:2"])
            .optional("Hint", "")
            .line("X509-SVID TTL", "default");
        assert_eq!(
            block.render(),
            "Entry ID      : e1\nSelector      : unix:uid:1\nSelector      : unix:gid:2\nX509-SVID TTL : default\n"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn ttls_use_the_largest_exact_unit() {
        assert_eq!(format_ttl(0), "default");
        assert_eq!(format_ttl(90), "90s");
        assert_eq!(format_ttl(900), "15m");
        assert_eq!(format_ttl(3600), "1h");
        assert_eq!(format_ttl(172_800), "2d");
    }

    #[test]
    fn streamed_json_equals_the_whole_document() {
        #[derive(Serialize)]
        struct Item {
            a: u32,
            b: Vec<&'static str>,
        }
        #[derive(Serialize)]
        struct List<'a> {
            entries: &'a [Item],
        }
        let items = [
            Item { a: 1, b: vec!["x"] },
            Item { a: 2, b: vec![] },
            Item {
                a: 3,
                b: vec!["y", "z"],
            },
        ];
        let no_block = |_: &Item| Block::default();
        let whole = serde_json::to_string_pretty(&List { entries: &items }).unwrap() + "\n";
        for split in [0, 1, 2, 3] {
            let (head, tail) = items.split_at(split);
            let mut writer =
                ListWriter::new(crate::OutputFormat::Json, "entries", "entry", "entries");
            let mut out = writer.render_page(head, false, no_block).unwrap();
            out.push_str(&writer.render_page(tail, true, no_block).unwrap());
            assert_eq!(out, whole, "split at {split}");
        }
        let mut writer = ListWriter::new(crate::OutputFormat::Json, "entries", "entry", "entries");
        let mut empty = writer.render_page(&[], false, no_block).unwrap();
        empty.push_str(&writer.render_page(&[], true, no_block).unwrap());
        let none: &[Item] = &[];
        let whole = serde_json::to_string_pretty(&List { entries: none }).unwrap() + "\n";
        assert_eq!(empty, whole);
        serde_json::from_str::<serde_json::Value>(&empty).unwrap();
    }

    #[test]
    fn found_counts_agree_in_number() {
        assert_eq!(
            render_found(0, "entry", "entries", &[]),
            "Found 0 entries\n"
        );
        let one = [Block::default().line("A", "b")];
        assert_eq!(
            render_found(1, "entry", "entries", &one),
            "Found 1 entry\n\nA : b\n"
        );
    }
}
