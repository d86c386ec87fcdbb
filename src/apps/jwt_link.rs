//! `kind = "jwt_link"`: any app that signs people in from a JWT the company signs (Zendesk,
//! Metabase, Canny …). The token, built from the app's claims template, is sent to the app's
//! URL in a query parameter (a redirect) or in an auto-submitted form (see
//! `pages::form_post`); a deep link travels in the app's `return_to` parameter.

use jsonwebtoken::{EncodingKey, Header};

use super::deep_link::{deep_link, return_to};
use super::mint::{encoding_key, mint};
use super::{HandoffOutcome, HandoffRequest};
use crate::config::{Delivery, JwtLinkSettings};
use crate::identity::{ClaimMapping, Identity};

/// One `jwt_link` app, its key ready.
pub struct JwtLink {
    settings: JwtLinkSettings,
    header: Header,
    key: EncodingKey,
}

impl JwtLink {
    pub fn new(settings: JwtLinkSettings) -> Result<Self, String> {
        let key = encoding_key(settings.algorithm, &settings.key)?;
        let mut header = Header::new(settings.algorithm);
        header.kid = settings.kid.clone();
        Ok(JwtLink {
            settings,
            header,
            key,
        })
    }

    /// Signs the person in: the claims, the deep link, the token, and how it is sent. Nothing
    /// is signed for a person who lacks a required claim or a link that would leave the site.
    pub fn handoff(
        &self,
        who: &Identity,
        mapping: &ClaimMapping,
        request: &HandoffRequest<'_>,
    ) -> HandoffOutcome {
        let s = &self.settings;
        let claims = match s.claims.fill(who, mapping) {
            Ok(c) => c,
            Err(missing) => return HandoffOutcome::MissingClaims(missing),
        };
        let destination = match &s.return_to {
            None => None,
            Some(rt) => match self.destination(rt, request) {
                Ok(d) => d,
                Err(()) => return HandoffOutcome::OffSite,
            },
        };
        let token = match mint(claims, &self.header, &self.key, s.token_ttl) {
            Ok(t) => t,
            Err(e) => return HandoffOutcome::Internal(e),
        };
        let mut fields = vec![(s.token_param.clone(), token)];
        if let (Some(rt), Some(d)) = (&s.return_to, destination) {
            fields.push((rt.param.clone(), d.into()));
        }
        match s.delivery {
            Delivery::Redirect => {
                let mut url = s.url.clone();
                url.query_pairs_mut().extend_pairs(&fields);
                HandoffOutcome::Redirect(url.into())
            }
            Delivery::FormPost => HandoffOutcome::FormPost {
                action: s.url.to_string(),
                fields,
            },
        }
    }

    /// Where the app should open after signing in: the `return_to` the app sent (its own
    /// redirect to the route), else the route's tail and query as a deep link, else nowhere
    /// in particular (`None`: the app's home). `Err` for a link that would leave the site.
    fn destination(
        &self,
        rt: &crate::config::ReturnTo,
        request: &HandoffRequest<'_>,
    ) -> Result<Option<url::Url>, ()> {
        let sent: Vec<String> = request
            .query
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| *k == rt.param)
                    .map(|(_, v)| v.into_owned())
                    .collect()
            })
            .unwrap_or_default();
        match sent.as_slice() {
            [] => {}
            [one] => return return_to(&rt.site, one).map(Some).ok_or(()),
            // Two readers could pick different ones.
            _ => return Err(()),
        }
        if request.tail.trim_start_matches('/').is_empty()
            && request.query.is_none_or(str::is_empty)
        {
            return Ok(None);
        }
        let drop = [self.settings.token_param.as_str(), rt.param.as_str()];
        deep_link(&rt.site, request.tail, request.query, &drop)
            .map(Some)
            .ok_or(())
    }
}
