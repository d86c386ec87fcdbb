//! Per-route allow rules: who may pass once they are recognised.

use crate::identity::Identity;

/// A route's `allow` table. A person passes when any one rule matches: their email is listed,
/// their email's domain is listed, or they are in a listed group. Emails and domains compare
/// without regard to case; groups compare exactly (case and whitespace included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowRules {
    emails: Vec<String>,
    domains: Vec<String>,
    groups: Vec<String>,
}

/// Why a person was turned away, in words the page can show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub explanation: String,
}

impl AllowRules {
    /// Normalises the lists: lowercases emails and domains, drops a leading `@` from domains.
    pub fn new(emails: Vec<String>, domains: Vec<String>, groups: Vec<String>) -> Self {
        AllowRules {
            emails: emails
                .into_iter()
                .map(|e| e.trim().to_lowercase())
                .collect(),
            domains: domains
                .into_iter()
                .map(|d| d.trim().trim_start_matches('@').to_lowercase())
                .collect(),
            groups,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.domains.is_empty() && self.groups.is_empty()
    }

    /// Decides for one person.
    pub fn check(&self, who: &Identity) -> Result<(), Denial> {
        let email = who.email.to_lowercase();
        if !email.is_empty() {
            if self.emails.contains(&email) {
                return Ok(());
            }
            if let Some((_, domain)) = email.rsplit_once('@') {
                if self.domains.iter().any(|d| d == domain) {
                    return Ok(());
                }
            }
        }
        if who.groups.iter().any(|g| self.groups.contains(g)) {
            return Ok(());
        }
        Err(Denial {
            explanation: self.explain(),
        })
    }

    fn explain(&self) -> String {
        let mut parts = Vec::new();
        if !self.groups.is_empty() {
            parts.push(format!("members of {}", list(&self.groups)));
        }
        if !self.domains.is_empty() {
            let at: Vec<String> = self.domains.iter().map(|d| format!("@{d}")).collect();
            parts.push(format!("people with an address ending in {}", list(&at)));
        }
        if !self.emails.is_empty() {
            parts.push("a list of named people".to_string());
        }
        format!("This page is open to {}.", parts.join(", or "))
    }
}

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(email: &str, groups: &[&str]) -> Identity {
        Identity {
            email: email.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn any_rule_admits() {
        let rules = AllowRules::new(
            vec!["Boss@Corp.Example".into()],
            vec!["@eng.example".into()],
            vec!["ai-users".into()],
        );
        assert!(rules.check(&who("boss@corp.example", &[])).is_ok());
        assert!(rules.check(&who("x@ENG.example", &[])).is_ok());
        assert!(rules.check(&who("", &["ai-users"])).is_ok());
        assert!(rules.check(&who("x@corp.example", &["other"])).is_err());
    }

    #[test]
    fn domain_match_is_exact_not_suffix() {
        let rules = AllowRules::new(vec![], vec!["corp.example".into()], vec![]);
        assert!(rules.check(&who("a@evilcorp.example", &[])).is_err());
        assert!(rules.check(&who("a@corp.example.evil", &[])).is_err());
        assert!(rules.check(&who("corp.example", &[])).is_err());
    }

    #[test]
    fn group_names_are_case_sensitive_and_explained() {
        let rules = AllowRules::new(vec![], vec![], vec!["AI".into(), "eng".into()]);
        let denial = rules.check(&who("a@b.c", &["ai"])).unwrap_err();
        assert_eq!(
            denial.explanation,
            "This page is open to members of AI or eng."
        );
    }
}
