//! YourGPT's chatbot widget signed in ("Identity Verification"): the person's `contact:data`
//! (`email`, `name`, `phone`, `ext_user_id`) with its `user_hash` — HMAC-SHA256, lowercase hex,
//! over the highest-priority identifier sent (`ext_user_id`, else `email`, else `phone`) with
//! the widget's Secret Key.
//!
//! The data never goes into the page: the page gets a same-origin `<script src>` to the
//! gateway's `yourgpt-contact/<app>.js` endpoint, inserted before the widget's own tag (see
//! [`super::widget`]), and that endpoint answers only the signed-in person's own top-level page
//! (`Sec-Fetch-Site: same-origin`, `Sec-Fetch-Dest: script`): a page on another site that
//! includes it with the person's cookies gets nothing. The script is CSP-safe under
//! `script-src 'self'`, and carries the widget tag's `nonce` when it has one.

use serde_json::{Map, Value};

use crate::config::{ContactField, YourGptWidgetSettings};
use crate::identity::Identity;

/// The widget's tag and where its contact script is served, for one app.
#[derive(Debug)]
pub struct ContactSite {
    /// The widget's script (origin and path compared; the query is ignored).
    script: url::Url,
    /// Its origin, kept (compared for every script tag of a page).
    origin: url::Origin,
    widget_ids: Vec<String>,
    /// `/_handoff/yourgpt-contact/<app>.js`.
    contact_path: String,
}

impl ContactSite {
    /// `None` when the script URL is not a URL (the config check refuses it).
    pub fn new(settings: &YourGptWidgetSettings, contact_path: String) -> Option<Self> {
        let script = url::Url::parse(&settings.script_url).ok()?;
        Some(ContactSite {
            origin: script.origin(),
            script,
            widget_ids: settings.widget_ids.clone(),
            contact_path,
        })
    }

    /// Whether a script tag loading `url` with `data-widget` = `widget` is this app's widget.
    pub fn is_widget(&self, url: &url::Url, widget: Option<&str>) -> bool {
        url.origin() == self.origin
            && url.path() == self.script.path()
            && widget.is_some_and(|w| self.widget_ids.iter().any(|id| id == w.trim()))
    }

    /// The widget script's origin (a protocol-relative `src` takes its scheme).
    pub fn script_origin(&self) -> &url::Origin {
        &self.origin
    }

    /// The same-origin path of the contact script.
    pub fn contact_path(&self) -> &str {
        &self.contact_path
    }
}

/// `contact:data` for this person, or the identity fields it lacks (none of `ext_user_id`,
/// `email`, `phone` has a value, so there is nothing to hash).
pub fn contact_data(
    settings: &YourGptWidgetSettings,
    identity: &Identity,
) -> Result<Map<String, Value>, Vec<ContactField>> {
    let value = |field: ContactField| -> String {
        match field {
            ContactField::Id => identity.id.clone(),
            ContactField::Email => identity.email.clone(),
            ContactField::Name => identity.name.clone(),
            ContactField::Username => identity.username.clone(),
            ContactField::Phone if identity.phone_code.is_empty() => identity.phone_no.clone(),
            ContactField::Phone if identity.phone_no.is_empty() => String::new(),
            ContactField::Phone => format!("+{}{}", identity.phone_code, identity.phone_no),
        }
    };
    let mut data = Map::new();
    for &field in &settings.fields {
        let v = value(field);
        if !v.is_empty() {
            data.insert(field.label().to_string(), v.into());
        }
    }
    if let Some(field) = settings.ext_user_id {
        let v = value(field);
        if !v.is_empty() {
            data.insert("ext_user_id".into(), v.into());
        }
    }
    let identifier = ["ext_user_id", "email", "phone"]
        .iter()
        .find_map(|k| data.get(*k).and_then(Value::as_str));
    let Some(identifier) = identifier else {
        let mut missing: Vec<ContactField> = settings.ext_user_id.into_iter().collect();
        missing.extend(
            settings
                .fields
                .iter()
                .copied()
                .filter(|f| matches!(f, ContactField::Email | ContactField::Phone)),
        );
        return Err(missing);
    };
    let hash = user_hash(settings.secret.expose(), identifier);
    data.insert("user_hash".into(), hash.into());
    Ok(data)
}

/// HMAC-SHA256 of `identifier` under the widget's secret, lowercase hex.
pub fn user_hash(secret: &[u8], identifier: &str) -> String {
    crate::keyed::hmac_sha256_hex(secret, identifier.as_bytes())
}

/// The contact script: hands `data` to the widget as soon as `window.$yourgptChatbot` exists
/// (at once when the page's snippet set up its queue; otherwise when the widget's script has
/// loaded, looked for every 50 ms for 30 s). `data` is JSON written so that no value can end
/// the script or a line: `<`, `>`, `&`, U+2028 and U+2029 are escaped.
pub fn contact_script(data: &Map<String, Value>) -> String {
    let json = script_safe_json(&Value::Object(data.clone()));
    format!(
        "(function (contact) {{\n\
         \x20 function ready() {{ var c = window.$yourgptChatbot; return !!c && typeof c.set === \"function\"; }}\n\
         \x20 function send() {{ window.$yourgptChatbot.set(\"contact:data\", contact); }}\n\
         \x20 if (ready()) {{ send(); return; }}\n\
         \x20 var tries = 0;\n\
         \x20 var timer = setInterval(function () {{\n\
         \x20   if (ready()) {{ clearInterval(timer); send(); }} else if (++tries >= 600) {{ clearInterval(timer); }}\n\
         \x20 }}, 50);\n\
         }})({json});\n"
    )
}

/// JSON that is safe inside a script: `<`, `>` and `&` as `\u003c` … (no `</script>`, no
/// `<!--`), and the line separators JavaScript once read as line ends.
pub fn script_safe_json(value: &Value) -> String {
    let json = value.to_string();
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn settings(ext: Option<ContactField>, fields: &[ContactField]) -> YourGptWidgetSettings {
        YourGptWidgetSettings {
            secret: Secret::new(b"widget-secret".to_vec()),
            widget_ids: vec!["w1".into()],
            ext_user_id: ext,
            fields: fields.to_vec(),
            script_url: "https://widget.yourgpt.ai/script.js".into(),
            max_page_bytes: 1 << 20,
        }
    }

    fn person(id: &str, email: &str, phone: &str) -> Identity {
        Identity {
            id: id.into(),
            email: email.into(),
            name: "Ada </script><!-- \u{2028}".into(),
            phone_no: phone.into(),
            ..Identity::default()
        }
    }

    const ALL: &[ContactField] = &[ContactField::Email, ContactField::Name, ContactField::Phone];

    #[test]
    fn the_hash_is_over_the_highest_priority_identifier_sent() {
        let s = settings(Some(ContactField::Id), ALL);
        let d = contact_data(&s, &person("id-1", "a@x", "555")).unwrap();
        assert_eq!(d["ext_user_id"], "id-1");
        assert_eq!(d["user_hash"], user_hash(b"widget-secret", "id-1"));
        let d = contact_data(&s, &person("", "a@x", "555")).unwrap();
        assert!(!d.contains_key("ext_user_id"));
        assert_eq!(d["user_hash"], user_hash(b"widget-secret", "a@x"));
        let d = contact_data(&s, &person("", "", "555")).unwrap();
        assert_eq!(d["user_hash"], user_hash(b"widget-secret", "555"));
        assert_eq!(
            contact_data(&s, &person("", "", "")).unwrap_err(),
            [ContactField::Id, ContactField::Email, ContactField::Phone]
        );
        // An identifier that is not sent is not hashed.
        let s = settings(None, &[ContactField::Name, ContactField::Phone]);
        let d = contact_data(&s, &person("id-1", "a@x", "555")).unwrap();
        assert!(!d.contains_key("email") && !d.contains_key("ext_user_id"));
        assert_eq!(d["user_hash"], user_hash(b"widget-secret", "555"));
    }

    #[test]
    fn the_hash_is_lowercase_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            user_hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hostile_values_cannot_leave_the_script() {
        let s = settings(Some(ContactField::Id), ALL);
        let d = contact_data(&s, &person("id-1", "a@x", "")).unwrap();
        let js = contact_script(&d);
        assert!(!js.contains("</script") && !js.contains("<!--"), "{js}");
        assert!(!js.contains('\u{2028}'));
        assert!(
            js.contains("Ada \\u003c/script\\u003e\\u003c!-- \\u2028"),
            "{js}"
        );
        // The JSON still reads back as the same values.
        let start = js.rfind("})(").unwrap() + 3;
        let end = js.rfind(");").unwrap();
        let back: Value = serde_json::from_str(&js[start..end]).unwrap();
        assert_eq!(back["name"], "Ada </script><!-- \u{2028}");
    }

    #[test]
    fn the_widget_is_its_script_and_one_of_the_ids() {
        let site = ContactSite::new(
            &settings(Some(ContactField::Id), ALL),
            "/_handoff/yourgpt-contact/gpt.js".into(),
        )
        .unwrap();
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(site.is_widget(&u("https://widget.yourgpt.ai/script.js"), Some("w1")));
        assert!(site.is_widget(&u("https://WIDGET.yourgpt.ai/script.js?v=2"), Some(" w1 ")));
        assert!(!site.is_widget(&u("https://widget.yourgpt.ai/script.js"), Some("w2")));
        assert!(!site.is_widget(&u("https://widget.yourgpt.ai/script.js"), None));
        assert!(!site.is_widget(&u("http://widget.yourgpt.ai/script.js"), Some("w1")));
        assert!(!site.is_widget(&u("https://evil.example/script.js"), Some("w1")));
    }
}
