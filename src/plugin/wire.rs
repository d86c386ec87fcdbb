//! Writing a [`Reply`] Handoff answered by itself to the client.

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::config::PagesSettings;
use crate::reply::Reply;

/// Writes a complete [`Reply`], keeping the connection open for the next request unless the
/// reply says to close it. A page is rendered for the request it answers first (its way back,
/// `[pages]`); the help-desk reference it shows is returned, for the access log.
pub(super) async fn write_reply(
    session: &mut Session,
    mut reply: Reply,
    pages: &PagesSettings,
) -> Result<Option<Box<str>>> {
    render_page(session, &mut reply, pages);
    let reference = reply.reference.take();
    if reply.close {
        session.set_keepalive(None);
    }
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
    for (name, value) in reply.headers {
        resp.insert_header(name, value)?;
    }
    resp.insert_header("Content-Length", reply.body.len().to_string())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    if reply.body.is_empty() || head_only {
        session.write_response_header(Box::new(resp), true).await?;
    } else {
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(reference)
}

/// Renders a deferred page of `reply` for the request it answers (see
/// [`Reply::render_page`]).
pub(super) fn render_page(session: &Session, reply: &mut Reply, pages: &PagesSettings) {
    if reply.page.is_none() {
        return;
    }
    let req = session.req_header();
    let host = crate::gateway::request_host(req);
    let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let referer = req
        .headers
        .get(http::header::REFERER)
        .and_then(|v| v.to_str().ok());
    reply.render_page(pages, host, path_and_query, referer);
}
