//! Who the person is: [`Identity`], built from session claims through a [`ClaimMapping`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// Where to find one field in the claims: a claim name, or a dotted path into nested objects
/// (`realm_access.roles`). A claim whose own name contains dots (`https://corp/groups`) is found
/// by its exact name first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    raw: String,
}

impl ClaimPath {
    pub fn new(raw: impl Into<String>) -> Self {
        ClaimPath { raw: raw.into() }
    }

    /// The path as written in the config.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Looks the path up in `claims`.
    pub fn find<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        if let Some(v) = claims.get(&self.raw) {
            return Some(v);
        }
        if !self.raw.contains('.') {
            return None;
        }
        let mut parts = self.raw.split('.');
        let mut current = claims.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    }
}

/// How the session's claims map onto an [`Identity`]. Defaults are the OpenID Connect names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    pub id: ClaimPath,
    pub email: ClaimPath,
    pub first_name: ClaimPath,
    pub last_name: ClaimPath,
    pub name: ClaimPath,
    pub username: ClaimPath,
    pub groups: ClaimPath,
    pub profile_pic: ClaimPath,
    pub phone_no: ClaimPath,
    pub phone_code: ClaimPath,
    /// Claims apps need as they are (JSON type kept), e.g. TypingMind's own user id; found in
    /// [`Identity::extra`] under the path as written.
    pub extra: Vec<ClaimPath>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            id: ClaimPath::new("sub"),
            email: ClaimPath::new("email"),
            first_name: ClaimPath::new("given_name"),
            last_name: ClaimPath::new("family_name"),
            name: ClaimPath::new("name"),
            username: ClaimPath::new("preferred_username"),
            groups: ClaimPath::new("groups"),
            profile_pic: ClaimPath::new("picture"),
            phone_no: ClaimPath::new("phone_no"),
            phone_code: ClaimPath::new("phone_code"),
            extra: Vec::new(),
        }
    }
}

/// The person behind a request, as far as the intranet's session tells. Read it through its
/// accessors: a detail the session does not give is `None` (which ones a route or an app
/// needs is decided where they are used).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The intranet's id for the person (`sub` by default).
    pub(crate) id: String,
    /// Email address.
    pub(crate) email: String,
    /// Given name (split from `name` when only that is present).
    pub(crate) first_name: String,
    /// Family name.
    pub(crate) last_name: String,
    /// Display name (joined from first and last name when absent).
    pub(crate) name: String,
    /// Login name.
    pub(crate) username: String,
    /// Groups or roles.
    pub(crate) groups: Vec<String>,
    /// A picture URL (`picture` in OpenID Connect).
    pub(crate) profile_pic: String,
    /// A phone number without the country code, as text.
    pub(crate) phone_no: String,
    /// The country calling code without `+`, as text.
    pub(crate) phone_code: String,
    /// Claims apps asked for, with their JSON type kept, keyed by claim path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) extra: BTreeMap<String, Value>,
    /// When the intranet session ends (its token's `exp`, Unix seconds), if it says.
    #[serde(skip)]
    pub(crate) session_expires: Option<u64>,
    /// The identity headers' values, made on the first request that sends them.
    #[serde(skip)]
    pub(crate) header_values: HeaderValuesMemo,
}

/// The values of a person's identity headers, made once: the person is shared (`Arc`) from
/// the session cache to every request it recognises, so each later request clones them (a
/// reference count each) instead of joining the groups and copying five values again. Not
/// part of who the person is: any two compare equal, and a clone starts empty (a clone may be
/// changed; the person it was made from is not, once shared).
#[derive(Default)]
pub(crate) struct HeaderValuesMemo(std::sync::OnceLock<[Option<http::HeaderValue>; 5]>);

impl HeaderValuesMemo {
    pub(crate) fn get_or_init(
        &self,
        make: impl FnOnce() -> [Option<http::HeaderValue>; 5],
    ) -> &[Option<http::HeaderValue>; 5] {
        self.0.get_or_init(make)
    }
}

impl Clone for HeaderValuesMemo {
    fn clone(&self) -> Self {
        HeaderValuesMemo::default()
    }
}

impl PartialEq for HeaderValuesMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for HeaderValuesMemo {}

impl std::fmt::Debug for HeaderValuesMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "made"
        } else {
            "not yet made"
        })
    }
}

/// `None` for an empty detail.
fn given(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

impl Identity {
    /// The intranet's id for the person (`sub` by default).
    pub fn id(&self) -> Option<&str> {
        given(&self.id)
    }

    /// Email address.
    pub fn email(&self) -> Option<&str> {
        given(&self.email)
    }

    /// Given name (split from `name` when only that is present).
    pub fn first_name(&self) -> Option<&str> {
        given(&self.first_name)
    }

    /// Family name.
    pub fn last_name(&self) -> Option<&str> {
        given(&self.last_name)
    }

    /// Display name (joined from first and last name when absent).
    pub fn name(&self) -> Option<&str> {
        given(&self.name)
    }

    /// Login name.
    pub fn username(&self) -> Option<&str> {
        given(&self.username)
    }

    /// Groups or roles (empty when the session names none).
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// A picture URL (`picture` in OpenID Connect).
    pub fn profile_pic(&self) -> Option<&str> {
        given(&self.profile_pic)
    }

    /// A phone number without the country code.
    pub fn phone_no(&self) -> Option<&str> {
        given(&self.phone_no)
    }

    /// The country calling code without `+`.
    pub fn phone_code(&self) -> Option<&str> {
        given(&self.phone_code)
    }

    /// Claims apps asked for (`user_fields`), with their JSON type kept, by claim path.
    pub fn extra(&self) -> &BTreeMap<String, Value> {
        &self.extra
    }
}

impl ClaimMapping {
    /// Builds the identity from verified claims. Never fails: a missing claim is an empty field.
    pub fn identity(&self, claims: &Map<String, Value>) -> Identity {
        let text = |p: &ClaimPath| p.find(claims).map(scalar_text).unwrap_or_default();
        let mut first_name = text(&self.first_name);
        let mut last_name = text(&self.last_name);
        let mut name = text(&self.name);
        if first_name.is_empty() && last_name.is_empty() && !name.is_empty() {
            (first_name, last_name) = split_name(&name);
        }
        if name.is_empty() {
            name = [first_name.as_str(), last_name.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
        }
        Identity {
            id: text(&self.id),
            email: text(&self.email),
            first_name,
            last_name,
            name,
            username: text(&self.username),
            groups: self.groups.find(claims).map(group_list).unwrap_or_default(),
            profile_pic: text(&self.profile_pic),
            phone_no: text(&self.phone_no),
            phone_code: text(&self.phone_code).trim_start_matches('+').to_string(),
            extra: self
                .extra
                .iter()
                .filter_map(|p| p.find(claims).map(|v| (p.as_str().to_string(), v.clone())))
                .collect(),
            session_expires: claims.get("exp").and_then(Value::as_u64),
            header_values: HeaderValuesMemo::default(),
        }
    }
}

/// A string, number or boolean claim as text; anything else (objects, arrays, null) is empty.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Groups come as an array of strings (the usual shape) or one string holding one group. Group
/// names are kept exactly as the token spells them (no trimming): `allow` compares them exactly.
fn group_list(v: &Value) -> Vec<String> {
    let group = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => scalar_text(other),
    };
    match v {
        Value::Array(items) => items.iter().map(group).filter(|s| !s.is_empty()).collect(),
        other => {
            let one = group(other);
            if one.is_empty() {
                Vec::new()
            } else {
                vec![one]
            }
        }
    }
}

/// "Ada King Lovelace" → ("Ada King", "Lovelace"); a single word is a first name.
fn split_name(full: &str) -> (String, String) {
    let full = full.split_whitespace().collect::<Vec<_>>().join(" ");
    match full.rsplit_once(' ') {
        Some((first, last)) => (first.to_string(), last.to_string()),
        None => (full, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn header_values_are_made_once_and_a_clone_makes_its_own() {
        let ada = Identity {
            email: "ada@corp.example".into(),
            ..Identity::default()
        };
        let value = |who: &Identity| {
            let mut made = 0;
            let email = who.header_values.get_or_init(|| {
                made += 1;
                let mut values: [Option<http::HeaderValue>; 5] = Default::default();
                values[1] = http::HeaderValue::from_str(&who.email).ok();
                values
            })[1]
                .clone();
            (email, made)
        };
        assert_eq!(
            value(&ada),
            (Some("ada@corp.example".try_into().unwrap()), 1)
        );
        assert_eq!(value(&ada).1, 0, "the second request reuses them");
        // A clone that is then changed does not carry the old person's values.
        let mut grace = ada.clone();
        grace.email = "grace@corp.example".into();
        assert_eq!(value(&grace).0.unwrap(), "grace@corp.example");
        assert_eq!(
            ada,
            ada.clone(),
            "the memo is not part of who the person is"
        );
    }

    #[test]
    fn oidc_defaults_map_every_field() {
        let id = ClaimMapping::default().identity(&claims(json!({
            "sub": "u-1", "email": "ada@corp.example", "given_name": "Ada",
            "family_name": "Lovelace", "preferred_username": "ada", "groups": ["eng", "ai"]
        })));
        assert_eq!(id.id, "u-1");
        assert_eq!(id.email, "ada@corp.example");
        assert_eq!(id.name, "Ada Lovelace");
        assert_eq!(id.username, "ada");
        assert_eq!(id.groups, vec!["eng", "ai"]);
    }

    #[test]
    fn name_is_split_only_when_first_and_last_are_absent() {
        let m = ClaimMapping::default();
        let id = m.identity(&claims(json!({"name": "  Ada  King Lovelace "})));
        assert_eq!(
            (id.first_name.as_str(), id.last_name.as_str()),
            ("Ada King", "Lovelace")
        );
        let id = m.identity(&claims(json!({"name": "Cher"})));
        assert_eq!(
            (id.first_name.as_str(), id.last_name.as_str()),
            ("Cher", "")
        );
        let id = m.identity(&claims(json!({"name": "A B", "given_name": "Z"})));
        assert_eq!((id.first_name.as_str(), id.last_name.as_str()), ("Z", ""));
    }

    #[test]
    fn dotted_paths_numbers_and_exact_dotted_names() {
        let m = ClaimMapping {
            id: ClaimPath::new("uid"),
            groups: ClaimPath::new("realm_access.roles"),
            email: ClaimPath::new("https://corp.example/email"),
            ..ClaimMapping::default()
        };
        let id = m.identity(&claims(json!({
            "uid": 42, "realm_access": {"roles": ["a", 7, null]},
            "https://corp.example/email": "x@corp.example"
        })));
        assert_eq!(id.id, "42");
        assert_eq!(id.groups, vec!["a", "7"]);
        assert_eq!(id.email, "x@corp.example");
    }

    #[test]
    fn odd_claim_shapes_give_empty_fields_not_panics() {
        let id = ClaimMapping::default().identity(&claims(json!({
            "sub": {"nested": true}, "email": ["a"], "groups": "solo", "name": null
        })));
        assert_eq!(id.id, "");
        assert_eq!(id.email, "");
        assert_eq!(id.groups, vec!["solo"]);
    }
}
