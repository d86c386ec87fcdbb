//! Widget sign-in: a streaming HTML rewriter (lol_html) that writes a per-person
//! `data-external-auth-code` into the TypingMind widget's `<script>` tag as an intranet page
//! passes through, or removes the attribute when there is no one to sign in.
//!
//! Output waits for nothing but a tag left unfinished at a chunk's end; a page without a widget
//! tag comes out byte for byte as it went in. Free of Pingora types.
//!
//! lol_html reads every tag of a page it is given (~1,300 instructions a tag), so it only reads
//! as far as a tag it may have to change: `<script` when a code is to be written (tag names
//! cannot be written with character references), the attribute's own name when codes are only
//! removed (nor can attribute names). Between such tags the page passes as it comes — exactly
//! what lol_html would write, since it changes nothing there — and is kept (up to
//! 64 KiB). When one turns up, a fresh lol_html reads the page from its first byte to the
//! end of that tag and stops there; its output must begin with what went out so far (checked:
//! a tag that needed changing and began in what was sent — one with a `>` inside a value, cut
//! by a chunk after it — ends the answer before the tag completes). A page that outgrows what is kept, shows such a tag
//! more than four times, or shows one that is not a complete script tag (text in a
//! comment, a tag cut by the chunk's end) is read by lol_html from its first byte to its last.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use aho_corasick::packed;
use bytes::Bytes;
use lol_html::send::HtmlRewriter;
use lol_html::{element, MemorySettings, Settings};

use super::contact::ContactSite;

/// The attribute TypingMind's widget reads the code from.
pub const CODE_ATTRIBUTE: &str = "data-external-auth-code";

/// How much of a page is kept for lol_html to read from the start; a page that grows past it
/// goes to lol_html there and then, for the rest of the page.
const KEPT_BYTES: usize = 64 * 1024;

/// How many `<base href>` tags of a page are kept for resolving script sources; a page with
/// more is unusual (a browser uses one).
const MAX_BASES: usize = 16;

/// How many times lol_html reads a page from its start to a tag; the next such tag has it read
/// the whole page.
const REPLAYS: u8 = 4;

/// Looking for the end of the tag a trigger belongs to, lol_html is given the page up to one
/// `>` at a time, this many times at most.
const STEPS: usize = 8;

/// Where an instance's widget script lives: built once per app, shared by every page's target.
#[derive(Debug)]
pub struct WidgetSite {
    /// `https://chat.example.com` (scheme, host and port are compared).
    origin: url::Origin,
    /// The path must end with this (`widget.js`).
    path_suffix: String,
}

impl WidgetSite {
    /// `None` when `instance_url` is not a URL.
    pub fn new(instance_url: &str, path_suffix: &str) -> Option<Self> {
        Some(WidgetSite {
            origin: url::Url::parse(instance_url).ok()?.origin(),
            path_suffix: path_suffix.to_string(),
        })
    }
}

/// One instance whose widget tags are rewritten.
#[derive(Clone)]
pub struct WidgetTarget {
    site: Arc<WidgetSite>,
    /// The code to write, or `None` to remove any code found.
    code: Option<String>,
}

impl WidgetTarget {
    pub fn new(instance_url: &str, path_suffix: &str, code: Option<String>) -> Option<Self> {
        let site = WidgetSite::new(instance_url, path_suffix)?;
        Some(Self::for_site(&Arc::new(site), code))
    }

    /// A target on a site built beforehand (no URL parsed per page).
    pub fn for_site(site: &Arc<WidgetSite>, code: Option<String>) -> Self {
        WidgetTarget {
            site: site.clone(),
            code,
        }
    }

    /// What a script tag whose sources are `sources` (`src`, SVG's `href` and `xlink:href`,
    /// raw attribute text) is to this instance, resolved as the browser may resolve them: as
    /// they are, or against any `<base href>` before the tag (`bases`). Character references
    /// are decoded first (`widget&#46;js` loads `widget.js`). A relative source with no
    /// absolute base stays on the intranet's own origin and is nothing to the instance.
    fn fit<'a>(&self, sources: impl IntoIterator<Item = &'a str>, bases: &[url::Url]) -> Fit {
        let site = &self.site;
        let mut fit = Fit::Other;
        for raw in sources {
            for url in resolutions(raw, bases, &site.origin) {
                if url.origin() != site.origin {
                    continue;
                }
                if site.serves_widget(url.path()) {
                    return Fit::Widget;
                }
                fit = Fit::SameOrigin;
            }
        }
        fit
    }
}

/// What a script tag is to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// It may load the instance's widget: it gets the person's code, or none.
    Widget,
    /// Another script of the instance's origin: any code on it is removed.
    SameOrigin,
    /// Not the instance's: left alone.
    Other,
}

impl WidgetSite {
    /// Whether the instance serves its widget at `path` (a URL's path, percent-encoded): the
    /// path ends with the script's suffix once unreserved escapes are decoded, compared without
    /// regard to case and to trailing slashes — as a static host on a case-insensitive disk,
    /// or one that maps `widget.js/` to `widget.js`, would serve it.
    fn serves_widget(&self, path: &str) -> bool {
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let path = decoded.trim_end_matches('/').as_bytes();
        let suffix = self.path_suffix.as_bytes();
        path.len() >= suffix.len() && path[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    }
}

/// A tag's URL attribute (raw text) as the browser reads it: references decoded, trimmed,
/// resolved against `base`; a protocol-relative one takes the instance's scheme (the page's
/// own scheme is not known here, and the strict reading is the one that matches).
fn resolve(raw: &str, base: Option<&url::Url>, origin: &url::Origin) -> Option<url::Url> {
    let text = htmlize::unescape_attribute(raw);
    let text = text.trim();
    let mut url = if let Some(base) = base {
        base.join(text).ok()?
    } else if text.starts_with("//") {
        let url::Origin::Tuple(scheme, ..) = origin else {
            return None;
        };
        url::Url::parse(&format!("{scheme}:{text}")).ok()?
    } else {
        url::Url::parse(text).ok()?
    };
    // `chat.example.com.` is the same server as `chat.example.com` (DNS reads the root dot).
    if let Some(host) = url
        .host_str()
        .and_then(|h| h.strip_suffix('.'))
        .map(str::to_string)
    {
        url.set_host(Some(&host)).ok()?;
    }
    Some(url)
}

/// Before a YourGPT chatbot widget's tag (its script, one of the app's widget ids in
/// `data-widget`), the app's same-origin contact script, with the tag's `nonce` (a page whose
/// CSP allows scripts by nonce runs it too). Relative sources resolve against the page's base
/// as for any script; a relative one with no absolute base is the intranet's own, no widget.
fn insert_contact_script(
    el: &mut lol_html::html_content::Element<'_, '_, lol_html::send::SendHandlerTypes>,
    contacts: &[Arc<ContactSite>],
    sources: &[String],
    bases: &[String],
) {
    let widget = el.get_attribute("data-widget");
    let Some(site) = contacts.iter().find(|site| {
        let origin = site.script_origin();
        let bases: Vec<url::Url> = bases.iter().filter_map(|b| base_url(b, origin)).collect();
        sources.iter().any(|raw| {
            resolutions(raw, &bases, origin).any(|u| site.is_widget(&u, widget.as_deref()))
        })
    }) else {
        return;
    };
    let mut tag = String::from("<script src=\"");
    tag.push_str(site.contact_path());
    tag.push('"');
    if let Some(nonce) = el.get_attribute("nonce") {
        tag.push_str(" nonce=\"");
        tag.push_str(&crate::pages::escape(&nonce));
        tag.push('"');
    }
    tag.push_str("></script>");
    el.before(&tag, lol_html::html_content::ContentType::Html);
}

/// What a tag's URL attribute `raw` may load: read as it is, and against each of `bases`
/// (see [`resolve`]; `origin` gives a protocol-relative URL its scheme).
fn resolutions<'a>(
    raw: &'a str,
    bases: &'a [url::Url],
    origin: &'a url::Origin,
) -> impl Iterator<Item = url::Url> + 'a {
    std::iter::once(None)
        .chain(bases.iter().map(Some))
        .filter_map(move |base| resolve(raw, base, origin))
}

/// The page's base URL from its first `<base href>` (raw text): `None` when it is relative
/// (the page's own origin, never an instance's) or not a URL.
fn base_url(raw: &str, origin: &url::Origin) -> Option<url::Url> {
    resolve(raw, None, origin).filter(|u| !u.cannot_be_a_base())
}

/// The code is a sign-in credential: never in Debug output.
impl std::fmt::Debug for WidgetTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WidgetTarget")
            .field("site", &self.site)
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// lol_html could not go on with a page (its memory limit, or bytes it cannot parse), or a tag
/// it had to change began in the part of the page already sent: what went out cannot be lined
/// up with the page, so the page cannot be finished faithfully — the answer must end there.
#[derive(Debug, thiserror::Error)]
#[error("widget rewriting stopped: {0}")]
pub struct RewriteFailed(String);

type Output = Arc<Mutex<Vec<u8>>>;
/// Where lol_html writes the rewritten page: into [`Output`], drained after every chunk.
type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// What a tag lol_html may have to change holds, matched ASCII case-blind: `<script` when a
/// code is to be written, the attribute's name when codes are only removed.
#[derive(Clone, Copy)]
struct Trigger {
    needle: &'static [u8],
    /// A byte of `needle` that has no case (`<`, `-`): the one searched for with memchr when
    /// there is no `prefilter`.
    anchor: usize,
    /// Finds where `needle` may begin faster than memchr on a byte as common as `<`.
    prefilter: Option<&'static packed::Searcher>,
}

impl Trigger {
    fn for_targets(writes_a_code: bool) -> Self {
        if writes_a_code {
            // `<sc` in its four spellings (SIMD; `None` on a CPU without it).
            static SCRIPT: LazyLock<Option<packed::Searcher>> = LazyLock::new(|| {
                packed::Config::new()
                    .builder()
                    .extend(["<sc", "<sC", "<Sc", "<SC"])
                    .build()
            });
            Trigger {
                needle: b"<script",
                anchor: 0,
                prefilter: SCRIPT.as_ref(),
            }
        } else {
            Trigger {
                needle: CODE_ATTRIBUTE.as_bytes(),
                anchor: 4,
                prefilter: None,
            }
        }
    }

    /// Where the trigger begins in `hay`, each occurrence in order.
    fn find_iter<'h>(&self, hay: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
        let Trigger {
            needle,
            anchor,
            prefilter,
        } = *self;
        let candidates: Box<dyn Iterator<Item = usize> + 'h> = match prefilter {
            Some(searcher) => Box::new(searcher.find_iter(hay).map(|m| m.start())),
            None => Box::new(
                memchr::memchr_iter(needle[anchor], hay).filter_map(move |i| i.checked_sub(anchor)),
            ),
        };
        candidates.filter(move |&start| {
            hay.get(start..start + needle.len())
                .is_some_and(|c| c.eq_ignore_ascii_case(needle))
        })
    }

    fn is_in(&self, hay: &[u8]) -> bool {
        self.find_iter(hay).next().is_some()
    }
}

/// A page between the tags lol_html may change. What went out is `head` (lol_html's output for
/// `input[..cut]`, from the last replay) then `input[cut..done]` as it came.
struct Watch {
    /// The page so far.
    input: Vec<u8>,
    head: Vec<u8>,
    cut: usize,
    done: usize,
    /// Triggers beginning before this were handled.
    from: usize,
    replays: u8,
}

enum State {
    /// lol_html not reading (see the module's documentation).
    Watching(Watch),
    /// lol_html reads the rest of the page. `kept` is what went out before, which lol_html's
    /// output must repeat: its first `checked` bytes were compared and dropped (never sent
    /// twice); the rest is compared as the output comes.
    Rewriting {
        rewriter: Box<HtmlRewriter<'static, Sink>>,
        kept: Vec<u8>,
        checked: usize,
    },
    /// The rest of the page passes as it comes (past the size cap, or after a failure).
    Passing,
}

/// Rewrites one response body, chunk by chunk.
pub struct WidgetRewriter {
    state: State,
    targets: Arc<[WidgetTarget]>,
    /// YourGPT chatbot widgets that get the person's contact script before their tag.
    contacts: Arc<[Arc<ContactSite>]>,
    trigger: Trigger,
    output: Output,
    memory: usize,
    seen: usize,
    max_bytes: usize,
}

impl WidgetRewriter {
    /// `max_bytes`: past this many input bytes the rest of the page passes untouched.
    pub fn new(targets: Vec<WidgetTarget>, max_bytes: usize) -> Self {
        Self::with_memory_limit(targets, max_bytes, usize::MAX)
    }

    /// A rewriter that has lol_html read the page from its first byte, whatever it holds: what
    /// [`WidgetRewriter::new`]'s must equal (the fuzz target and the tests compare the two).
    #[doc(hidden)]
    pub fn reading_every_byte(targets: Vec<WidgetTarget>, max_bytes: usize) -> Self {
        let mut rewriter = Self::new(targets, max_bytes);
        let nothing = rewriter.read_all(Watch::new());
        debug_assert!(nothing.is_ok_and(|out| out.is_empty()));
        rewriter
    }

    /// [`WidgetRewriter::new`] with lol_html's memory for one page capped at `memory` bytes.
    fn with_memory_limit(targets: Vec<WidgetTarget>, max_bytes: usize, memory: usize) -> Self {
        let writes_a_code = targets.iter().any(|t| t.code.is_some());
        WidgetRewriter {
            state: State::Watching(Watch::new()),
            targets: targets.into(),
            contacts: Arc::new([]),
            trigger: Trigger::for_targets(writes_a_code),
            output: Output::default(),
            memory,
            seen: 0,
            max_bytes,
        }
    }

    /// Also puts the contact script of each of `contacts` before its chatbot widget's tag
    /// (given before the first chunk).
    pub fn with_contacts(mut self, contacts: Vec<Arc<ContactSite>>) -> Self {
        if !contacts.is_empty() {
            self.trigger = Trigger::for_targets(true);
            self.contacts = contacts.into();
        }
        self
    }

    /// The page is about `bytes` long (its `Content-Length`): room to keep it is made once.
    pub fn expect_bytes(&mut self, bytes: usize) {
        if let State::Watching(watch) = &mut self.state {
            watch.input.reserve(bytes.min(KEPT_BYTES));
        }
    }

    /// Feeds one chunk; returns what is ready to send.
    pub fn write(&mut self, chunk: Bytes) -> Result<Bytes, RewriteFailed> {
        self.seen = self.seen.saturating_add(chunk.len());
        if self.seen > self.max_bytes && !matches!(self.state, State::Passing) {
            // Too big to keep rewriting: flush what is held (all of the earlier chunks), then
            // pass this chunk and the rest as they come.
            let mut out = self.end()?;
            if out.is_empty() {
                return Ok(chunk);
            }
            out.extend_from_slice(&chunk);
            return Ok(Bytes::from(out));
        }
        match std::mem::replace(&mut self.state, State::Passing) {
            State::Passing => Ok(chunk),
            State::Watching(mut watch) => {
                let held = watch.done < watch.input.len();
                watch.input.extend_from_slice(&chunk);
                self.watch(watch, (!held).then_some(chunk))
            }
            state @ State::Rewriting { .. } => {
                self.state = state;
                self.feed(Some(&chunk)).map(Bytes::from)
            }
        }
    }

    /// Ends the page; returns the last bytes.
    pub fn finish(&mut self) -> Result<Bytes, RewriteFailed> {
        self.end().map(Bytes::from)
    }

    /// The page grew (`watch.input`) by `chunk` (given when nothing was held back before it):
    /// sends what is ready, reading up to the last trigger in it with lol_html first.
    fn watch(&mut self, mut watch: Watch, chunk: Option<Bytes>) -> Result<Bytes, RewriteFailed> {
        if watch.input.len() > KEPT_BYTES {
            return self.read_all(watch).map(Bytes::from);
        }
        let ready = ready(&watch.input, watch.done);
        let from = watch.from;
        let last = self
            .trigger
            .find_iter(&watch.input[from..])
            .map(|i| from + i)
            .take_while(|&at| at < ready)
            .last();
        let out = match last {
            // The usual chunk: it goes out as it came, or the part before an unfinished tag.
            None => match chunk {
                Some(chunk) => chunk.slice(..ready - watch.done),
                None => Bytes::copy_from_slice(&watch.input[watch.done..ready]),
            },
            Some(_) if watch.replays == REPLAYS => return self.read_all(watch).map(Bytes::from),
            Some(at) => match self.replay(&mut watch, at, ready)? {
                Some(mut out) => {
                    out.extend_from_slice(&watch.input[watch.done..ready]);
                    Bytes::from(out)
                }
                None => return self.read_all(watch).map(Bytes::from),
            },
        };
        watch.done = ready;
        let unfinished = (watch.input.len() + 1).saturating_sub(self.trigger.needle.len());
        watch.from = watch.from.max(ready.min(unfinished));
        self.state = State::Watching(watch);
        Ok(out)
    }

    /// A fresh lol_html reads the page from its first byte to the end of the script tag the
    /// trigger at `at` belongs to, and ends there: returns its output past what went out, and
    /// moves `watch` past the tag. `None` when no script tag ends past `at` before `ready`
    /// (the trigger is text, or its tag is cut by the chunk's end).
    fn replay(
        &mut self,
        watch: &mut Watch,
        at: usize,
        ready: usize,
    ) -> Result<Option<Vec<u8>>, RewriteFailed> {
        let tag_end = Arc::new(AtomicUsize::new(0));
        let mut rewriter = self.lol_html(Some(tag_end.clone()));
        let input = &watch.input;
        let failed = |e: lol_html::errors::RewritingError| RewriteFailed(e.to_string());
        let mut fed = at;
        rewriter.write(&input[..at]).map_err(failed)?;
        for _ in 0..STEPS {
            if tag_end.load(Ordering::Relaxed) > at || fed >= ready {
                break;
            }
            let next = memchr::memchr(b'>', &input[fed..ready]).map_or(ready, |i| fed + i + 1);
            rewriter.write(&input[fed..next]).map_err(failed)?;
            fed = next;
        }
        // A step past `at` is always taken, so a tag that ended at `fed` ended past `at`.
        if tag_end.load(Ordering::Relaxed) != fed {
            self.take();
            return Ok(None);
        }
        rewriter.end().map_err(failed)?;
        let out = self.take();
        let raw = &input[watch.cut..watch.done];
        let sent = watch.head.len() + raw.len();
        if !(out.starts_with(&watch.head) && out[watch.head.len()..].starts_with(raw)) {
            return Err(tag_in_what_was_sent());
        }
        let new = out[sent..].to_vec();
        watch.head = out;
        watch.cut = fed;
        watch.done = fed;
        watch.from = fed;
        watch.replays += 1;
        Ok(Some(new))
    }

    /// lol_html reads the page from its first byte and goes on to its end.
    fn read_all(&mut self, watch: Watch) -> Result<Vec<u8>, RewriteFailed> {
        let mut rewriter = Box::new(self.lol_html(None));
        let fed = rewriter.write(&watch.input);
        let mut kept = watch.head;
        kept.extend_from_slice(&watch.input[watch.cut..watch.done]);
        self.state = State::Rewriting {
            rewriter,
            kept,
            checked: 0,
        };
        self.settle(fed, false)
    }

    /// lol_html with the handler that rewrites the targets' widget tags; `tag_end` is told
    /// where each script start tag it reads ends.
    fn lol_html(&self, tag_end: Option<Arc<AtomicUsize>>) -> HtmlRewriter<'static, Sink> {
        let targets = self.targets.clone();
        let contacts = self.contacts.clone();
        // The raw `href` of each `<base href>` lol_html has read so far.
        let base_seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let base_read = base_seen.clone();
        let sink_output = self.output.clone();
        let sink: Sink = Box::new(move |chunk: &[u8]| {
            sink_output
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(chunk);
        });
        let settings = Settings::new_send()
            .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(self.memory))
            .append_element_content_handler(element!("base[href]", move |el| {
                // The browser takes the first `<base href>` in the document; which one that is
                // depends on namespaces and `<template>` the way only a full HTML parser knows,
                // so every one seen so far counts: a tag may load what any of them makes of it.
                let mut bases = base_seen.lock().unwrap_or_else(|e| e.into_inner());
                if bases.len() < MAX_BASES {
                    bases.push(el.get_attribute("href").unwrap_or_default());
                }
                Ok(())
            }))
            .append_element_content_handler(element!("script", move |el| {
                if let Some(tag_end) = &tag_end {
                    tag_end.fetch_max(el.source_location().bytes().end, Ordering::Relaxed);
                }
                // An HTML script loads `src`; an SVG one `href`, or `xlink:href`.
                let sources: Vec<String> = ["src", "href", "xlink:href"]
                    .iter()
                    .filter_map(|name| el.get_attribute(name))
                    .collect();
                if sources.is_empty() {
                    return Ok(());
                }
                let bases = base_read.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if !contacts.is_empty() {
                    insert_contact_script(el, &contacts, &sources, &bases);
                }
                let mut write = None;
                let mut strip = false;
                for target in targets.iter() {
                    let bases: Vec<url::Url> = bases
                        .iter()
                        .filter_map(|raw| base_url(raw, &target.site.origin))
                        .collect();
                    match target.fit(sources.iter().map(String::as_str), &bases) {
                        Fit::Widget => {
                            strip = true;
                            write = write.or(target.code.as_ref());
                        }
                        Fit::SameOrigin => strip = true,
                        Fit::Other => {}
                    }
                }
                if strip {
                    // Removing first also drops a stale copy whose name differs in case.
                    el.remove_attribute(CODE_ATTRIBUTE);
                }
                if let Some(code) = write {
                    el.set_attribute(CODE_ATTRIBUTE, code)?;
                }
                Ok(())
            }));
        HtmlRewriter::new(settings, sink)
    }

    /// Gives lol_html a chunk, or ends the page (`None`); returns what is ready to send.
    fn feed(&mut self, chunk: Option<&[u8]>) -> Result<Vec<u8>, RewriteFailed> {
        let State::Rewriting { rewriter, .. } = &mut self.state else {
            unreachable!("feed is only called while rewriting");
        };
        match chunk {
            Some(chunk) => {
                let fed = rewriter.write(chunk);
                self.settle(fed, false)
            }
            None => self.settle(Ok(()), true),
        }
    }

    /// After lol_html was given a chunk (`fed`): ends the page when `last`, then returns its
    /// output past what was sent before it read the page — that part is checked and dropped.
    fn settle(
        &mut self,
        fed: Result<(), lol_html::errors::RewritingError>,
        last: bool,
    ) -> Result<Vec<u8>, RewriteFailed> {
        let State::Rewriting {
            rewriter,
            mut kept,
            mut checked,
        } = std::mem::replace(&mut self.state, State::Passing)
        else {
            unreachable!("settle is only called while rewriting");
        };
        let (fed, rewriter) = match fed {
            Ok(()) if last => (rewriter.end(), None),
            Ok(()) => (Ok(()), Some(rewriter)),
            Err(e) => (Err(e), None),
        };
        let mut out = self.take();
        fed.map_err(|e| RewriteFailed(e.to_string()))?;
        if checked < kept.len() {
            let n = out.len().min(kept.len() - checked);
            let short = rewriter.is_none() && checked + n < kept.len();
            if short || out[..n] != kept[checked..checked + n] {
                return Err(tag_in_what_was_sent());
            }
            checked += n;
            out.drain(..n);
            if checked == kept.len() {
                kept = Vec::new();
            }
        }
        if let Some(rewriter) = rewriter {
            self.state = State::Rewriting {
                rewriter,
                kept,
                checked,
            };
        }
        Ok(out)
    }

    /// Ends the page (lol_html's part, or the watching); returns what is left to send.
    fn end(&mut self) -> Result<Vec<u8>, RewriteFailed> {
        match std::mem::replace(&mut self.state, State::Passing) {
            State::Passing => Ok(Vec::new()),
            State::Watching(watch) if self.trigger.is_in(&watch.input[watch.from..]) => {
                // A trigger in the part held back: lol_html decides what becomes of it.
                let mut out = self.read_all(watch)?;
                out.extend(self.feed(None)?);
                Ok(out)
            }
            State::Watching(mut watch) => {
                watch.input.drain(..watch.done);
                Ok(watch.input)
            }
            state @ State::Rewriting { .. } => {
                self.state = state;
                self.feed(None)
            }
        }
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.output.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Watch {
    fn new() -> Self {
        Watch {
            input: Vec::new(),
            head: Vec::new(),
            cut: 0,
            done: 0,
            from: 0,
            replays: 0,
        }
    }
}

fn tag_in_what_was_sent() -> RewriteFailed {
    RewriteFailed("a widget tag began in the part of the page already sent".into())
}

/// How much of `kept` past `sent` can go out while watching: all of it, but for a tag that may
/// still be open at the end (from the last `<` with no `>` after it), which a trigger found in
/// the next chunk could belong to.
fn ready(kept: &[u8], sent: usize) -> usize {
    let unsent = &kept[sent..];
    match unsent.iter().rposition(|&b| b == b'<') {
        Some(i) if !unsent[i..].contains(&b'>') => sent + i,
        _ => kept.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(code: Option<&str>) -> WidgetTarget {
        WidgetTarget::new(
            "https://chat.example.com",
            "widget.js",
            code.map(String::from),
        )
        .unwrap()
    }

    /// The page through `r` in chunks of `chunk` bytes, or the first failure (with what went
    /// out before it).
    fn run(mut r: WidgetRewriter, page: &[u8], chunk: usize) -> Result<Vec<u8>, Vec<u8>> {
        let mut out = Vec::new();
        for piece in page.chunks(chunk) {
            match r.write(Bytes::copy_from_slice(piece)) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(_) => return Err(out),
            }
        }
        match r.finish() {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(_) => return Err(out),
        }
        Ok(out)
    }

    fn rewrite(html: &str, code: Option<&str>, chunk: usize) -> String {
        let r = WidgetRewriter::new(vec![target(code)], usize::MAX);
        String::from_utf8(run(r, html.as_bytes(), chunk).unwrap()).unwrap()
    }

    #[test]
    fn a_failure_mid_page_is_an_error_never_duplicated_bytes() {
        // A start tag split over chunks, larger than lol_html may buffer: it fails mid-page.
        let mut r = WidgetRewriter::with_memory_limit(vec![target(Some("C"))], usize::MAX, 4096);
        let a = "a".repeat(32 * 1024);
        // (`<script` in a comment: lol_html reads the page from there on.)
        let chunks = [
            "<html><body><!-- <script --><p>before</p>".to_string(),
            format!("<script src=\"{a}"),
            format!("{a}\"></script><p>after</p>"),
        ];
        let page = chunks.concat();
        let mut out = Vec::new();
        let mut failed = false;
        for chunk in &chunks {
            match r.write(Bytes::from(chunk.clone())) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the rewriter must fail on a tag over its memory");
        assert!(
            page.as_bytes().starts_with(&out),
            "what went out is a prefix of the page, nothing doubled"
        );
    }

    #[test]
    fn past_the_cap_the_rest_passes_once() {
        let target = WidgetTarget::new("https://chat.example.com", "widget.js", None).unwrap();
        let mut r = WidgetRewriter::new(vec![target], 10);
        let mut out = Vec::new();
        for piece in ["<p>one</p>", "<p>two</p>", "<p>three</p>"] {
            out.extend_from_slice(&r.write(Bytes::from_static(piece.as_bytes())).unwrap());
        }
        out.extend_from_slice(&r.finish().unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<p>one</p><p>two</p><p>three</p>"
        );
    }

    #[test]
    fn the_widget_tag_gets_the_code_in_any_chunking() {
        let page = r#"<html><head><script defer src="https://chat.example.com/widget.js" id="w"></script></head></html>"#;
        for chunk in [1, 7, 4096] {
            let out = rewrite(page, Some("CODE"), chunk);
            assert!(
                out.contains(r#"id="w" data-external-auth-code="CODE""#),
                "{out}"
            );
        }
    }

    #[test]
    fn stale_codes_any_case_are_replaced_or_removed_and_others_left_alone() {
        let page = r#"<SCRIPT SRC="//chat.example.com/widget.js" DATA-EXTERNAL-AUTH-CODE="stale"></SCRIPT><script src="https://other.example.com/widget.js" data-external-auth-code="theirs"></script>"#;
        let out = rewrite(page, Some("NEW"), 5);
        assert!(!out.contains("stale"), "{out}");
        assert!(out.contains(r#"data-external-auth-code="NEW""#), "{out}");
        assert!(out.contains(r#"data-external-auth-code="theirs""#), "{out}");
        let out = rewrite(page, None, 5);
        assert!(
            !out.contains("stale") && !out.to_lowercase().contains("=\"new\""),
            "{out}"
        );
        assert!(out.contains("theirs"));
    }

    #[test]
    fn character_references_in_src_do_not_hide_a_widget() {
        for src in [
            "https://chat.example.com/widget&#46;js",
            "https://chat.example.com/widget&period;js",
            "https&colon;//chat&#x2E;example&#46;com/widget.js",
            "&#x68;ttps://chat.example.com/widget.js",
            "&NewLine;https://chat.example.com/widget.js",
        ] {
            let page = format!(r#"<script src="{src}" data-external-auth-code="stale"></script>"#);
            let stripped = rewrite(&page, None, 4);
            assert!(!stripped.contains("stale"), "{src}: {stripped}");
            let signed = rewrite(&page, Some("NEW"), 4);
            assert!(
                !signed.contains("stale") && signed.contains(r#"data-external-auth-code="NEW""#),
                "{src}: {signed}"
            );
        }
    }

    #[test]
    fn pages_without_a_widget_are_identical() {
        let page = "<!doctype html><html><head><meta charset=utf-8><script src=/app.js></script>\n<title>x</title></head><body><p>Caf\u{e9} &amp; <b>bold</b><!-- c --></p><script src=\"https://chat.example.com/other.js\"></script></body></html>";
        assert_eq!(rewrite(page, Some("C"), 3), page);
    }

    #[test]
    fn matching_needs_the_instance_origin_and_the_suffix() {
        let t = WidgetTarget::new("https://chat.example.com", "widget.js", None).unwrap();
        let fit = |src: &str| t.fit([src], &[]);
        assert_eq!(fit("https://chat.example.com/widget.js"), Fit::Widget);
        assert_eq!(
            fit("https://CHAT.example.com/agents/a1/widget.js?v=2"),
            Fit::Widget
        );
        assert_eq!(fit("//chat.example.com/widget.js"), Fit::Widget);
        // As the instance would serve it: case and a trailing slash do not matter, nor an
        // escaped dot.
        assert_eq!(fit("https://chat.example.com/WIDGET.JS"), Fit::Widget);
        assert_eq!(fit("https://chat.example.com/widget.js/"), Fit::Widget);
        assert_eq!(fit("https://chat.example.com/widget%2Ejs"), Fit::Widget);
        assert_eq!(fit("https://chat.example.com/widget.jsx"), Fit::SameOrigin);
        assert_eq!(fit("https://chat.example.com/app.js"), Fit::SameOrigin);
        assert_eq!(fit("http://chat.example.com/widget.js"), Fit::Other);
        assert_eq!(fit("https://chat.example.com.evil/widget.js"), Fit::Other);
        assert_eq!(fit("/widget.js"), Fit::Other);
        assert_eq!(fit("::garbage::"), Fit::Other);
    }

    #[test]
    fn a_base_href_resolves_relative_sources_as_the_browser_does() {
        let t = WidgetTarget::new("https://chat.example.com", "widget.js", None).unwrap();
        let origin = &t.site.origin;
        let base: Vec<_> = base_url("https://chat.example.com/x/", origin)
            .into_iter()
            .collect();
        assert_eq!(t.fit(["widget.js"], &base), Fit::Widget);
        assert_eq!(t.fit(["../widget.js"], &base), Fit::Widget);
        assert_eq!(t.fit(["/other.js"], &base), Fit::SameOrigin);
        let proto: Vec<_> = base_url("//chat.example.com/", origin)
            .into_iter()
            .collect();
        assert_eq!(t.fit(["widget.js"], &proto), Fit::Widget);
        // A relative base stays on the page's own origin.
        assert_eq!(base_url("/static/", origin), None);
        assert_eq!(t.fit(["widget.js"], &[]), Fit::Other);
        // An absolute source ignores the base.
        let elsewhere: Vec<_> = base_url("https://cdn.example/", origin)
            .into_iter()
            .collect();
        assert_eq!(
            t.fit(["https://chat.example.com/widget.js"], &elsewhere),
            Fit::Widget
        );
        assert_eq!(t.fit(["widget.js"], &elsewhere), Fit::Other);
        // Any base may be the one the browser takes.
        let both = [elsewhere[0].clone(), base[0].clone()];
        assert_eq!(t.fit(["widget.js"], &both), Fit::Widget);
        // The root dot names the same host.
        assert_eq!(
            t.fit(["https://chat.example.com./widget.js"], &[]),
            Fit::Widget
        );
    }

    #[test]
    fn planted_codes_go_whatever_shape_the_tag_takes() {
        let planted = [
            // A relative src under a <base> pointing at the instance.
            "<base href=\"https://chat.example.com/\"><script src=\"widget.js\" data-external-auth-code=\"PLANTED\"></script>",
            // Only the first <base> counts...
            "<base href=\"https://chat.example.com/\"><base href=\"/local/\"><script src=\"widget.js\" data-external-auth-code=\"PLANTED\"></script>",
            // ...and a decoy in SVG, MathML or a template is not it.
            "<svg><base href=\"https://other.example/\"></base></svg><base href=\"https://chat.example.com/\"><script src=\"widget.js\" data-external-auth-code=\"PLANTED\"></script>",
            "<template><base href=\"https://other.example/\"></template><base href=\"https://chat.example.com/\"><script src=\"widget.js\" data-external-auth-code=\"PLANTED\"></script>",
            "<math><base href=\"https://other.example/\"></base></math><BASE HREF=\"https://chat.example.com/\"><script src=\"widget.js\" data-external-auth-code=\"PLANTED\"></script>",
            // The root dot: the same server.
            "<script src=\"https://chat.example.com./widget.js\" data-external-auth-code=\"PLANTED\"></script>",
            // SVG scripts load href and xlink:href.
            "<svg><script href=\"https://chat.example.com/widget.js\" data-external-auth-code=\"PLANTED\"></script></svg>",
            "<svg><script xlink:href=\"https://chat.example.com/widget.js\" data-external-auth-code=\"PLANTED\"></script></svg>",
            // Spellings the instance serves as its widget.
            "<script src=\"https://chat.example.com/widget.js/\" data-external-auth-code=\"PLANTED\"></script>",
            "<script src=\"https://chat.example.com/WIDGET.JS\" data-external-auth-code=\"PLANTED\"></script>",
            // Another script of the instance's origin.
            "<script src=\"https://chat.example.com/loader.js\" data-external-auth-code=\"PLANTED\"></script>",
        ];
        for page in planted {
            for code in [None, Some("FRESH")] {
                for chunk in [1, 7, 4096] {
                    let out = rewrite(page, code, chunk);
                    assert!(
                        !out.contains("PLANTED"),
                        "{page} ({code:?}, {chunk}): {out}"
                    );
                }
            }
        }
        // The widget's own shapes get the person's code; another instance script gets none.
        for page in &planted[..10] {
            assert!(
                rewrite(page, Some("FRESH"), 5).contains("data-external-auth-code=\"FRESH\""),
                "{page}"
            );
        }
        assert!(!rewrite(planted[10], Some("FRESH"), 5).contains("FRESH"));
        // A base after the script does not change it (the browser resolved it already).
        let late = "<script src=\"widget.js\" data-external-auth-code=\"KEEP\"></script><base href=\"https://chat.example.com/\">";
        assert_eq!(rewrite(late, Some("FRESH"), 3), late);
    }

    /// Pieces of pages: widget tags plain, encoded, cased and with codes; the places a tag is
    /// text (comments, attribute values, script data, RCDATA, RAWTEXT); other scripts.
    const PIECES: &[&str] = &[
        "<p>text &amp; more</p>",
        r#"<script src="https://chat.example.com/widget.js"></script>"#,
        r#"<script src="https://chat.example.com/widget.js" data-external-auth-code="stale"></script>"#,
        r#"<SCRIPT DATA-EXTERNAL-AUTH-CODE=x SRC=//chat.example.com/widget&#46;js></SCRIPT>"#,
        r#"<!-- <script src="https://chat.example.com/widget.js" data-external-auth-code="c"> -->"#,
        r#"<div title="<script src=https://chat.example.com/widget.js data-external-auth-code=t>">x</div>"#,
        r#"<script>var s = "<script src='https://chat.example.com/widget.js' data-external-auth-code=j>";</script>"#,
        r#"<textarea><script src="https://chat.example.com/widget.js" data-external-auth-code=a></textarea>"#,
        r#"<style>p > a { color: red }</style>"#,
        r#"<script src="/app.js" data-external-auth-code="other"></script>"#,
        "<img alt='a > b' src=x.png>",
        r#"<script data-x=">" src="https://chat.example.com/widget.js" data-external-auth-code="q"></script>"#,
        "<!doctype html><html><head>",
    ];

    #[test]
    fn the_output_is_lol_htmls_reading_every_byte() {
        // Every page of up to three pieces, every chunk size up to 9 and a large one, both
        // modes: the rewriter that starts lol_html late writes exactly what lol_html writes
        // reading every byte.
        let mut pages = Vec::new();
        for a in PIECES {
            for b in PIECES {
                pages.push(format!("{a}{b}"));
                for c in PIECES.iter().step_by(3) {
                    pages.push(format!("{a}{b}{c}"));
                }
            }
        }
        for page in &pages {
            for code in [Some("NEW"), None] {
                let every = WidgetRewriter::reading_every_byte(vec![target(code)], usize::MAX);
                let expected = run(every, page.as_bytes(), 4096).unwrap();
                for chunk in (1..=9).chain([4096]) {
                    let r = WidgetRewriter::new(vec![target(code)], usize::MAX);
                    match run(r, page.as_bytes(), chunk) {
                        Ok(out) => assert_eq!(out, expected, "{code:?}, chunks of {chunk}: {page}"),
                        // Removing codes, a tag with a `>` in a value before the code's name
                        // may look closed while watching: if a chunk ends between the two, the
                        // answer ends before the tag does (never a different page).
                        Err(sent) => {
                            assert!(code.is_none() && page.contains(r#"data-x=">""#), "{page}");
                            let sent = String::from_utf8_lossy(&sent);
                            assert!(!sent.contains(r#"auth-code="q">"#), "{sent}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_tag_hidden_from_the_watch_ends_the_answer_before_its_end() {
        // `<>` in a value of the very tag that holds a planted code: the tag looks closed, so
        // while watching, the chunk went out up to half the code's name. When the name
        // completes, lol_html removes the attribute from a part already sent: the answer ends
        // there — the tag never completed, so the browser drops it.
        let first =
            r#"<p>a</p><script src="https://chat.example.com/widget.js" title="<>" data-external-"#;
        let page = format!(r#"{first}auth-code="planted"></script><p>b</p>"#);
        let mut r = WidgetRewriter::new(vec![target(None)], usize::MAX);
        let sent = r.write(Bytes::from_static(first.as_bytes())).unwrap();
        assert_eq!(sent, first.as_bytes());
        assert!(r
            .write(Bytes::from(page[first.len()..].to_string()))
            .is_err());
        // The same tag with a `<` and no `>` in its value: held back, so nothing is lost.
        let page = page.replace("<>", "<");
        let every = WidgetRewriter::reading_every_byte(vec![target(None)], usize::MAX);
        let expected = run(every, page.as_bytes(), 4096).unwrap();
        let r = WidgetRewriter::new(vec![target(None)], usize::MAX);
        assert_eq!(run(r, page.as_bytes(), first.len() - 2), Ok(expected));
    }

    #[test]
    fn a_page_with_no_tag_to_change_never_starts_lol_html() {
        let page = format!(
            "<html><body>{}<script src=/app.js></script></body></html>",
            "<p>row <b>x</b></p>".repeat(4000)
        );
        // Codes only removed: a page without the attribute's name is never read by lol_html,
        // until the page outgrows what is kept for a replay.
        let mut r = WidgetRewriter::new(vec![target(None)], usize::MAX);
        let mut out = Vec::new();
        for piece in page.as_bytes().chunks(1000) {
            out.extend_from_slice(&r.write(Bytes::copy_from_slice(piece)).unwrap());
            if out.len() + 2000 < KEPT_BYTES {
                assert!(matches!(r.state, State::Watching { .. }));
            }
        }
        assert!(matches!(r.state, State::Rewriting { .. }));
        out.extend_from_slice(&r.finish().unwrap());
        assert_eq!(out, page.as_bytes());
        // A code to write: a page without `<script` is never read by lol_html.
        let page = "<p>only</p>".repeat(100);
        let mut r = WidgetRewriter::new(vec![target(Some("C"))], usize::MAX);
        let out = r.write(Bytes::from(page.clone())).unwrap();
        assert!(matches!(r.state, State::Watching { .. }));
        assert_eq!([&out[..], &r.finish().unwrap()].concat(), page.as_bytes());
    }

    #[test]
    fn a_planted_code_past_what_is_kept_is_still_removed() {
        let page = format!(
            r#"{}<script src="https://chat.example.com/widget.js" data-external-auth-code="planted"></script>"#,
            "<p>row</p>".repeat(KEPT_BYTES / 5)
        );
        for code in [None, Some("NEW")] {
            let r = WidgetRewriter::new(vec![target(code)], usize::MAX);
            let out = String::from_utf8(run(r, page.as_bytes(), 4096).unwrap()).unwrap();
            assert!(!out.contains("planted"), "{code:?}");
        }
    }

    #[test]
    fn random_pages_agree_with_reading_every_byte() {
        // Pages of random HTML atoms (a fixed seed: the same pages every run), random chunks.
        let atoms = [
            "<",
            ">",
            "script",
            "SCRIPT",
            " src=",
            "\"",
            "'",
            "//chat.example.com/widget.js",
            "https://chat.example.com/widget.js",
            "&#46;",
            " data-external-auth-code",
            "=x",
            "<!--",
            "-->",
            "</script>",
            "<textarea>",
            "</textarea>",
            "<style>",
            " ",
            "/",
            "a",
            "\0",
            "<svg>",
            "<![CDATA[",
            "]]>",
            "=",
            "\n",
        ];
        let mut seed: u64 = 0x1234_5678;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..5000 {
            let page: String = (0..next(30)).map(|_| atoms[next(atoms.len())]).collect();
            let chunk = 1 + next(12);
            for code in [Some("NEW"), None] {
                let every = WidgetRewriter::reading_every_byte(vec![target(code)], usize::MAX);
                let r = WidgetRewriter::new(vec![target(code)], usize::MAX);
                assert_eq!(
                    run(r, page.as_bytes(), chunk).ok(),
                    run(every, page.as_bytes(), chunk).ok(),
                    "{code:?}, chunks of {chunk}: {page:?}"
                );
            }
        }
    }

    #[test]
    fn lol_html_reads_a_page_only_to_its_last_script_tag() {
        let body = "<p>row <b>x</b></p>".repeat(1500);
        let page = format!(
            r#"<html><head><script src="https://chat.example.com/widget.js"></script></head><body>{body}</body></html>"#
        );
        let mut r = WidgetRewriter::new(vec![target(Some("NEW"))], usize::MAX);
        let mut out = r.write(Bytes::from(page.clone())).unwrap().to_vec();
        let State::Watching(watch) = &r.state else {
            panic!("lol_html went on reading past the widget tag");
        };
        assert_eq!(watch.replays, 1);
        out.extend_from_slice(&r.finish().unwrap());
        let every = WidgetRewriter::reading_every_byte(vec![target(Some("NEW"))], usize::MAX);
        assert_eq!(out, run(every, page.as_bytes(), 4096).unwrap());
        // A script tag in every chunk: after REPLAYS reads from the start, lol_html reads on.
        let chunk = format!("<script src=/app.js></script>{}", "<p>row</p>".repeat(50));
        let mut r = WidgetRewriter::new(vec![target(Some("NEW"))], usize::MAX);
        for i in 0..=REPLAYS {
            r.write(Bytes::from(chunk.clone())).unwrap();
            assert_eq!(
                matches!(r.state, State::Watching(_)),
                i < REPLAYS,
                "chunk {i}"
            );
        }
    }

    #[test]
    fn triggers_are_found_in_any_case_with_or_without_simd() {
        let hay = b"<p><sc <ScRiPt src=x><SCRIPT><script <scrip</p>data-External-auth-CODE=<script";
        let simd = Trigger::for_targets(true);
        assert!(
            simd.prefilter.is_some(),
            "this machine has the SIMD prefilter"
        );
        let plain = Trigger {
            prefilter: None,
            ..simd
        };
        let expected = vec![7, 21, 29, 71];
        assert_eq!(simd.find_iter(hay).collect::<Vec<_>>(), expected);
        assert_eq!(plain.find_iter(hay).collect::<Vec<_>>(), expected);
        let attribute = Trigger::for_targets(false);
        assert_eq!(attribute.find_iter(hay).collect::<Vec<_>>(), vec![47]);
    }

    #[test]
    fn a_target_never_shows_its_code() {
        let shown = format!("{:?}", target(Some("SECRET-CODE")));
        assert!(
            !shown.contains("SECRET-CODE") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
