//! Handing a recognised person on to a SaaS app, already logged in.
//!
//! Each app is a small connector, testable without Pingora: from an [`Identity`] to a
//! [`HandoffOutcome`]. [`App::reply`] turns an outcome into what the person sees and writes the
//! one log line the operator needs; it never shows or logs a token.

pub mod claims;
pub mod contact;
pub mod deep_link;
pub mod discourse;
pub mod inflate;
pub mod jwt_link;
pub mod limits;
pub mod mint;
pub mod typingmind;
pub mod widget;
pub mod yourgpt;

use std::sync::Arc;

use crate::config::{AppKind, AppSettings};
use crate::identity::{ClaimMapping, Identity};
use crate::policy::{AllowRules, Denial};
use crate::reply::Reply;
use claims::{Missing, PersonField};
use contact::ContactSite;
use discourse::{BadSso, Discourse};
use jwt_link::JwtLink;
use limits::EmailLimits;
use typingmind::TypingMind;
use widget::WidgetTarget;
use yourgpt::YourGpt;

/// Why a person's chatbot widget is not signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoContact {
    /// The app has no `[apps.NAME.widget]`.
    NoWidget,
    /// The app (or a route into it) does not admit the person.
    Refused,
    /// The person has none of the identifiers sent (`ext_user_id`, `email`, `phone`).
    Incomplete,
}

/// What a handoff needs from the request besides the person: the part of the path after the
/// route's prefix, and the query (TypingMind keeps both in its deep links).
#[derive(Debug, Clone, Default)]
pub struct HandoffRequest<'a> {
    pub tail: &'a str,
    pub query: Option<&'a str>,
}

/// How a handoff ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffOutcome {
    /// Send the browser here (it may carry a token: never logged).
    Redirect(String),
    /// Post these fields (a token among them: never logged) to `action` from a page that
    /// submits itself.
    FormPost {
        action: String,
        fields: Vec<(String, String)>,
    },
    /// DiscourseConnect without the forum's request yet: send the browser to the forum, which
    /// sends it back with a nonce (no token in it).
    NonceRequest(String),
    /// The identity lacks fields the app requires; nothing was sent to the app.
    MissingIdentity(Vec<IdentityField>),
    /// The identity lacks claims the app's template requires; nothing was signed.
    MissingClaims(Vec<Missing>),
    /// The forum's DiscourseConnect request does not check out; nothing was signed.
    BadSso(BadSso),
    /// The app sent its confirmation email just now; send the browser to the app's page that
    /// says so (no token in it).
    EmailSent(String),
    /// The app sent its confirmation email a moment ago (or is sending it): no second one; the
    /// person should look for it.
    EmailAlreadySent,
    /// A limit was hit; try again in this many seconds.
    RetryLater { seconds: u64 },
    /// The app's API failed or refused.
    Vendor(VendorFailure),
    /// The deep link, built on the app's URL, would not be on the app's own origin (a crafted
    /// link): a 400 page, and nothing was minted.
    OffSite,
    /// Something on our side (e.g. signing) failed.
    Internal(String),
}

impl HandoffOutcome {
    /// `(outcome, code)`: the one name of how a handoff ended, used alike by the metrics
    /// (`handoff_handoffs_total`), the access log, the operator's log line and the page's error
    /// code — `redirected` (code: `form_post` for a posted token, `nonce_request` for a
    /// person sent to their forum to start DiscourseConnect), `email_sent`,
    /// `email_already_sent`, `rate_limited`, `identity_incomplete`, `off_site_link`,
    /// `invalid_sso_request`, `vendor_error` (code: the vendor's error code, or `garbled`),
    /// `vendor_unreachable` (code: `timeout`, `connect`), `internal_error`.
    pub fn labels(&self) -> (&'static str, String) {
        match self {
            HandoffOutcome::Redirect(_) => ("redirected", String::new()),
            HandoffOutcome::FormPost { .. } => ("redirected", "form_post".to_string()),
            HandoffOutcome::NonceRequest(_) => ("redirected", "nonce_request".to_string()),
            HandoffOutcome::MissingIdentity(_) | HandoffOutcome::MissingClaims(_) => {
                ("identity_incomplete", String::new())
            }
            HandoffOutcome::BadSso(_) => ("invalid_sso_request", String::new()),
            HandoffOutcome::OffSite => ("off_site_link", String::new()),
            HandoffOutcome::EmailSent(_) => ("email_sent", String::new()),
            HandoffOutcome::EmailAlreadySent => ("email_already_sent", String::new()),
            HandoffOutcome::RetryLater { .. } => ("rate_limited", String::new()),
            HandoffOutcome::Vendor(VendorFailure::Rejected { code, .. }) => {
                ("vendor_error", code.to_string())
            }
            HandoffOutcome::Vendor(VendorFailure::Garbled { .. }) => {
                ("vendor_error", "garbled".to_string())
            }
            HandoffOutcome::Vendor(VendorFailure::Timeout { .. }) => {
                ("vendor_unreachable", "timeout".to_string())
            }
            HandoffOutcome::Vendor(VendorFailure::Unreachable { .. }) => {
                ("vendor_unreachable", "connect".to_string())
            }
            HandoffOutcome::Internal(_) => ("internal_error", String::new()),
        }
    }
}

/// A detail of the person an app needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityField {
    Id,
    Email,
    FirstName,
    LastName,
    /// TypingMind's own user id (`identify_by = "id"`, read from `id_claim`).
    TypingMindId,
}

impl IdentityField {
    /// The `[identity]` field it is; `None` for TypingMind's own id (an app setting's claim).
    fn person(self) -> Option<PersonField> {
        match self {
            IdentityField::Id => Some(PersonField::Id),
            IdentityField::Email => Some(PersonField::Email),
            IdentityField::FirstName => Some(PersonField::FirstName),
            IdentityField::LastName => Some(PersonField::LastName),
            IdentityField::TypingMindId => None,
        }
    }

    /// The field's name, as the config and the operator's log line say it.
    pub fn name(self) -> &'static str {
        self.person().map_or("typingmind_id", PersonField::key)
    }

    /// How the person's page names it.
    fn described(self) -> &'static str {
        self.person()
            .map_or("your TypingMind user id", PersonField::described)
    }
}

/// What went wrong talking to the app's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorFailure {
    /// The API answered with a documented (or undocumented) error code.
    Rejected {
        call: &'static str,
        code: i64,
        likely_cause: &'static str,
        message: String,
    },
    /// The API answered something that is not its JSON.
    Garbled {
        call: &'static str,
        detail: String,
    },
    Timeout {
        call: &'static str,
    },
    Unreachable {
        call: &'static str,
        detail: String,
    },
}

/// One `[apps.NAME]`, ready to hand people on.
pub struct App {
    pub name: String,
    /// `display_name`, when set.
    display_name: Option<String>,
    connector: Connector,
    /// `[apps.NAME.allow]`.
    allow: Option<AllowRules>,
    /// The `allow` of every route into the app. The widget signs in only people the app and
    /// all of these admit (a code is a way into the app, so a person any of its routes refuses
    /// gets none).
    route_rules: Vec<AllowRules>,
    /// With `[apps.NAME.widget]` (YourGPT): the chatbot widget's tag and contact script.
    contact_site: Option<Arc<ContactSite>>,
}

enum Connector {
    YourGpt(Box<YourGpt>),
    TypingMind(Box<TypingMind>),
    JwtLink(Box<JwtLink>),
    Discourse(Box<Discourse>),
}

impl App {
    /// Builds an app; YourGPT apps take their client id's email limit from `limits` and time
    /// their API calls into `vendor_seconds`.
    pub fn new(
        settings: AppSettings,
        limits: &mut EmailLimits,
        vendor_seconds: &prometheus::HistogramVec,
        endpoints_prefix: &str,
    ) -> Result<Self, String> {
        let contact_site = match &settings.kind {
            AppKind::YourGpt(s) => s.widget.as_ref().and_then(|w| {
                ContactSite::new(w, contact_path(endpoints_prefix, &settings.name)).map(Arc::new)
            }),
            AppKind::TypingMind(_) | AppKind::JwtLink(_) | AppKind::DiscourseConnect(_) => None,
        };
        let connector = match settings.kind {
            AppKind::YourGpt(s) => {
                let key = s.secret.expose();
                let emails = limits.for_client(&s.client_id, s.emails_per_minute, key);
                let recent = limits.resend_window(s.email_resend_window, &s.client_id, key);
                let client = YourGpt::new(s, emails, recent)?.timed(vendor_seconds, &settings.name);
                Connector::YourGpt(Box::new(client))
            }
            AppKind::TypingMind(s) => Connector::TypingMind(Box::new(TypingMind::new(s))),
            AppKind::JwtLink(s) => Connector::JwtLink(Box::new(JwtLink::new(s)?)),
            AppKind::DiscourseConnect(s) => Connector::Discourse(Box::new(Discourse::new(s))),
        };
        Ok(App {
            name: settings.name,
            display_name: settings.display_name,
            connector,
            allow: settings.allow,
            route_rules: Vec::new(),
            contact_site,
        })
    }

    /// Adds the `allow` of a route into this app to the rules its widget signs in by.
    pub fn add_route_rules(&mut self, rules: &AllowRules) {
        self.route_rules.push(rules.clone());
    }

    /// Whether the app admits this person through a route with `route_allow`: both the route's
    /// and the app's own rules must let them in.
    pub fn admits(&self, who: &Identity, route_allow: Option<&AllowRules>) -> Result<(), Denial> {
        if let Some(rules) = route_allow {
            rules.check(who)?;
        }
        self.allow.as_ref().map_or(Ok(()), |rules| rules.check(who))
    }

    /// What people see the app called: its `display_name`, else the product's name.
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(self.title())
    }

    pub fn has_display_name(&self) -> bool {
        self.display_name.is_some()
    }

    /// The product name; for an app of a generic kind (`jwt_link`, `discourse_connect`),
    /// whose product the gateway does not know, its config name.
    pub fn title(&self) -> &str {
        match self.connector {
            Connector::YourGpt(_) => "YourGPT",
            Connector::TypingMind(_) => "TypingMind",
            Connector::JwtLink(_) | Connector::Discourse(_) => &self.name,
        }
    }

    /// Hands `identity` on; `mapping` names the session claims a template reads.
    pub async fn handoff(
        &self,
        identity: &Identity,
        request: &HandoffRequest<'_>,
        mapping: &ClaimMapping,
    ) -> HandoffOutcome {
        match &self.connector {
            Connector::YourGpt(c) => c.handoff(identity).await,
            Connector::TypingMind(c) => c.link(identity, request.tail, request.query),
            Connector::JwtLink(c) => c.handoff(identity, mapping, request),
            Connector::Discourse(c) => c.handoff(identity, mapping, request),
        }
    }

    /// Whether this app signs in widgets on proxied pages.
    pub fn signs_in_widgets(&self) -> bool {
        self.widget_page_cap().is_some()
    }

    /// Whether `who` may have this app's widget signed in: the app's rules and those of every
    /// route into it admit them (a widget is a way into the app).
    fn admits_widget(&self, who: &Identity) -> bool {
        self.admits(who, None).is_ok() && self.route_rules.iter().all(|r| r.check(who).is_ok())
    }

    /// The chatbot widget to sign in for this person on a page: `None` without a YourGPT
    /// widget, without a person, for a person the app refuses, or one with nothing to hash.
    pub fn contact_target(
        &self,
        identity: Option<&Identity>,
        mapping: &ClaimMapping,
    ) -> Option<Arc<ContactSite>> {
        let site = self.contact_site.as_ref()?;
        self.contact_for(identity?, mapping).ok()?;
        Some(site.clone())
    }

    /// The person's `contact:data` for this app's chatbot widget (see
    /// [`contact::contact_data`]), or why there is none; a person with no identifier is
    /// logged with the claims to map.
    pub fn contact_for(
        &self,
        who: &Identity,
        mapping: &ClaimMapping,
    ) -> Result<serde_json::Map<String, serde_json::Value>, NoContact> {
        let Connector::YourGpt(c) = &self.connector else {
            return Err(NoContact::NoWidget);
        };
        let Some(settings) = c.widget_settings() else {
            return Err(NoContact::NoWidget);
        };
        if !self.admits_widget(who) {
            return Err(NoContact::Refused);
        }
        contact::contact_data(settings, who).map_err(|missing| {
            let claims: Vec<String> = missing
                .iter()
                .map(|f| format!("{} (claim {:?})", f.label(), contact_claim(*f, mapping)))
                .collect();
            tracing::warn!(
                target: "handoff::widget", app = self.name.as_str(),
                "the chatbot widget is not signed in: the session has no value for any of {}; \
                 check the [identity] mapping",
                claims.join(", ")
            );
            NoContact::Incomplete
        })
    }

    /// Whether this app's chatbot widget answers at `path` (see [`contact_path`]).
    pub fn serves_contact_at(&self, path: &str) -> bool {
        self.contact_site
            .as_ref()
            .is_some_and(|s| s.contact_path() == path)
    }

    /// The widget rewriting target for this person: a fresh code, or `None` (remove any code)
    /// when there is no one to sign in, the app's rules refuse them, or the identity lacks
    /// what the payload needs. `None` when this app has no widget.
    pub fn widget_target(&self, identity: Option<&Identity>) -> Option<WidgetTarget> {
        let Connector::TypingMind(c) = &self.connector else {
            return None;
        };
        let s = c.settings();
        if !s.widget {
            return None;
        }
        let site = c.widget_site()?;
        let code = identity
            .filter(|who| self.admits_widget(who))
            .and_then(|who| c.mint_widget_code(who).ok());
        Some(WidgetTarget::for_site(site, code))
    }

    /// With `widget = true`, the largest page whose widget tags are rewritten
    /// (`widget_max_page_bytes`); `None` for an app without a widget.
    pub fn widget_page_cap(&self) -> Option<usize> {
        match &self.connector {
            Connector::TypingMind(c) if c.settings().widget => {
                Some(c.settings().widget_max_page_bytes)
            }
            Connector::YourGpt(c) => c.widget_settings().map(|w| w.max_page_bytes),
            _ => None,
        }
    }

    /// The claim a missing field comes from, for the operator's log line.
    fn claim_for<'m>(&'m self, field: IdentityField, mapping: &'m ClaimMapping) -> &'m str {
        if let Some(person) = field.person() {
            return person.claim(mapping);
        }
        match &self.connector {
            Connector::TypingMind(c) => match &c.settings().identify_by {
                crate::config::IdentifyBy::Id { claim } => claim.as_str(),
                _ => "?",
            },
            _ => "?",
        }
    }

    /// Turns an outcome into the response, and logs it once for the operator.
    /// `user` is the person as the logs may name them (`[log] person`).
    pub fn reply(
        &self,
        outcome: HandoffOutcome,
        identity: &Identity,
        user: &str,
        mapping: &ClaimMapping,
        html: bool,
    ) -> Reply {
        let reference = crate::pages::short_reference();
        let app = self.name.as_str();
        let title = self.display_name();
        let (label, _) = outcome.labels();
        let page = |status, heading: &str, message: String| {
            Reply::error_with_reference(html, status, label, heading, &message, Some(&reference))
        };
        match outcome {
            HandoffOutcome::Redirect(location) | HandoffOutcome::EmailSent(location) => {
                tracing::info!(target: "handoff::handoff", app, user, reference, outcome = label);
                Reply::token_redirect(location).with_reference(&reference)
            }
            HandoffOutcome::MissingIdentity(fields) => {
                let missing: Vec<Missing> = fields
                    .iter()
                    .map(|&f| Missing {
                        claim: f.name().to_string(),
                        described: f.described(),
                        session_claim: self.claim_for(f, mapping).to_string(),
                    })
                    .collect();
                self.missing_page(&missing, user, &reference, label, html)
            }
            HandoffOutcome::MissingClaims(missing) => {
                self.missing_page(&missing, user, &reference, label, html)
            }
            HandoffOutcome::FormPost { action, fields } => {
                tracing::info!(target: "handoff::handoff", app, user, reference, outcome = label, delivery = "form_post");
                Reply::form_post(title, &action, &fields).with_reference(&reference)
            }
            HandoffOutcome::NonceRequest(location) => {
                tracing::info!(
                    target: "handoff::handoff", app, user, reference, outcome = label,
                    "sent to the forum for a DiscourseConnect nonce"
                );
                // No token in it, but the forum need not see the intranet address either.
                Reply::token_redirect(location).with_reference(&reference)
            }
            HandoffOutcome::BadSso(why) => {
                tracing::warn!(
                    target: "handoff::handoff", app, user, reference, outcome = label,
                    "the forum's DiscourseConnect request was refused: {}; nothing was signed",
                    why.detail()
                );
                page(
                    400,
                    &format!("This sign-in request did not come from {title}"),
                    format!(
                        "The address you opened asks the gateway to sign you in to {title}, \
                         but the request is not one {title} made, so the gateway stopped here. \
                         Open {title} from the intranet instead."
                    ),
                )
            }
            HandoffOutcome::EmailAlreadySent => {
                tracing::info!(target: "handoff::handoff", app, user, reference, outcome = label);
                let message = format!(
                    "{title} sent a confirmation link to {} a moment ago, so no second email \
                     was sent. Open that email and follow its link to finish signing in.",
                    identity.email
                );
                if html {
                    return Reply::notice(200, "Check your email", &message)
                        .with_outcome(label)
                        .with_reference(&reference);
                }
                Reply::error(false, 200, label, "Check your email", &message)
                    .with_reference(&reference)
            }
            HandoffOutcome::RetryLater { seconds } => {
                tracing::warn!(target: "handoff::handoff", app, user, reference, outcome = label, retry_after = seconds);
                page(
                    429,
                    "Please try again shortly",
                    format!(
                        "{title} limits how many sign-in emails can be sent. \
                         Please try again in {seconds} seconds."
                    ),
                )
                .with_header("Retry-After", seconds.to_string())
            }
            HandoffOutcome::Vendor(failure) => {
                let (status, heading, message) = match &failure {
                    VendorFailure::Timeout { .. } => (
                        504,
                        format!("{title} is taking too long"),
                        format!("{title} did not answer in time. Please try again in a moment."),
                    ),
                    VendorFailure::Unreachable { .. } => (
                        502,
                        format!("{title} is not answering"),
                        format!("{title} could not be reached. Please try again in a moment."),
                    ),
                    _ => (
                        502,
                        format!("{title} could not sign you in"),
                        format!(
                            "{title} did not accept the sign-in. This is not something you can \
                             fix; if it keeps happening, give the help desk the reference below."
                        ),
                    ),
                };
                log_vendor_failure(app, user, &reference, label, &failure);
                page(status, &heading, message)
            }
            HandoffOutcome::OffSite => {
                tracing::warn!(
                    target: "handoff::handoff", app, user, reference, outcome = label,
                    "the link (its path, or the return_to it carries) would lead off the app's own site; nothing was minted"
                );
                page(
                    400,
                    &format!("This link does not lead to {title}"),
                    format!(
                        "The address you opened would send your {title} sign-in somewhere \
                         other than {title}, so the gateway stopped here. If someone sent you \
                         this link, do not use it; open {title} from the intranet instead."
                    ),
                )
            }
            HandoffOutcome::Internal(detail) => {
                tracing::error!(target: "handoff::handoff", app, user, reference, outcome = label, detail);
                page(
                    500,
                    "Something went wrong",
                    "The gateway could not prepare your sign-in. Please try again.".to_string(),
                )
            }
        }
    }
}

impl App {
    /// The 422 page for a person who lacks details the app requires, and the operator's line
    /// naming the claims to map.
    fn missing_page(
        &self,
        missing: &[Missing],
        user: &str,
        reference: &str,
        label: &'static str,
        html: bool,
    ) -> Reply {
        let claims: Vec<String> = missing
            .iter()
            .map(|m| format!("{} (claim {:?})", m.claim, m.session_claim))
            .collect();
        tracing::warn!(
            target: "handoff::handoff", app = self.name.as_str(), user, reference,
            outcome = label,
            "the session has no value for {}; check the [identity] mapping",
            claims.join(", ")
        );
        let title = self.display_name();
        // In words, with the claim the app reads, for whoever completes the profile.
        let described: Vec<String> = missing
            .iter()
            .map(|m| format!("{} ({})", m.described, m.claim))
            .collect();
        let described: Vec<&str> = described.iter().map(String::as_str).collect();
        Reply::error_with_reference(
            html,
            422,
            label,
            "Some of your details are missing",
            &format!(
                "{title} needs details your intranet profile does not provide: {}. \
                 Ask the intranet team to complete your profile, then try again.",
                human_list(&described)
            ),
            Some(reference),
        )
    }
}

fn log_vendor_failure(
    app: &str,
    user: &str,
    reference: &str,
    outcome: &str,
    failure: &VendorFailure,
) {
    match failure {
        VendorFailure::Rejected {
            call,
            code,
            likely_cause,
            message,
        } => tracing::warn!(
            target: "handoff::handoff", app, user, reference, outcome,
            call, code, vendor_message = message.as_str(), "likely cause: {likely_cause}"
        ),
        VendorFailure::Garbled { call, detail } => tracing::warn!(
            target: "handoff::handoff", app, user, reference, outcome,
            call, "the vendor answered garbage ({detail}): vendor-side trouble"
        ),
        VendorFailure::Timeout { call } => tracing::warn!(
            target: "handoff::handoff", app, user, reference, outcome,
            call, "the vendor did not answer in time"
        ),
        VendorFailure::Unreachable { call, detail } => tracing::warn!(
            target: "handoff::handoff", app, user, reference, outcome,
            call, "the vendor cannot be reached: {detail}"
        ),
    }
}

/// Where an app's chatbot widget gets its contact script: `{prefix}/yourgpt-contact/{app}.js`,
/// the app's name percent-encoded but for unreserved characters (so the path is already in
/// the normal form requests are compared in, and safe in an HTML attribute).
pub fn contact_path(endpoints_prefix: &str, app: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let name = percent_encoding::utf8_percent_encode(app, KEEP);
    format!(
        "{}/yourgpt-contact/{name}.js",
        endpoints_prefix.trim_end_matches('/')
    )
}

/// The claim a contact field comes from, for the operator's log line.
fn contact_claim(field: crate::config::ContactField, mapping: &ClaimMapping) -> &str {
    use crate::config::ContactField;
    match field {
        ContactField::Id => PersonField::Id,
        ContactField::Email => PersonField::Email,
        ContactField::Name => PersonField::Name,
        ContactField::Username => PersonField::Username,
        ContactField::Phone => PersonField::PhoneNo,
    }
    .claim(mapping)
}

/// "a, b or c".
fn human_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
