//! One path, one meaning: the path the route table decides on is the path every common upstream
//! serves.
//!
//! Upstreams read a request path differently. nginx and WSGI servers decode `%2F` to `/` before
//! they route; Tomcat, Jetty and Spring cut `;parameters` out of every segment (`/a;x/b` is
//! `/a/b`, `/..;/` is `/../`); IIS reads `\` as `/`; all of them resolve `.` and `..` segments.
//! A gateway that routes on one reading and forwards the raw path lets an attacker pick the
//! reading: `/public/..%2Fadmin` passes the public route and nginx serves `/admin`.
//!
//! So every path is put into one normal form before it is routed and that form is what the
//! upstream receives (unreserved escapes decoded, dot segments resolved, repeated slashes
//! merged). What cannot be normalised to one meaning is refused:
//!
//! - an escaped control character (`%00`, `%0A` …);
//! - an escape that a second decode would turn into `/`, `\`, `.`, `;` or `%` (`%252F`,
//!   `%25%32%46`): some upstreams decode twice;
//! - `%2F`, `%5C` or a raw `\`, unless the route says otherwise (see [`EscapedSlashes`]);
//! - a `;` whose removal (Tomcat's reading) would land the path on another route.
//!
//! Free of Pingora types; the caller says which route a normal-form path matches.

use std::borrow::Cow;

/// What a route does with `%2F`, `%5C` and `\` in a path (`escaped_slashes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// A 400 page (the default): upstreams disagree on what these mean.
    #[default]
    Refuse,
    /// Read them as `/` and forward the decoded path: policy and upstream see the same path,
    /// but an intranet that needs `%2F` inside a segment gets `/`.
    Decode,
    /// Forward them escaped, when every reading of the path (decoded or not, `\` as `/` or
    /// not) lands on the same route; otherwise refused.
    Keep,
}

impl EscapedSlashes {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "refuse" => Ok(EscapedSlashes::Refuse),
            "decode" => Ok(EscapedSlashes::Decode),
            "keep" => Ok(EscapedSlashes::Keep),
            other => Err(format!(
                "unknown value {other:?}; use \"refuse\", \"decode\" or \"keep\""
            )),
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// `%00` or another escaped control character.
    ControlCharacter,
    /// An escape that decodes to another escape of a structural character (`%252F`).
    DoubleEncoding,
    /// `%2F`, `%5C` or `\` on a route whose `escaped_slashes` is `refuse`.
    EscapedSlash,
    /// Common upstreams would serve this path under different routes.
    Ambiguous,
}

impl PathRefusal {
    /// A short stable label, for the reply's error code and the access log.
    pub fn code(self) -> &'static str {
        match self {
            PathRefusal::ControlCharacter => "path_control_character",
            PathRefusal::DoubleEncoding => "path_double_encoding",
            PathRefusal::EscapedSlash => "path_escaped_slash",
            PathRefusal::Ambiguous => "path_ambiguous",
        }
    }

    /// What the person is told.
    pub fn explanation(self) -> &'static str {
        match self {
            PathRefusal::ControlCharacter => "The address contains an encoded control character.",
            PathRefusal::DoubleEncoding => {
                "The address contains a doubly encoded character (such as %252F)."
            }
            PathRefusal::EscapedSlash => {
                "The address contains an encoded slash or a backslash (%2F, %5C or \\), which \
                 servers read in different ways."
            }
            PathRefusal::Ambiguous => {
                "The address means different pages to different servers (a ;parameter or an \
                 encoded slash changes where it leads)."
            }
        }
    }
}

/// Whether a path needs any work at all: the common case is a plain path, returned as it is.
fn is_plain(path: &str) -> bool {
    !path
        .as_bytes()
        .iter()
        .any(|&b| matches!(b, b'%' | b'\\' | b';'))
        && !path.contains("//")
        && !path.contains("/.")
}

/// The path (no query) to route on and to forward. `route_of` says which route a normal-form
/// path matches; `action_of` says what a route does with escaped slashes. Borrows when the path
/// is already in normal form.
pub fn canonical_path<R: PartialEq>(
    raw: &str,
    route_of: impl Fn(&str) -> R,
    action_of: impl Fn(&R) -> EscapedSlashes,
) -> Result<Cow<'_, str>, PathRefusal> {
    if is_plain(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    check_escapes(raw)?;
    let has_slash_escapes = raw.contains('\\') || has_escape(raw, b"/\\");
    let candidate = if has_slash_escapes {
        let slashed = resolve(&decode(raw, Slashes::All));
        match action_of(&route_of(&slashed)) {
            EscapedSlashes::Refuse => return Err(PathRefusal::EscapedSlash),
            EscapedSlashes::Decode => slashed,
            EscapedSlashes::Keep => {
                let kept = resolve(&decode(raw, Slashes::None));
                let route = route_of(&kept);
                let readings = [Slashes::All, Slashes::Encoded, Slashes::Backslash];
                for reading in readings {
                    if route_of(&resolve(&decode(&kept, reading))) != route {
                        return Err(PathRefusal::Ambiguous);
                    }
                }
                kept
            }
        }
    } else {
        resolve(&decode(raw, Slashes::None))
    };
    // `%3B` too: an upstream that decodes first (nginx) may pass `;` on to one that cuts it.
    if (candidate.contains(';') || candidate.contains("%3B"))
        && route_of(&resolve(&strip_parameters(&candidate.replace("%3B", ";"))))
            != route_of(&candidate)
    {
        return Err(PathRefusal::Ambiguous);
    }
    Ok(if candidate == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(candidate)
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The byte a `%XX` at `bytes[i]` stands for.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?)
}

/// Whether `path` holds an escape of one of `bytes`.
fn has_escape(path: &str, bytes: &[u8]) -> bool {
    let b = path.as_bytes();
    (0..b.len()).any(|i| escape_at(b, i).is_some_and(|c| bytes.contains(&c)))
}

/// Refuses escaped control characters, and escapes that a second decode turns into a
/// structural character.
fn check_escapes(raw: &str) -> Result<(), PathRefusal> {
    let bytes = raw.as_bytes();
    let mut once = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escape_at(bytes, i) {
            Some(c) if c.is_ascii_control() => return Err(PathRefusal::ControlCharacter),
            Some(c) => {
                once.push(c);
                i += 3;
            }
            None => {
                once.push(bytes[i]);
                i += 1;
            }
        }
    }
    for i in 0..once.len() {
        if let Some(c) = escape_at(&once, i) {
            if c.is_ascii_control() || matches!(c, b'/' | b'\\' | b'.' | b';' | b'%') {
                return Err(PathRefusal::DoubleEncoding);
            }
        }
    }
    Ok(())
}

/// Which slash spellings a reading takes for `/`.
#[derive(Clone, Copy)]
enum Slashes {
    /// None: `%2F`, `%5C` and `\` stay as they are.
    None,
    /// `%2F`, `%5C` and `\` (nginx and WSGI decode `%2F`; IIS reads `\` as `/`).
    All,
    /// `%2F` and `%5C` only.
    Encoded,
    /// `\` and `%5C` only.
    Backslash,
}

/// Decodes unreserved escapes (RFC 3986 §2.3), uppercases the hex of the others, and turns the
/// slash spellings of `reading` into `/`.
fn decode(path: &str, reading: Slashes) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(c) = escape_at(bytes, i) {
            let slash = matches!(
                (c, reading),
                (b'/', Slashes::All | Slashes::Encoded)
                    | (b'\\', Slashes::All | Slashes::Encoded | Slashes::Backslash)
            );
            if slash {
                out.push('/');
            } else if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(c as char);
            } else {
                out.push('%');
                out.push_str(&format!("{c:02X}"));
            }
            i += 3;
            continue;
        }
        if bytes[i] == b'\\' && matches!(reading, Slashes::All | Slashes::Backslash) {
            out.push('/');
            i += 1;
            continue;
        }
        // Copy one whole UTF-8 character (paths are &str, so this stays valid).
        let len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + len]);
        i += len;
    }
    out
}

/// Decodes unreserved escapes only (`%2F` and other reserved escapes stay, hex uppercased).
pub(crate) fn decode_unreserved(path: &str) -> String {
    decode(path, Slashes::None)
}

/// Resolves `.` and `..` segments and merges repeated slashes; keeps a trailing slash.
pub(crate) fn resolve(decoded: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for s in &out {
        normal.push('/');
        normal.push_str(s);
    }
    let ends_in_dir = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || normal.is_empty();
    if ends_in_dir {
        normal.push('/');
    }
    normal
}

/// Tomcat's reading: `;…` cut from every segment (`/a;x/..;/b` is `/a/../b`).
fn strip_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes: `/` (0, refuse), `/admin` (1, refuse), `/files` (2, keep), `/docs` (3, decode).
    fn route(path: &str) -> usize {
        let first = path
            .trim_start_matches('/')
            .split(['/', ';'])
            .next()
            .unwrap_or_default();
        match first {
            "admin" => 1,
            "files" => 2,
            "docs" => 3,
            _ => 0,
        }
    }

    fn action(r: &usize) -> EscapedSlashes {
        match r {
            2 => EscapedSlashes::Keep,
            3 => EscapedSlashes::Decode,
            _ => EscapedSlashes::Refuse,
        }
    }

    fn canon(raw: &str) -> Result<String, PathRefusal> {
        canonical_path(raw, route, action).map(Cow::into_owned)
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(
            canonical_path("/a/b.html", route, action),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn dots_escapes_and_slashes_are_normalised() {
        assert_eq!(canon("/pub/../admin/x").unwrap(), "/admin/x");
        assert_eq!(canon("/pub/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(canon("//admin//x/").unwrap(), "/admin/x/");
        assert_eq!(canon("/%61dmin").unwrap(), "/admin");
        assert_eq!(canon("/a%20b%3f").unwrap(), "/a%20b%3F");
        assert_eq!(canon("/.well-known/x").unwrap(), "/.well-known/x");
    }

    #[test]
    fn escaped_slashes_follow_the_route() {
        for raw in [
            "/admin%2Fx",
            "/%2Fadmin/x",
            "/pub/..%2Fadmin/x",
            "/x%5Cy",
            "/pub/..\\admin",
        ] {
            assert_eq!(canon(raw), Err(PathRefusal::EscapedSlash), "{raw}");
        }
        assert_eq!(canon("/docs/a%2Fb").unwrap(), "/docs/a/b");
        assert_eq!(canon("/docs/a%5Cb\\c").unwrap(), "/docs/a/b/c");
        assert_eq!(
            canon("/docs/x/..%2F..%2Fadmin"),
            Err(PathRefusal::EscapedSlash)
        );
        assert_eq!(canon("/files/a%2Fb").unwrap(), "/files/a%2Fb");
        assert_eq!(
            canon("/files/a%2F..%2F..%2Fadmin"),
            Err(PathRefusal::EscapedSlash)
        );
        // Decoded it is under /files (keep); kept as sent, the first segment is not `files`.
        assert_eq!(canon("/x%2F..%2Ffiles/y"), Err(PathRefusal::Ambiguous));
        assert_eq!(canon("/files/..%2Fadmin"), Err(PathRefusal::EscapedSlash));
    }

    #[test]
    fn double_encodings_and_controls_are_refused() {
        assert_eq!(canon("/admin%252Fx"), Err(PathRefusal::DoubleEncoding));
        assert_eq!(canon("/%252e%252e/admin"), Err(PathRefusal::DoubleEncoding));
        assert_eq!(canon("/%25%32%46admin"), Err(PathRefusal::DoubleEncoding));
        assert_eq!(canon("/a%00b"), Err(PathRefusal::ControlCharacter));
        assert_eq!(canon("/a%0d%0ab"), Err(PathRefusal::ControlCharacter));
        assert_eq!(canon("/50%25off").unwrap(), "/50%25off");
    }

    #[test]
    fn parameters_that_change_the_route_are_refused() {
        assert_eq!(canon("/pub/..;/admin/x"), Err(PathRefusal::Ambiguous));
        assert_eq!(canon("/admin/..;/pub"), Err(PathRefusal::Ambiguous));
        assert_eq!(
            canon("/admin;jsessionid=1/x").unwrap(),
            "/admin;jsessionid=1/x"
        );
        assert_eq!(canon("/pub;x=1/a").unwrap(), "/pub;x=1/a");
        assert_eq!(canon("/%3B/admin/x"), Err(PathRefusal::Ambiguous));
        assert_eq!(canon("/pub/..%3b/admin"), Err(PathRefusal::Ambiguous));
    }
}
