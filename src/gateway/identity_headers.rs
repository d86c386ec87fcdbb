//! The person, as the headers the upstream receives (`[identity_headers]`).

use http::{HeaderName, HeaderValue};

use super::Gateway;
use crate::identity::Identity;

impl Gateway {
    /// `X-Handoff-Groups`: the groups joined with `,`. A group whose name cannot be carried
    /// unambiguously — it holds a `,`, a control character, or space at either end — is left
    /// out (an upstream splitting on `,` would see groups the person is not in); logged once.
    fn groups_header(&self, identity: &Identity) -> String {
        let carriable = |g: &&String| {
            !g.contains(',') && !g.chars().any(char::is_control) && g.trim() == g.as_str()
        };
        if identity.groups.iter().all(|g| carriable(&g)) {
            return identity.groups.join(",");
        }
        if !self
            .dropped_group_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let first = identity.groups.iter().find(|g| !carriable(g));
            tracing::warn!(
                target: "handoff::identity",
                "a group name with a comma, a control character or surrounding spaces is left out \
                 of the groups header (it cannot be carried unambiguously), e.g. {first:?}; \
                 logged once per config"
            );
        }
        let kept: Vec<&str> = identity
            .groups
            .iter()
            .filter(carriable)
            .map(String::as_str)
            .collect();
        kept.join(",")
    }

    /// The identity headers to send upstream for `identity`, with each name as the config
    /// spells it. Values that cannot be a header (control characters) are left out rather
    /// than mangled. The values are made once per person (kept with it, see
    /// `HeaderValuesMemo`); a later request's are reference counts, no allocation.
    pub fn identity_header_values<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> impl Iterator<Item = IdentityHeader<'a>> {
        let names = &self.identity_headers;
        let values = identity.header_values.get_or_init(|| {
            let groups = self.groups_header(identity);
            [
                identity.id.as_str(),
                identity.email.as_str(),
                identity.name.as_str(),
                identity.username.as_str(),
                groups.as_str(),
            ]
            .map(|v| {
                (!v.is_empty())
                    .then(|| HeaderValue::from_bytes(v.as_bytes()).ok())
                    .flatten()
            })
        });
        names
            .all()
            .into_iter()
            .zip(&names.spellings)
            .zip(values)
            .filter_map(|((name, spelled), value)| {
                Some(IdentityHeader {
                    name,
                    spelled,
                    value: value.clone()?,
                })
            })
    }
}

/// One identity header for the upstream: its name, the name as spelled on the wire, its value.
pub struct IdentityHeader<'g> {
    pub name: &'g HeaderName,
    pub spelled: &'g bytes::Bytes,
    pub value: HeaderValue,
}
