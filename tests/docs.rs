//! The documentation's Markdown, checked as GitHub will render it.
//!
//! For README.md, BENCHMARKS.md, vendor/README.md and every `docs/*.md`:
//!
//! - every source line that starts with `|` (outside code blocks) lies inside a table that the
//!   parser recognised — a paragraph between a table's rows turns the rows after it into text
//!   full of pipes;
//! - every table row has exactly as many cells as its header. Cells are counted from the source
//!   line, split on every `|` not escaped by `\`, as GitHub splits them: also inside backticks,
//!   so a cell holding a pipe must write it `\|`;
//! - every relative link points to a file of the repository that exists, and a link to
//!   `file.md#anchor` (or `#anchor`) to a heading that makes that GitHub-style anchor.
//!
//! README.md and `docs/` also must not refer to internal tracker numbers or to files outside
//! the repository.

// Test code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents checked: the three top-level ones, then `docs/*.md` in name order.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![
        root.join("README.md"),
        root.join("BENCHMARKS.md"),
        root.join("vendor/README.md"),
    ];
    files.extend(docs_pages());
    files
}

fn docs_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect()
        })
        .unwrap_or_default();
    pages.sort();
    pages
}

/// What the parser saw in one document, with byte ranges into its source.
#[derive(Default)]
struct Parsed {
    tables: Vec<Range<usize>>,
    /// `(range, table index, is the header)`.
    rows: Vec<(Range<usize>, usize, bool)>,
    code: Vec<Range<usize>>,
    /// `(destination, offset)`.
    links: Vec<(String, usize)>,
    /// GitHub-style anchors of the headings, duplicates numbered as GitHub numbers them.
    anchors: Vec<String>,
}

fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut heading: Option<String> = None;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (event, range) in Parser::new_ext(text, Options::ENABLE_TABLES).into_offset_iter() {
        match event {
            Event::Start(Tag::Table(_)) => parsed.tables.push(range),
            Event::Start(Tag::TableHead) => {
                let table = parsed.tables.len() - 1;
                parsed.rows.push((range, table, true));
            }
            Event::Start(Tag::TableRow) => {
                let table = parsed.tables.len() - 1;
                parsed.rows.push((range, table, false));
            }
            Event::Start(Tag::CodeBlock(_)) => parsed.code.push(range),
            Event::Start(
                Tag::Link {
                    link_type,
                    dest_url,
                    ..
                }
                | Tag::Image {
                    link_type,
                    dest_url,
                    ..
                },
            ) if !matches!(link_type, LinkType::Autolink | LinkType::Email) => {
                parsed.links.push((dest_url.to_string(), range.start));
            }
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    let base = slug(&h);
                    let n = seen.entry(base.clone()).or_insert(0);
                    let anchor = if *n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    };
                    *n += 1;
                    parsed.anchors.push(anchor);
                }
            }
            _ => {}
        }
    }
    parsed
}

/// GitHub's anchor for a heading's text: lower case; letters, digits, `-` and `_` kept;
/// each space a `-`; everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The number of cells on a table's source line: split on every `|` that no `\` escapes
/// (backticks do not protect a pipe), a leading and a trailing pipe opening and closing the row.
fn cells(line: &str) -> usize {
    let line = line.trim();
    let mut pipes: usize = 0;
    let mut last_pipe = None;
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '|' => {
                pipes += 1;
                last_pipe = Some(i);
            }
            _ => {}
        }
    }
    let leading = usize::from(line.starts_with('|'));
    let trailing = usize::from(line.len() > 1 && last_pipe == Some(line.len() - 1));
    (pipes + 1).saturating_sub(leading + trailing)
}

/// Byte offsets at which each line starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&i| i < text.len())
        .collect()
}

/// The 1-based line of a byte offset.
fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&s| s <= offset)
}

fn inside(ranges: &[Range<usize>], offset: usize) -> bool {
    ranges.iter().any(|r| r.start <= offset && offset < r.end)
}

/// Every problem with the tables of one document, as `name:line: what`.
fn table_problems(name: &str, text: &str) -> Vec<String> {
    let parsed = parse(text);
    let starts = line_starts(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();

    for (i, line) in lines.iter().enumerate() {
        let at = starts[i];
        if line.trim_start().starts_with('|')
            && !inside(&parsed.code, at)
            && !inside(&parsed.tables, at)
        {
            problems.push(format!(
                "{name}:{}: starts with `|` but is not part of a table (is a paragraph \
                 breaking the table above?): {}",
                i + 1,
                line.trim()
            ));
        }
    }

    let mut header: HashMap<usize, (usize, usize)> = HashMap::new();
    for (range, table, is_head) in &parsed.rows {
        let n = line_of(&starts, range.start);
        let count = cells(lines[n - 1]);
        if *is_head {
            header.insert(*table, (n, count));
            // The delimiter row, right under the header.
            if let Some(delimiter) = lines.get(n) {
                let d = cells(delimiter);
                if d != count {
                    problems.push(format!(
                        "{name}:{}: the delimiter row has {d} cells, its header {count}",
                        n + 1
                    ));
                }
            }
        } else if let Some(&(head_line, want)) = header.get(table) {
            if count != want {
                problems.push(format!(
                    "{name}:{n}: the row has {count} cells, its header (line {head_line}) has \
                     {want} (a `|` inside a cell, even in backticks, must be written `\\|`)"
                ));
            }
        }
    }
    problems
}

/// Percent-escapes in a link's path undone (`%20` → space).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'%', Some(b)) = (bytes[i], hex) {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A link with a scheme (`https:`, `mailto:`) is not a file of the repository.
fn has_scheme(dest: &str) -> bool {
    match dest.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// `path` with `.` and `..` taken out, without touching the file system.
fn normalised(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every relative link of one document that leads nowhere, as `name:line: what`.
fn link_problems(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let name = shown(root, file);
    let parsed = parse(text);
    let starts = line_starts(text);
    let mut anchors_of: HashMap<PathBuf, Vec<String>> = HashMap::new();
    anchors_of.insert(file.to_path_buf(), parsed.anchors.clone());
    let mut problems = Vec::new();
    for (dest, offset) in &parsed.links {
        if dest.is_empty() || has_scheme(dest) {
            continue;
        }
        let line = line_of(&starts, *offset);
        let (path_part, anchor) = match dest.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (dest.as_str(), None),
        };
        let path_part = path_part.split('?').next().unwrap_or_default();
        let target = if path_part.is_empty() {
            file.to_path_buf()
        } else if let Some(from_root) = path_part.strip_prefix('/') {
            normalised(&root.join(percent_decoded(from_root)))
        } else {
            let dir = file.parent().unwrap_or(root);
            normalised(&dir.join(percent_decoded(path_part)))
        };
        if !target.starts_with(root) {
            problems.push(format!(
                "{name}:{line}: `{dest}` leads out of the repository"
            ));
            continue;
        }
        if !target.exists() {
            problems.push(format!(
                "{name}:{line}: `{dest}`: no such file ({})",
                shown(root, &target)
            ));
            continue;
        }
        let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
            continue;
        };
        if target.extension().is_none_or(|x| x != "md") {
            continue;
        }
        let anchors = anchors_of.entry(target.clone()).or_insert_with(|| {
            std::fs::read_to_string(&target)
                .map(|t| parse(&t).anchors)
                .unwrap_or_default()
        });
        let anchor = percent_decoded(anchor).to_lowercase();
        if !anchors.contains(&anchor) {
            problems.push(format!(
                "{name}:{line}: `{dest}`: {} has no heading with the anchor #{anchor}",
                shown(root, &target)
            ));
        }
    }
    problems
}

/// `file` as the reports name it: relative to the repository.
fn shown(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn read(file: &Path) -> String {
    match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => panic!("cannot read {}: {e}", file.display()),
    }
}

fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} {what}:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn every_table_is_whole() {
    let root = root();
    let mut problems = Vec::new();
    for file in documents() {
        let name = shown(&root, &file);
        problems.extend(table_problems(&name, &read(&file)));
    }
    report("table problems", &problems);
}

#[test]
fn every_relative_link_leads_somewhere() {
    let root = root();
    let mut problems = Vec::new();
    for file in documents() {
        problems.extend(link_problems(&root, &file, &read(&file)));
    }
    report("broken links", &problems);
}

/// README.md and docs/ are for administrators: no internal tracker numbers, no paths outside
/// the repository.
#[test]
fn no_internal_references() {
    let root = root();
    let mut problems = Vec::new();
    let mut files = vec![root.join("README.md")];
    files.extend(docs_pages());
    for file in files {
        let name = shown(&root, &file);
        for (i, line) in read(&file).lines().enumerate() {
            let lower = line.to_lowercase();
            let tracker = lower.match_indices("issue").any(|(at, _)| {
                let rest = lower[at + 5..].trim_start_matches('s');
                rest.strip_prefix(' ')
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    || rest.starts_with(" that asked")
            });
            if tracker || lower.contains("../shared") || lower.contains("/work/") {
                problems.push(format!("{name}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    report("internal references", &problems);
}

/// The checker itself: a table broken by a paragraph, a row with a pipe in backticks, and a
/// delimiter row that does not match are each reported with their line; `\|` is one cell.
#[test]
fn the_checker_reports_broken_tables() {
    let broken = "\
# Title

| key | default | meaning |
|---|---|---|
| `servers` | required | a list |
| `tls` | `false` | speak TLS |

A paragraph that belongs after the table.
| `connect_timeout_ms` | `3000` | connect timeout |
| `read_timeout_ms` | `60000` | per-read timeout |

| what | example |
|---|---|
| escaped | `a \\| b` |
| not escaped | `a | b` |

| a | b |
|---|
";
    let problems = table_problems("broken.md", broken);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    // The two rows after the paragraph, and the two lines of the table whose delimiter row
    // does not match its header (so it is no table at all).
    for (problem, line) in problems.iter().zip([9, 10, 17, 18]) {
        let want = format!("broken.md:{line}: starts with `|`");
        assert!(problem.starts_with(&want), "{problem}");
    }
    assert!(
        problems[4].starts_with("broken.md:15: the row has 3 cells, its header (line 12) has 2"),
        "{}",
        problems[4]
    );

    let whole = "\
| key | meaning |
|:--|--:|
| `a` | one `\\|` two |
| b | x \\\\| y |

```text
| not | a | table |
```
";
    // `x \\| y` is an escaped backslash, then a real pipe: three cells.
    let problems = table_problems("whole.md", whole);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with("whole.md:4: the row has 3 cells"));
}

#[test]
fn cells_are_counted_as_github_splits_them() {
    assert_eq!(cells("| a | b |"), 2);
    assert_eq!(cells("a | b"), 2);
    assert_eq!(cells("|a|b"), 2);
    assert_eq!(cells("| `x|y` | z |"), 3);
    assert_eq!(cells("| `x\\|y` | z |"), 2);
    assert_eq!(cells("|---|---|---|"), 3);
    assert_eq!(cells("| ends in an escaped pipe \\|"), 1);
}

#[test]
fn anchors_are_github_style() {
    assert_eq!(slug("`[session]` (optional)"), "session-optional");
    assert_eq!(
        slug("Security: what is refused and why"),
        "security-what-is-refused-and-why"
    );
    assert_eq!(
        slug("The gateway's own endpoints"),
        "the-gateways-own-endpoints"
    );
    assert_eq!(slug("`[[routes]]`"), "routes");
    assert_eq!(slug("Step 1 — the allocator"), "step-1--the-allocator");
    assert_eq!(slug("`[apps.NAME]`"), "appsname");
    let parsed = parse("# A\n\n## A\n\n### A\n");
    assert_eq!(parsed.anchors, ["a", "a-1", "a-2"]);
}

#[test]
fn the_checker_reports_broken_links() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    let write = |name: &str, text: &str| {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    };
    write("docs/page.md", "# Page\n\n## `[session]` (optional)\n");
    write("conf/x.toml", "");
    let readme = write(
        "README.md",
        "# Readme\n\n\
         [ok](docs/page.md) [ok](docs/page.md#session-optional) [ok](#readme) [ok](conf/x.toml)\n\
         [web](https://example.com/nope.md) <https://example.com/>\n\
         [gone](docs/gone.md)\n\
         [anchor](docs/page.md#session)\n\
         [here](#nowhere)\n\
         [out](../outside.md)\n",
    );
    let text = read(&readme);
    let problems = link_problems(root, &readme, &text);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].contains("README.md:5: `docs/gone.md`: no such file"));
    assert!(problems[1].contains("README.md:6: `docs/page.md#session`"));
    assert!(problems[2].contains("README.md:7: `#nowhere`"));
    assert!(problems[3].contains("README.md:8: `../outside.md` leads out of the repository"));
}
