//! The security test list. Each test is one attack shape from the list below; together with
//! the tests named here that live beside the feature they attack, this is the list.
//!
//! | attack | tests |
//! |---|---|
//! | algorithm confusion | `hs256_signed_with_the_public_key_is_refused` (here), `sessions::hs256_key_confusion_with_hs_allowed_still_fails`, `jwks::*hs256*` |
//! | `alg: none` | `alg_none_is_refused` |
//! | `kid` injection | `hostile_kids_are_inert`, `jwks::*kid*` |
//! | header spoofing | `connection_nominated_identity_headers_still_arrive`, `spoofing::*` |
//! | CRLF / non-ASCII claims into headers and URLs | `crlf_and_non_ascii_claims_never_split_a_header_or_a_url` |
//! | open redirects | `return_to_never_leaves_the_site`, `deep_links_stay_on_the_instance` |
//! | request smuggling (CL/TE) | `smuggling_shapes_are_refused`, `bad_input::*` (two lengths) |
//! | oversized headers and cookies | `oversized_headers_and_cookies_get_4xx`, `bad_input::*` |
//! | slowloris | `slow_headers_do_not_starve_others_and_are_cut_off` |
//! | encoded slashes, backslashes, dot segments, `;params`, double encodings, `%00` | `differential::hostile_paths_against_{nginx,wsgi}_*` (720 targets, real upstreams), `paths::tests` (unit) |
//! | identity headers with `_` or odd case; forwarding headers | `differential::forged_headers_*` (HTTP/1.1, h2c, upgrade, `Connection`), `spoofing::*` |
//! | a host that skips `upstream_request_filter` | `differential::a_host_that_skips_upstream_request_filter_forwards_nothing_forged` |
//! | absolute-form targets, malformed `Host` | `differential::hosts_route_on_the_authority_the_upstream_serves` |
//! | widget codes for refused people, `fetch()`, POST, stale codes | `typingmind::widget_codes_only_for_admitted_navigations_and_stale_codes_never_leak`, `typingmind::the_apps_own_allow_holds_on_every_way_in` |
//! | widget tags encoded, cut across chunks, far down a page, hidden in comments/values/script text | `typingmind::upper_case_two_tags_foreign_instances_and_stale_codes`, `typingmind::without_a_session_codes_are_removed_never_left_stale`, `apps::widget::tests` (unit: equal to lol_html reading every byte) |
//! | `aud` unexpected, `crit`, `iss` arrays | `tokens_are_refused_exactly_as_documented`, `jwks::published_keys_refuse_aud_crit_and_issuer_arrays` |
//! | return-to through `//evil/%2e%2e`, `/\\evil/..` | `return_to_never_leaves_the_site` |
//! | group names with `,` or spaces | `group_names_are_exact_and_never_split_the_groups_header` |
//! | `Content-Length` lists | `content_length_lists_are_refused` |

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::*;

/// A TypingMind app on `/ai/chat`.
const CHAT_APP: &str = "[apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://chat.example.test/\"\n\
     secret = { file = \"typingmind-secret.txt\" }\n[[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n";

fn gateway_with(intranet: &Intranet, algorithms: &[&str], extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "{}[upstreams.intranet]\nservers = [\"{}\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\nidentity_headers = true\n{extra}",
        session_config(algorithms, ""),
        intranet.server()
    ))
}

async fn reason(gw: &TestGateway, token: &str) -> String {
    let (status, body) = whoami(gw, &format!("intranet_session={token}")).await;
    assert_eq!(status, 401, "{body}");
    body["reason"].as_str().unwrap_or_default().to_string()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn alg_none_is_refused() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], "");
    let claims = person("ada@corp.example", &[]);
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"alg": "NONE"}),
        json!({"alg": "nOnE"}),
    ] {
        let unsigned = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let r = reason(&gw, &unsigned).await;
        assert!(
            ["malformed", "algorithm_not_allowed", "bad_signature"].contains(&r.as_str()),
            "{header}: {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_signed_with_the_public_key_is_refused() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["RS256"], "");
    let public_pem = read_fixture("rsa_public.pem");
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &person("mallory@corp.example", &["admins"]),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    assert_eq!(reason(&gw, &forged).await, "algorithm_not_allowed");
    // The genuine RS256 token works, so the refusal is about the forgery.
    let (status, _) = whoami(
        &gw,
        &format!(
            "intranet_session={}",
            sign(Algorithm::RS256, &person("ada@corp.example", &[]))
        ),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_kids_are_inert() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], "");
    let claims = person("ada@corp.example", &[]);
    for kid in [
        "../../../../etc/passwd",
        "' OR 1=1 --",
        "key\r\nX-Injected: 1",
        "/dev/zero",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_string());
        // Signed with the right secret: the kid names no file or URL, it is not looked up.
        let good = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(&session_secret()),
        )
        .unwrap();
        let (status, body) = whoami(&gw, &format!("intranet_session={good}")).await;
        assert_eq!(status, 200, "{kid}: {body}");
        // Signed with anything else: refused.
        let bad = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(kid.as_bytes()))
            .unwrap();
        assert_eq!(reason(&gw, &bad).await, "bad_signature", "{kid}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_nominated_identity_headers_still_arrive() {
    // CVE-2026-105299 shape: a client names the header the gateway adds in `Connection`, hoping
    // a hop-by-hop strip after the gateway removes the real value.
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], "");
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &["eng"]))
    );
    let echo = Echo::from(
        client()
            .get(gw.url("/page"))
            .header("Cookie", cookie)
            .header("Connection", "keep-alive, X-Handoff-Email, X-Handoff-User")
            .header("X-Handoff-Email", "ceo@corp.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-handoff-email"), vec!["ada@corp.example"]);
    assert_eq!(echo.headers("x-handoff-user"), vec!["id-ada@corp.example"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn crlf_and_non_ascii_claims_never_split_a_header_or_a_url() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], CHAT_APP);
    let mut claims = person("eve@corp.example", &["eng\r\nX-Injected: 1"]);
    claims["sub"] = json!("eve\r\nX-Injected: yes");
    claims["name"] = json!("Zoë Ünïcödé 😀\nSecond-Line: x");
    claims["email"] = json!("eve@corp.example\r\n\r\nGET /smuggled HTTP/1.1");
    let cookie = format!("intranet_session={}", hs256(&claims));
    let echo = Echo::from(
        client()
            .get(gw.url("/page"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(echo.headers("x-injected").is_empty());
    assert!(echo.headers("second-line").is_empty());
    for name in [
        "x-handoff-user",
        "x-handoff-email",
        "x-handoff-name",
        "x-handoff-groups",
    ] {
        for value in echo.headers(name) {
            assert!(
                !value.contains('\r') && !value.contains('\n'),
                "{name}: {value:?}"
            );
        }
    }
    // Into a URL: the TypingMind link carries the person inside a signed code, never raw.
    let resp = client()
        .get(gw.url("/ai/chat"))
        .header("Accept", "text/html")
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://chat.example.test/"),
        "{location}"
    );
    assert!(
        !location.contains("Injected") && !location.contains(' '),
        "{location}"
    );
    assert_eq!(resp.headers().get_all("location").iter().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn return_to_never_leaves_the_site() {
    // The gateway sends people to login_url with the path they asked for, percent-encoded; the
    // demo intranet's login only follows local paths. Both ends are checked.
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&format!(
        "{}[upstreams.intranet]\nservers = [\"{}\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\nrequire_session = true\n",
        session_config(
            &["HS256"],
            "login_url = \"https://intranet.test/login?next={return_to}\""
        ),
        intranet.server()
    ));
    for path in [
        "//evil.example/x",
        "/%2F%2Fevil.example",
        "/\\evil.example",
        "/a?next=https://evil.example",
        "//evil.example/%2e%2e/private",
        "/\\evil.example/../private",
        "/%5Cevil.example/x",
    ] {
        let resp = client()
            .get(gw.url(path))
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        // (reqwest sends a `\` as `/`; raw backslashes are in differential.rs.)
        if path.contains("%2F") || path.contains("%5C") {
            // Escaped slashes and backslashes never reach a route (crate::paths).
            assert_eq!(resp.status(), 400, "{path}");
            continue;
        }
        assert_eq!(resp.status(), 302, "{path}");
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(location.host_str(), Some("intranet.test"), "{path}");
        let next: String = location
            .query_pairs()
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert!(next.starts_with('/'), "{path}: {next}");
    }
    for next in [
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/ /evil.example",
        "https://evil.example",
        "javascript:alert(1)",
        "/%09/evil.example",
    ] {
        assert!(
            !handoff::internals::routes::is_local_path(next)
                || url::Url::parse("https://intranet.test/")
                    .unwrap()
                    .join(next)
                    .unwrap()
                    .host_str()
                    == Some("intranet.test"),
            "{next:?} would leave the site"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_links_stay_on_the_instance() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], CHAT_APP);
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &[]))
    );
    for tail in [
        "//evil.example/x",
        "/%2F%2Fevil.example",
        "/..%2F..%2F@evil.example",
        "/@evil.example",
    ] {
        let resp = client()
            .get(gw.url(&format!("/ai/chat{tail}")))
            .header("Accept", "text/html")
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        if resp.status() == 302 {
            let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
            assert_eq!(location.host_str(), Some("chat.example.test"), "{tail}");
        } else {
            assert!(resp.status().is_client_error(), "{tail}: {}", resp.status());
        }
    }
}

/// Sends `request` raw, then reads what comes back within `wait`.
fn exchange(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> String {
    raw_exchange(addr, request, wait)
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_shapes_are_refused() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], "");
    let addr = gw.addr;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let shapes: Vec<(&str, String)> = vec![
        (
            "CL then TE",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE then CL",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "two lengths",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n{smuggled}"),
        ),
        (
            "obfuscated TE",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE with a space before the colon",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
    ];
    for (name, request) in shapes {
        let raw = tokio::task::spawn_blocking(move || {
            exchange(addr, request.as_bytes(), Duration::from_secs(3))
        })
        .await
        .unwrap();
        let first = raw.lines().next().unwrap_or_default().to_string();
        let code: u16 = first
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        // Refused outright, or (CL with TE: RFC 9112 §6.1) read by Transfer-Encoding alone,
        // answered once and the connection closed: either way the second request is never
        // read from the body, and the upstream never sees both lengths.
        let answers = raw.matches("HTTP/1.1 ").count();
        let closed_after_one =
            answers == 1 && raw.to_ascii_lowercase().contains("connection: close");
        assert!(
            (400..500).contains(&code) || (code == 200 && closed_after_one),
            "{name}: {first:?}\n{raw}"
        );
        if code == 200 {
            let echo: serde_json::Value =
                serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
            let names: Vec<String> = echo["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
                .collect();
            assert!(
                !(names.contains(&"content-length".to_string())
                    && names.contains(&"transfer-encoding".to_string())),
                "{name}: the upstream got both lengths: {names:?}"
            );
        }
        assert!(
            !raw.contains("/smuggled"),
            "{name}: the smuggled request was served\n{raw}"
        );
    }
    let echo = Echo::from(client().get(gw.url("/after")).send().await.unwrap()).await;
    assert_eq!(echo.0["path"], "/after");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_and_cookies_get_4xx() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], "");
    let c = client();
    for (name, value) in [
        (
            "Cookie",
            format!("intranet_session={}", "a".repeat(200 * 1024)),
        ),
        (
            "Cookie",
            (0..12000).map(|i| format!("c{i}=v; ")).collect::<String>(),
        ),
        (
            "Authorization",
            format!("Bearer {}", "b".repeat(200 * 1024)),
        ),
    ] {
        let status = match c.get(gw.url("/page")).header(name, value).send().await {
            Ok(r) => r.status().as_u16(),
            // The gateway may close the connection while the client is still writing.
            Err(e) => {
                assert!(e.is_request() || e.is_connect(), "{e:?}");
                400
            }
        };
        assert!((400..500).contains(&status), "{name}: {status}");
    }
    assert_eq!(c.get(gw.url("/after")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_do_not_starve_others_and_are_cut_off() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(&intranet, &["HS256"], "");
    let addr = gw.addr;
    // 200 connections that send half a request and then nothing.
    let slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Partial: ")
                .unwrap();
            s
        })
        .collect();
    let c = client();
    let started = Instant::now();
    for i in 0..50 {
        let r = c.get(gw.url(&format!("/ok/{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Pingora's read timeout for request headers (60 s per read) closes a stalled connection.
    let mut one = slow.into_iter().next().unwrap();
    let closed = tokio::task::spawn_blocking(move || {
        one.set_read_timeout(Some(Duration::from_secs(75))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let result = one.read(&mut buf);
        (
            result.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    let (result, after) = closed;
    assert!(
        after < Duration::from_secs(70),
        "not cut off: {after:?} {result:?}"
    );
}

/// Tokens exactly as documented, from the cookie and from `Authorization: Bearer`: `aud` is
/// refused when no `audience` is configured, a `crit` header is refused, and `iss` must be one
/// string equal to `issuer`.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_refused_exactly_as_documented() {
    let intranet = Intranet::start().await;
    let plain = gateway_with(&intranet, &["HS256"], "");
    let with_issuer = TestGateway::start(&format!(
        "{}{}",
        session_config(&["HS256"], "issuer = \"https://sso.corp.example\""),
        upstream_config(&intranet)
    ));
    let secret = EncodingKey::from_secret(&session_secret());
    let sign = |claims: &serde_json::Value, crit: Option<Vec<String>>| {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = crit;
        jsonwebtoken::encode(&header, claims, &secret).unwrap()
    };
    let ada = person("ada@corp.example", &[]);
    let mut with_aud = ada.clone();
    with_aud["aud"] = json!("some-other-app");
    let mut aud_list = ada.clone();
    aud_list["aud"] = json!(["a", "b"]);
    let mut iss_ok = ada.clone();
    iss_ok["iss"] = json!("https://sso.corp.example");
    let mut iss_list = ada.clone();
    iss_list["iss"] = json!(["https://sso.corp.example", "https://evil.example"]);
    let cases = [
        (&plain, sign(&ada, None), 200, ""),
        (&plain, sign(&with_aud, None), 401, "wrong_audience"),
        (&plain, sign(&aud_list, None), 401, "wrong_audience"),
        (
            &plain,
            sign(&ada, Some(vec!["exp".into()])),
            401,
            "unsupported_crit",
        ),
        (&with_issuer, sign(&iss_ok, None), 200, ""),
        (&with_issuer, sign(&iss_list, None), 401, "wrong_issuer"),
    ];
    for (gw, token, status, why) in cases {
        for bearer in [false, true] {
            let req = client().get(gw.url("/_handoff/whoami"));
            let req = if bearer {
                req.header("Authorization", format!("Bearer {token}"))
            } else {
                req.header("Cookie", format!("intranet_session={token}"))
            };
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{why} bearer={bearer}");
            let body: serde_json::Value = resp.json().await.unwrap();
            if status == 401 {
                assert_eq!(body["reason"], why, "bearer={bearer}");
            }
        }
    }
}

/// Group names are compared exactly, and one that cannot be carried in the comma-separated
/// groups header is left out of it.
#[tokio::test(flavor = "multi_thread")]
async fn group_names_are_exact_and_never_split_the_groups_header() {
    let intranet = Intranet::start().await;
    let gw = gateway_with(
        &intranet,
        &["HS256"],
        "[[routes]]\npath = \"/admins\"\nupstream = \"intranet\"\nidentity_headers = true\n\
         [routes.allow]\ngroups = [\"admins\"]\n",
    );
    let get = |path: &str, groups: &[&str]| {
        client().get(gw.url(path)).header(
            "Cookie",
            format!(
                "intranet_session={}",
                hs256(&person("eve@corp.example", groups))
            ),
        )
    };
    // " admins" (with a space) is not "admins".
    let resp = get("/admins/x", &[" admins"]).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = get("/admins/x", &["admins"]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // "eng,admins" is one group: it must not reach the upstream as two.
    let echo = Echo::from(
        get("/x", &["eng,admins", "staff", " ops"])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-handoff-groups"), vec!["staff"]);
    assert!(log_line_with(&["left out of the groups header", "\"eng,admins\""]).is_some());
}

#[test]
fn content_length_lists_are_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let intranet = rt.block_on(Intranet::start());
    let gw = TestGateway::start(&upstream_config(&intranet));
    for lengths in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: +5\r\n",
    ] {
        let raw = raw_exchange(
            gw.addr,
            format!("POST /x HTTP/1.1\r\nHost: x\r\n{lengths}Connection: close\r\n\r\nhello")
                .as_bytes(),
            Duration::from_secs(5),
        );
        assert!(raw.starts_with("HTTP/1.1 400"), "{lengths:?}: {raw}");
    }
    drop(gw);
    drop(intranet);
}
