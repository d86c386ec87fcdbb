//! Writing a [`Reply`] Handoff answered by itself to the client.

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::reply::Reply;

/// Writes a complete [`Reply`], keeping the connection open for the next request unless the
/// reply says to close it.
pub(super) async fn write_reply(session: &mut Session, reply: Reply) -> Result<()> {
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
        session.write_response_header(Box::new(resp), true).await
    } else {
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(reply.body), true).await
    }
}
