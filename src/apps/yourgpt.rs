//! YourGPT Custom SSO (the protocol: README, `[apps.NAME]`): mint → verify → redirect, or on 404 the
//! email-confirmation path.
//!
//! Undocumented points, each one place to change: the effective code is the body's integer
//! `code` when present, else the HTTP status ([`parse_answer`]); the email rate limit is per
//! client id ([`super::limits`]).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::limits::{EmailLimit, ResendWindow};
use super::mint::mint_hs256;
use super::{HandoffOutcome, IdentityField, VendorFailure};
use crate::config::YourGptSettings;
use crate::identity::Identity;
use crate::outbound::{read_capped, FetchError};

/// Vendor answers larger than this are not read further (a JSON answer is ~100 bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One YourGPT organisation: its settings, one pooled HTTP client, and the email limits.
pub struct YourGpt {
    settings: YourGptSettings,
    /// `login_url`, parsed once: the pages a person is sent to are built on it.
    login: url::Url,
    http: reqwest::Client,
    /// `handoff_vendor_request_duration_seconds` for this app: verify, send_email.
    timings: Option<[prometheus::Histogram; 2]>,
    emails: Arc<EmailLimit>,
    recent: ResendWindow,
}

/// What YourGPT answered, read the safe way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The body's integer `code` when present, else the HTTP status.
    pub code: i64,
    pub success_type: bool,
    pub token: Option<String>,
    pub message: Option<String>,
}

impl Answer {
    fn is_success(&self) -> bool {
        self.code == 200 && self.success_type
    }
}

/// Reads a YourGPT answer whatever its status. A body that is not a JSON object is `None`
/// (an HTML error page from a load balancer, say).
pub fn parse_answer(status: u16, body: &[u8]) -> Option<Answer> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let code = match object.get("code") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(i64::from(status)),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(i64::from(status)),
        _ => i64::from(status),
    };
    let text = |k: &str| {
        object
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Some(Answer {
        code,
        success_type: object.get("type").and_then(Value::as_str) == Some("RXSUCCESS"),
        token: text("token"),
        message: text("message"),
    })
}

/// The two YourGPT calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Verify,
    SendEmail,
}

impl Call {
    pub fn label(self) -> &'static str {
        match self {
            Call::Verify => "verify",
            Call::SendEmail => "send_email",
        }
    }

    /// What a code most likely means, for the operator's log line.
    pub fn likely_cause(self, code: i64) -> &'static str {
        match (self, code) {
            (_, 400) => "YourGPT refused the request parameters (vendor-side)",
            (_, 401) => "wrong client_id",
            (_, 402) => "wrong secret, clock skew, or an expired token",
            (Call::Verify, 403) => {
                "the identity lacks email or names: check the [identity] claim mapping"
            }
            (Call::SendEmail, 403) => "YourGPT's email limit was reached",
            (Call::SendEmail, 404) => "YourGPT could not send the invitation",
            (_, 500) => "YourGPT had an internal error (vendor-side)",
            _ => "an answer YourGPT does not document",
        }
    }
}

impl YourGpt {
    /// `emails` is the confirmation-email limit of this app's client id, `recent` its resend
    /// window (see [`super::limits::EmailLimits`]).
    pub fn new(
        settings: YourGptSettings,
        emails: Arc<EmailLimit>,
        recent: ResendWindow,
    ) -> Result<Self, String> {
        let http = crate::outbound::client(
            "YourGPT",
            settings.timeout,
            Some(settings.connect_timeout),
            0,
        )?;
        let login = url::Url::parse(&settings.login_url)
            .map_err(|e| format!("login_url is not a URL: {e}"))?;
        Ok(YourGpt {
            login,
            timings: None,
            emails,
            recent,
            settings,
            http,
        })
    }

    /// `[apps.NAME.widget]`, when the chatbot widget is signed in.
    pub fn widget_settings(&self) -> Option<&crate::config::YourGptWidgetSettings> {
        self.settings.widget.as_ref()
    }

    /// Times every API call into `seconds{app, call}`.
    pub fn timed(mut self, seconds: &prometheus::HistogramVec, app: &str) -> Self {
        let of = |call: Call| seconds.with_label_values(&[app, call.label()]);
        self.timings = Some([of(Call::Verify), of(Call::SendEmail)]);
        self
    }

    /// The fields YourGPT requires that this person lacks.
    pub fn missing_fields(identity: &Identity) -> Vec<IdentityField> {
        [
            (IdentityField::Email, &identity.email),
            (IdentityField::FirstName, &identity.first_name),
            (IdentityField::LastName, &identity.last_name),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k)
        .collect()
    }

    /// The claims YourGPT reads: the three required ones and the optional ones the identity has.
    pub fn claims(identity: &Identity) -> Map<String, Value> {
        let mut claims = Map::new();
        for (k, v) in [
            ("email", &identity.email),
            ("first_name", &identity.first_name),
            ("last_name", &identity.last_name),
            ("username", &identity.username),
            ("profile_pic", &identity.profile_pic),
            ("phone_no", &identity.phone_no),
            ("phone_code", &identity.phone_code),
        ] {
            if !v.is_empty() {
                claims.insert(k.into(), v.clone().into());
            }
        }
        claims
    }

    /// Hands one person on: the whole flow, ending in an outcome the gateway turns into a page
    /// or a redirect.
    pub async fn handoff(&self, identity: &Identity) -> HandoffOutcome {
        let missing = Self::missing_fields(identity);
        if !missing.is_empty() {
            return HandoffOutcome::MissingIdentity(missing);
        }
        let s = &self.settings;
        let token = match mint_hs256(Self::claims(identity), s.secret.expose(), s.token_ttl) {
            Ok(t) => t,
            Err(e) => return HandoffOutcome::Internal(e),
        };
        let verify_url = format!("{}/api/v1/verify/custom-sso", s.api_url);
        let request = self
            .http
            .post(verify_url)
            .query(&[("token", token.as_str()), ("sso_client_id", &s.client_id)]);
        let answer = match self.call(Call::Verify, request).await {
            Ok(a) => a,
            Err(failure) => return HandoffOutcome::Vendor(failure),
        };
        if answer.is_success() {
            return match answer.token {
                Some(t) => HandoffOutcome::Redirect(self.process_login(&[("token", &t)])),
                None => HandoffOutcome::Vendor(VendorFailure::Garbled {
                    call: Call::Verify.label(),
                    detail: "success without a token".to_string(),
                }),
            };
        }
        if answer.code != 404 {
            return HandoffOutcome::Vendor(rejected(Call::Verify, &answer));
        }
        self.confirm_by_email(identity, &token).await
    }

    /// YourGPT's `process-login` page under `login_url`, with `query`: each value
    /// percent-encoded whole (no `+` for a space, which `decodeURIComponent` would keep), set
    /// through the URL type, so a token holding `&`, `#` or `@` stays one value on YourGPT's
    /// host.
    fn process_login(&self, query: &[(&str, &str)]) -> String {
        let mut url = self.login.clone();
        let base = self.login.path().trim_end_matches('/');
        url.set_path(&format!("{base}/process-login"));
        let pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        url.set_query(Some(&pairs.join("&")));
        url.into()
    }

    /// YourGPT knows the address but wants it confirmed: send its confirmation email, within
    /// the rate limit, at most once per person per resend window.
    async fn confirm_by_email(&self, identity: &Identity, token: &str) -> HandoffOutcome {
        let s = &self.settings;
        let who = identity.email.to_lowercase();
        // Claimed before the call: a second click while the first email is on its way finds
        // the window taken (single flight per person, across the fleet with `[state]`).
        let Some(claim) = self.recent.claim(&who).await else {
            return HandoffOutcome::EmailAlreadySent;
        };
        if let Err(wait) = self.emails.try_acquire().await {
            self.recent.release(claim).await;
            return HandoffOutcome::RetryLater {
                seconds: wait.as_secs().max(1),
            };
        }
        let mut body = serde_json::json!({ "token": token, "sso_client_id": s.client_id });
        if let Some(partner) = &s.partner_id {
            body["partner_id"] = partner.clone().into();
        }
        let url = format!("{}/api/v1/sendConfirmLoginAccessEmail", s.api_url);
        let request = self.http.post(url).json(&body);
        let outcome = match self.call(Call::SendEmail, request).await {
            Ok(a) if a.is_success() => {
                return HandoffOutcome::EmailSent(
                    self.process_login(&[("should-verify-email", "true")]),
                )
            }
            Ok(a) if a.code == 403 => HandoffOutcome::RetryLater { seconds: 60 },
            Ok(a) => HandoffOutcome::Vendor(rejected(Call::SendEmail, &a)),
            Err(failure) => HandoffOutcome::Vendor(failure),
        };
        // No email went out.
        self.recent.release(claim).await;
        outcome
    }

    /// Sends one call and reads its answer, capped in size, as [`parse_answer`] says.
    async fn call(
        &self,
        call: Call,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, VendorFailure> {
        let _timer = self.timings.as_ref().map(|t| {
            t[match call {
                Call::Verify => 0,
                Call::SendEmail => 1,
            }]
            .start_timer()
        });
        let label = call.label();
        let failed = |e: FetchError| match e {
            FetchError::Timeout => VendorFailure::Timeout { call: label },
            FetchError::Unreachable(detail) => VendorFailure::Unreachable {
                call: label,
                detail,
            },
            other => VendorFailure::Garbled {
                call: label,
                detail: other.to_string(),
            },
        };
        let response = request
            .send()
            .await
            .map_err(|e| failed(FetchError::from_reqwest(e)))?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(failed)?;
        parse_answer(status, &body).ok_or_else(|| VendorFailure::Garbled {
            call: label,
            detail: format!("HTTP {status} with a body that is not a JSON object"),
        })
    }
}

fn rejected(call: Call, answer: &Answer) -> VendorFailure {
    VendorFailure::Rejected {
        call: call.label(),
        code: answer.code,
        likely_cause: call.likely_cause(answer.code),
        message: answer.message.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_code_is_the_body_code_else_the_status() {
        let a = parse_answer(
            200,
            br#"{"type":"RXERROR","message":"Invalid SSO token","code":402}"#,
        )
        .unwrap();
        assert_eq!((a.code, a.success_type), (402, false));
        let a = parse_answer(401, br#"{"type":"RXERROR","message":"x"}"#).unwrap();
        assert_eq!(a.code, 401);
        let a = parse_answer(200, br#"{"type":"RXSUCCESS","token":"t","code":200}"#).unwrap();
        assert!(a.is_success());
        assert_eq!(a.token.as_deref(), Some("t"));
        let a = parse_answer(200, br#"{"type":"RXSUCCESS","code":"404"}"#).unwrap();
        assert_eq!(a.code, 404);
        // Success needs both 200 and RXSUCCESS.
        assert!(!parse_answer(200, br#"{"code":200}"#).unwrap().is_success());
        assert!(!parse_answer(500, br#"{"type":"RXSUCCESS"}"#)
            .unwrap()
            .is_success());
    }

    #[test]
    fn non_json_answers_are_none_not_panics() {
        assert_eq!(parse_answer(502, b"<html>Bad gateway</html>"), None);
        assert_eq!(parse_answer(200, b""), None);
        assert_eq!(parse_answer(200, b"[1,2]"), None);
        assert_eq!(parse_answer(200, b"\xff\xfe"), None);
        // A number JSON cannot hold is not JSON: the same as garbage.
        assert_eq!(parse_answer(200, br#"{"code":1e400}"#), None);
        // A code that is no integer (a fraction, text) is not a code: the HTTP status stands in.
        for body in [&br#"{"code":402.5}"#[..], br#"{"code":"soon"}"#] {
            let code = parse_answer(403, body).map(|a| a.code);
            assert_eq!(code, Some(403), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn claims_and_missing_fields() {
        let mut who = Identity {
            email: "a@b.c".into(),
            first_name: "Ada".into(),
            phone_code: "91".into(),
            ..Identity::default()
        };
        assert_eq!(YourGpt::missing_fields(&who), vec![IdentityField::LastName]);
        who.last_name = "L".into();
        assert!(YourGpt::missing_fields(&who).is_empty());
        let claims = YourGpt::claims(&who);
        assert_eq!(claims["phone_code"], "91");
        assert!(!claims.contains_key("username"));
    }
}
