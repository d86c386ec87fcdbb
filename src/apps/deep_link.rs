//! Deep links into an app: a route's tail (what followed its prefix) and query, or a
//! `return_to` the app sent, turned into a URL on the app's own origin — read back as a
//! browser reads it (WHATWG), or refused.

/// The deep link on `site`: `tail` is joined to the site's path; a tail that does not begin
/// with `/` (`;x`, `@host`) is no deep link, and the site's own page is opened. The client's
/// query is kept byte for byte, except for parameters named in `drop` (a code or token the
/// gateway sets itself, so the fresh one is the only one). `None` when the URL would not be on
/// the site's origin (scheme, host and port) as a WHATWG parser reads it.
pub fn deep_link(
    site: &url::Url,
    tail: &str,
    query: Option<&str>,
    drop: &[&str],
) -> Option<url::Url> {
    let mut url = site.clone();
    let tail = if tail.starts_with('/') { tail } else { "/" };
    let base = site.path().trim_end_matches('/');
    url.set_path(&format!("{base}{tail}"));
    let kept: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty() && !drop.iter().any(|name| names(pair, name)))
        .collect();
    url.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    url.set_fragment(None);
    on_site(site, url)
}

/// A `return_to` the app itself sent (its own redirect to the gateway, e.g. Zendesk's or
/// Metabase's): a path on the site, or an absolute URL on its origin. Anything else — another
/// host, a scheme-relative `//host`, credentials — is `None`.
pub fn return_to(site: &url::Url, value: &str) -> Option<url::Url> {
    // `join` reads the value exactly as a browser resolves a link on the site's page.
    let url = site.join(value).ok()?;
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    on_site(site, url)
}

/// `url` when, written out and read back, it is still on `site`'s origin and unchanged, and
/// its path does not begin with `//` (an app that redirects to the path alone would read
/// that as another host).
fn on_site(site: &url::Url, url: url::Url) -> Option<url::Url> {
    if url.path().starts_with("//") {
        return None;
    }
    let reparsed = url::Url::parse(url.as_str()).ok()?;
    (reparsed.origin() == site.origin() && reparsed == url).then_some(url)
}

/// Whether a `key=value` pair of a query is the parameter `name` (its key decoded as a
/// form decoder does: `+` is a space, percent escapes undone).
fn names(pair: &str, name: &str) -> bool {
    let key = pair.split('=').next().unwrap_or_default().replace('+', " ");
    percent_encoding::percent_decode_str(&key).decode_utf8_lossy() == name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> url::Url {
        url::Url::parse("https://acme.zendesk.example/").unwrap()
    }

    #[test]
    fn a_return_to_stays_on_the_site() {
        let ok = |v: &str| return_to(&site(), v).map(|u| u.to_string());
        assert_eq!(
            ok("/hc/en-us?x=1").as_deref(),
            Some("https://acme.zendesk.example/hc/en-us?x=1")
        );
        assert_eq!(
            ok("https://acme.zendesk.example/agent#/tickets").as_deref(),
            Some("https://acme.zendesk.example/agent#/tickets")
        );
        for hostile in [
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "https://acme.zendesk.example.evil.example/",
            "https://acme.zendesk.example@evil.example/",
            "https://user:pw@acme.zendesk.example/",
            "http://acme.zendesk.example/",
            "https://acme.zendesk.example:444/",
            "javascript:alert(1)",
            "data:text/html,x",
            " //evil.example",
            "\t//evil.example",
            "/\t/evil.example",
            "https:evil.example",
            "https:/evil.example",
            "/.//evil.example",
            "/x/..//evil.example",
            "/%2e%2e//evil.example",
            ".//evil.example",
            "..//evil.example",
            "https://acme.zendesk.example/.%2e//evil.example",
            "https://acme.zendesk.example///evil.example",
        ] {
            let read = ok(hostile);
            assert!(
                read.as_deref()
                    .is_none_or(|u| !u["https://acme.zendesk.example".len()..].starts_with("//")),
                "{hostile:?} -> {read:?}: a path another reader takes for a host"
            );
            assert!(
                read.as_deref()
                    .is_none_or(|u| url::Url::parse(u).unwrap().host_str()
                        == Some("acme.zendesk.example")
                        && u.starts_with("https://acme.zendesk.example/")),
                "{hostile:?} -> {read:?}"
            );
        }
    }

    #[test]
    fn dropped_parameters_are_matched_as_a_form_decoder_reads_them() {
        let u = deep_link(
            &site(),
            "/x",
            Some("jwt=a&j%77t=b&jw+t=c&return_to=d&keep=1"),
            &["jwt", "return_to"],
        )
        .unwrap();
        assert_eq!(u.as_str(), "https://acme.zendesk.example/x?jw+t=c&keep=1");
        // A tail whose backslash the URL parser turns into a second slash.
        assert_eq!(deep_link(&site(), "/\\evil.example", None, &[]), None);
    }
}
