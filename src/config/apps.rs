//! `[apps.NAME]` → [`AppSettings`]: the SaaS apps people are handed on to.

use std::path::Path;
use std::time::Duration;

use super::raw::{
    RawDiscourse, RawJwtLink, RawPlainOrSecret, RawTypingMind, RawYourGpt, RawYourGptWidget,
};
use super::validate::Problems;
use super::{
    AppKind, AppSettings, ContactField, IdentifyBy, TypingMindSettings, YourGptSettings,
    YourGptWidgetSettings,
};
use crate::identity::ClaimPath;

const KINDS: &str = "\"yourgpt\", \"typingmind\", \"jwt_link\", \"discourse_connect\"";

pub(super) fn app_settings(
    name: &str,
    value: toml::Value,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<AppSettings> {
    let key = format!("apps.{name}");
    let kind = value.get("kind").and_then(toml::Value::as_str);
    match kind {
        Some("yourgpt") => {
            let mut raw = p.parse::<RawYourGpt>(&key, value)?;
            let allow = p.allow(&key, raw.allow.take());
            let display_name = display_name(&key, raw.display_name.take(), p);
            yourgpt(&key, raw, base_dir, p).map(|s| AppSettings {
                name: name.to_string(),
                display_name,
                kind: AppKind::YourGpt(s),
                allow,
            })
        }
        Some("typingmind") => {
            let mut raw = p.parse::<RawTypingMind>(&key, value)?;
            let allow = p.allow(&key, raw.allow.take());
            let display_name = display_name(&key, raw.display_name.take(), p);
            typingmind(&key, raw, base_dir, p).map(|s| AppSettings {
                name: name.to_string(),
                display_name,
                kind: AppKind::TypingMind(s),
                allow,
            })
        }
        Some("jwt_link") => {
            let mut raw = p.parse::<RawJwtLink>(&key, value)?;
            let allow = p.allow(&key, raw.allow.take());
            let display_name = display_name(&key, raw.display_name.take(), p);
            super::token_apps::jwt_link(&key, raw, base_dir, p).map(|s| AppSettings {
                name: name.to_string(),
                display_name,
                kind: AppKind::JwtLink(s),
                allow,
            })
        }
        Some("discourse_connect") => {
            let mut raw = p.parse::<RawDiscourse>(&key, value)?;
            let allow = p.allow(&key, raw.allow.take());
            let display_name = display_name(&key, raw.display_name.take(), p);
            super::token_apps::discourse(&key, raw, base_dir, p).map(|s| AppSettings {
                name: name.to_string(),
                display_name,
                kind: AppKind::DiscourseConnect(s),
                allow,
            })
        }
        Some(other) => {
            p.add(
                format!("{key}.kind"),
                format!("unknown app kind {other:?}; use one of {KINDS}"),
            );
            None
        }
        None => {
            p.add(
                format!("{key}.kind"),
                format!("missing: say which app this is ({KINDS})"),
            );
            None
        }
    }
}

/// `display_name`: shown as it is (escaped) on pages.
fn display_name(key: &str, raw: Option<String>, p: &mut Problems) -> Option<String> {
    p.page_text(&format!("{key}.display_name"), raw, 80)
}

fn yourgpt(
    key: &str,
    raw: RawYourGpt,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<YourGptSettings> {
    let before = p.error_count();
    let client_id = match raw.client_id {
        RawPlainOrSecret::Plain(id) => id,
        RawPlainOrSecret::Reference(r) => p
            .secret(&format!("{key}.client_id"), &r, base_dir)
            .map(|s| String::from_utf8_lossy(s.expose()).trim().to_string())
            .unwrap_or_default(),
    };
    if client_id.is_empty() && p.error_count() == before {
        p.add(format!("{key}.client_id"), "must not be empty");
    }
    let secret = p.secret(&format!("{key}.secret"), &raw.secret, base_dir);
    let api_url = base_url(
        &format!("{key}.api_url"),
        raw.api_url.as_deref().unwrap_or("https://api.yourgpt.ai"),
        p,
    );
    let login_url = base_url(
        &format!("{key}.login_url"),
        raw.login_url
            .as_deref()
            .unwrap_or("https://chatbot.yourgpt.ai"),
        p,
    );
    let ttl = raw.token_ttl_seconds.unwrap_or(300);
    if !(1..=3600).contains(&ttl) {
        p.add(
            format!("{key}.token_ttl_seconds"),
            format!("{ttl} is out of range: 1 to 3600 seconds"),
        );
    }
    let connect_timeout = p.positive_ms(
        &format!("{key}.connect_timeout_ms"),
        raw.connect_timeout_ms,
        3_000,
    );
    let timeout = p.positive_ms(&format!("{key}.timeout_ms"), raw.timeout_ms, 10_000);
    let emails_per_minute = raw.emails_per_minute.unwrap_or(5);
    if emails_per_minute == 0 {
        p.add(
            format!("{key}.emails_per_minute"),
            "must be at least 1 (YourGPT allows 5)",
        );
    }
    let widget = raw
        .widget
        .and_then(|w| yourgpt_widget(&format!("{key}.widget"), w, base_dir, p));
    if p.error_count() > before {
        return None;
    }
    Some(YourGptSettings {
        widget,
        client_id,
        secret: secret?,
        api_url,
        login_url,
        partner_id: raw.partner_id.filter(|s| !s.is_empty()),
        token_ttl: Duration::from_secs(ttl),
        connect_timeout,
        timeout,
        emails_per_minute,
        email_resend_window: Duration::from_secs(raw.email_resend_window_seconds.unwrap_or(60)),
    })
}

fn yourgpt_widget(
    key: &str,
    raw: RawYourGptWidget,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<YourGptWidgetSettings> {
    let before = p.error_count();
    let secret = p.secret(&format!("{key}.secret"), &raw.secret, base_dir);
    if raw.widget_ids.is_empty() {
        p.add(
            format!("{key}.widget_ids"),
            "name at least one widget id (the `data-widget` value of the widget's script tag)",
        );
    }
    for (i, id) in raw.widget_ids.iter().enumerate() {
        if id.is_empty() || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            p.add(
                format!("{key}.widget_ids[{i}]"),
                format!("{id:?} is not a widget id"),
            );
        }
    }
    let field = |k: &str, raw: &str, p: &mut Problems| {
        let found = ContactField::parse(raw);
        if found.is_none() {
            p.add(
                k.to_string(),
                format!("{raw:?} is not a field; use \"id\", \"email\", \"name\", \"username\" or \"phone\""),
            );
        }
        found
    };
    let ext_user_id = match raw.ext_user_id.as_deref().unwrap_or("id") {
        "none" => None,
        other => field(&format!("{key}.ext_user_id"), other, p),
    };
    let fields: Vec<ContactField> = raw
        .fields
        .unwrap_or_else(|| vec!["email".into(), "name".into(), "phone".into()])
        .iter()
        .enumerate()
        .filter_map(|(i, f)| field(&format!("{key}.fields[{i}]"), f, p))
        .collect();
    if fields.contains(&ContactField::Id) {
        p.add(
            format!("{key}.fields"),
            "the id is sent as `ext_user_id` (see ext_user_id), not as a field",
        );
    }
    if ext_user_id.is_none()
        && !fields
            .iter()
            .any(|f| matches!(f, ContactField::Email | ContactField::Phone))
    {
        p.add(
            format!("{key}.fields"),
            "with ext_user_id = \"none\", send \"email\" or \"phone\": user_hash is over one of them",
        );
    }
    let script_url = raw
        .script_url
        .unwrap_or_else(|| "https://widget.yourgpt.ai/script.js".to_string());
    match url::Url::parse(&script_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => p.add(
            format!("{key}.script_url"),
            format!("{script_url:?} must be an http(s) URL like \"https://widget.yourgpt.ai/script.js\""),
        ),
    }
    let max_page = raw.max_page_bytes.unwrap_or(8 * 1024 * 1024);
    if max_page == 0 {
        p.add(format!("{key}.max_page_bytes"), "must be more than 0");
    }
    if p.error_count() > before {
        return None;
    }
    Some(YourGptWidgetSettings {
        secret: secret?,
        widget_ids: raw.widget_ids,
        ext_user_id,
        fields,
        script_url,
        max_page_bytes: usize::try_from(max_page).unwrap_or(usize::MAX),
    })
}

fn typingmind(
    key: &str,
    raw: RawTypingMind,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<TypingMindSettings> {
    let before = p.error_count();
    let instance_url = base_url(&format!("{key}.instance_url"), &raw.instance_url, p);
    let secret = p.secret(&format!("{key}.secret"), &raw.secret, base_dir);
    let identify_by = match (raw.identify_by.as_deref().unwrap_or("user"), &raw.id_claim) {
        ("user", None) => IdentifyBy::User,
        ("email", None) => IdentifyBy::Email,
        ("id", Some(claim)) if !claim.is_empty() => IdentifyBy::Id {
            claim: ClaimPath::new(claim.clone()),
        },
        ("id", _) => {
            p.add(
                format!("{key}.id_claim"),
                "identify_by = \"id\" needs `id_claim`: the claim holding TypingMind's user id",
            );
            IdentifyBy::User
        }
        ("user" | "email", Some(_)) => {
            p.add(
                format!("{key}.id_claim"),
                "only applies with identify_by = \"id\"",
            );
            IdentifyBy::User
        }
        (other, _) => {
            p.add(
                format!("{key}.identify_by"),
                format!("{other:?} is not a payload shape; use \"user\", \"email\" or \"id\""),
            );
            IdentifyBy::User
        }
    };
    let mut user_fields = Vec::new();
    for (field, claim) in raw.user_fields.unwrap_or_default() {
        if identify_by != IdentifyBy::User {
            p.add(
                format!("{key}.user_fields"),
                "only applies with identify_by = \"user\"",
            );
            break;
        }
        if matches!(field.as_str(), "id" | "email" | "name") || claim.is_empty() {
            p.add(
                format!("{key}.user_fields.{field}"),
                "id, email and name are always sent; give other fields a claim name",
            );
            continue;
        }
        user_fields.push((field, ClaimPath::new(claim)));
    }
    let ttl = raw.code_ttl_seconds.unwrap_or(300);
    if !(1..=86_400).contains(&ttl) {
        p.add(
            format!("{key}.code_ttl_seconds"),
            format!("{ttl} is out of range: 1 to 86400 seconds"),
        );
    }
    let widget_ttl = raw.widget_code_ttl_seconds.unwrap_or(28_800);
    if !(1..=604_800).contains(&widget_ttl) {
        p.add(
            format!("{key}.widget_code_ttl_seconds"),
            format!("{widget_ttl} is out of range: 1 to 604800 seconds (7 days)"),
        );
    }
    let suffix = raw
        .widget_script_suffix
        .unwrap_or_else(|| "widget.js".to_string());
    if suffix.is_empty() || suffix.contains(['?', '#']) {
        p.add(
            format!("{key}.widget_script_suffix"),
            "must be the end of a path, e.g. \"widget.js\"",
        );
    }
    let max_page = raw.widget_max_page_bytes.unwrap_or(8 * 1024 * 1024);
    if max_page == 0 {
        p.add(
            format!("{key}.widget_max_page_bytes"),
            "must be more than 0",
        );
    }
    if p.error_count() > before {
        return None;
    }
    Some(TypingMindSettings {
        instance_url,
        secret: secret?,
        identify_by,
        user_fields,
        code_ttl: Duration::from_secs(ttl),
        widget_code_ttl: Duration::from_secs(widget_ttl),
        widget: raw.widget.unwrap_or(false),
        widget_script_suffix: suffix,
        widget_max_page_bytes: usize::try_from(max_page).unwrap_or(usize::MAX),
    })
}

/// An http(s) base URL without query or fragment, returned without its trailing slash.
fn base_url(key: &str, raw: &str, p: &mut Problems) -> String {
    match url::Url::parse(raw) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none()
                && u.fragment().is_none() =>
        {
            raw.trim_end_matches('/').to_string()
        }
        _ => {
            p.add(
                key,
                format!("{raw:?} must be an http(s) URL like \"https://app.example.com\""),
            );
            String::new()
        }
    }
}
