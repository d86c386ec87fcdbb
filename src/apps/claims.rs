//! A claims template: what an app's token (or DiscourseConnect payload) says about the person,
//! written in the config as claim name → where the value comes from.
//!
//! ```toml
//! [apps.support.claims]
//! email = "email"                                  # an [identity] field, required
//! external_id = { field = "id" }                   # the same, as a table
//! tags = { field = "groups", optional = true }     # left out when the person has none
//! department = { claim = "dept", optional = true } # a session claim as it is (JSON type kept)
//! organization = { value = "Acme" }                # a constant
//! ```
//!
//! A required value the person lacks stops the handoff before anything is signed (a 422 page
//! naming it); an optional one is left out of the token.

use serde_json::{Map, Value};

use crate::identity::{ClaimMapping, ClaimPath, Identity};

/// A field of the person, as `[identity]` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonField {
    Id,
    Email,
    FirstName,
    LastName,
    Name,
    Username,
    Groups,
    ProfilePic,
    PhoneNo,
    PhoneCode,
}

impl PersonField {
    /// Every field, in `[identity]`'s order.
    pub const ALL: [PersonField; 10] = [
        PersonField::Id,
        PersonField::Email,
        PersonField::FirstName,
        PersonField::LastName,
        PersonField::Name,
        PersonField::Username,
        PersonField::Groups,
        PersonField::ProfilePic,
        PersonField::PhoneNo,
        PersonField::PhoneCode,
    ];

    /// Its `[identity]` key.
    pub fn key(self) -> &'static str {
        match self {
            PersonField::Id => "id",
            PersonField::Email => "email",
            PersonField::FirstName => "first_name",
            PersonField::LastName => "last_name",
            PersonField::Name => "name",
            PersonField::Username => "username",
            PersonField::Groups => "groups",
            PersonField::ProfilePic => "profile_pic",
            PersonField::PhoneNo => "phone_no",
            PersonField::PhoneCode => "phone_code",
        }
    }

    pub fn parse(key: &str) -> Option<PersonField> {
        PersonField::ALL.into_iter().find(|f| f.key() == key)
    }

    /// How the person's page names it.
    pub fn described(self) -> &'static str {
        match self {
            PersonField::Id => "your user id",
            PersonField::Email => "your email address",
            PersonField::FirstName => "your first name",
            PersonField::LastName => "your last name",
            PersonField::Name => "your name",
            PersonField::Username => "your user name",
            PersonField::Groups => "your groups",
            PersonField::ProfilePic => "your picture",
            PersonField::PhoneNo => "your phone number",
            PersonField::PhoneCode => "your phone's country code",
        }
    }

    /// The session claim it is read from.
    pub fn claim(self, mapping: &ClaimMapping) -> &str {
        match self {
            PersonField::Id => mapping.id.as_str(),
            PersonField::Email => mapping.email.as_str(),
            PersonField::FirstName => mapping.first_name.as_str(),
            PersonField::LastName => mapping.last_name.as_str(),
            PersonField::Name => mapping.name.as_str(),
            PersonField::Username => mapping.username.as_str(),
            PersonField::Groups => mapping.groups.as_str(),
            PersonField::ProfilePic => mapping.profile_pic.as_str(),
            PersonField::PhoneNo => mapping.phone_no.as_str(),
            PersonField::PhoneCode => mapping.phone_code.as_str(),
        }
    }

    /// The person's value: a string, or for groups an array of strings; `None` when empty.
    fn value(self, who: &Identity) -> Option<Value> {
        let text = match self {
            PersonField::Groups => {
                return (!who.groups.is_empty()).then(|| who.groups.clone().into());
            }
            PersonField::Id => &who.id,
            PersonField::Email => &who.email,
            PersonField::FirstName => &who.first_name,
            PersonField::LastName => &who.last_name,
            PersonField::Name => &who.name,
            PersonField::Username => &who.username,
            PersonField::ProfilePic => &who.profile_pic,
            PersonField::PhoneNo => &who.phone_no,
            PersonField::PhoneCode => &who.phone_code,
        };
        (!text.is_empty()).then(|| text.clone().into())
    }
}

/// Where one claim's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimSource {
    /// A field of the person (`[identity]`).
    Field(PersonField),
    /// A session claim as it is, JSON type kept (read into [`Identity::extra`]).
    Claim(ClaimPath),
    /// The same for everyone.
    Value(Value),
}

/// One line of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRule {
    /// The claim's name in the app's token.
    pub name: String,
    pub source: ClaimSource,
    /// Left out when the person has no value (else the handoff stops with a 422).
    pub optional: bool,
}

/// What a person lacks for a template: the app's claim and where it would come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The claim in the app's token (`email`).
    pub claim: String,
    /// How the person's page names it (`your email address`).
    pub described: &'static str,
    /// The session claim it is read from, for the operator's log line.
    pub session_claim: String,
}

/// The claims template of an app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimTemplate {
    pub rules: Vec<ClaimRule>,
}

impl ClaimTemplate {
    /// The session claims the template reads as they are (for `[identity]`'s extra claims).
    pub fn session_claims(&self) -> impl Iterator<Item = &ClaimPath> {
        self.rules.iter().filter_map(|r| match &r.source {
            ClaimSource::Claim(path) => Some(path),
            _ => None,
        })
    }

    /// The person's claims, or every required one they lack.
    pub fn fill(
        &self,
        who: &Identity,
        mapping: &ClaimMapping,
    ) -> Result<Map<String, Value>, Vec<Missing>> {
        let mut claims = Map::new();
        let mut missing = Vec::new();
        for rule in &self.rules {
            let value = match &rule.source {
                ClaimSource::Field(field) => field.value(who),
                ClaimSource::Claim(path) => who
                    .extra
                    .get(path.as_str())
                    .filter(|v| !is_empty(v))
                    .cloned(),
                ClaimSource::Value(v) => Some(v.clone()),
            };
            match value {
                Some(v) => {
                    claims.insert(rule.name.clone(), v);
                }
                None if rule.optional => {}
                None => missing.push(match &rule.source {
                    ClaimSource::Field(field) => Missing {
                        claim: rule.name.clone(),
                        described: field.described(),
                        session_claim: field.claim(mapping).to_string(),
                    },
                    ClaimSource::Claim(path) => Missing {
                        claim: rule.name.clone(),
                        described: "a detail of your profile",
                        session_claim: path.as_str().to_string(),
                    },
                    ClaimSource::Value(_) => unreachable!("a constant always has its value"),
                }),
            }
        }
        if missing.is_empty() {
            Ok(claims)
        } else {
            Err(missing)
        }
    }
}

/// `null`, `""`, `[]` and `{}` are no value.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ada() -> Identity {
        Identity {
            id: "u-1".into(),
            email: "ada@corp.example".into(),
            name: "Ada Lovelace".into(),
            groups: vec!["eng".into(), "ai".into()],
            extra: [("dept".to_string(), json!(42))].into_iter().collect(),
            ..Identity::default()
        }
    }

    fn rule(name: &str, source: ClaimSource, optional: bool) -> ClaimRule {
        ClaimRule {
            name: name.into(),
            source,
            optional,
        }
    }

    #[test]
    fn fields_claims_and_constants_fill_their_types() {
        let t = ClaimTemplate {
            rules: vec![
                rule("email", ClaimSource::Field(PersonField::Email), false),
                rule("tags", ClaimSource::Field(PersonField::Groups), true),
                rule("dept", ClaimSource::Claim(ClaimPath::new("dept")), false),
                rule("organization", ClaimSource::Value(json!("Acme")), false),
                rule("phone", ClaimSource::Field(PersonField::PhoneNo), true),
            ],
        };
        let claims = t.fill(&ada(), &ClaimMapping::default()).unwrap();
        assert_eq!(
            Value::Object(claims),
            json!({"email": "ada@corp.example", "tags": ["eng", "ai"], "dept": 42, "organization": "Acme"})
        );
    }

    #[test]
    fn every_missing_required_value_is_named_with_its_session_claim() {
        let t = ClaimTemplate {
            rules: vec![
                rule(
                    "first_name",
                    ClaimSource::Field(PersonField::FirstName),
                    false,
                ),
                rule("email", ClaimSource::Field(PersonField::Email), false),
                rule("team", ClaimSource::Claim(ClaimPath::new("team")), false),
                rule("avatar", ClaimSource::Field(PersonField::ProfilePic), true),
            ],
        };
        let missing = t.fill(&ada(), &ClaimMapping::default()).unwrap_err();
        let names: Vec<(&str, &str)> = missing
            .iter()
            .map(|m| (m.claim.as_str(), m.session_claim.as_str()))
            .collect();
        assert_eq!(names, [("first_name", "given_name"), ("team", "team")]);
    }
}
