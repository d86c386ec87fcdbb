use crate::common::*;

const BASE_SERVER: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";
const UP: &str = "[upstreams.intranet]\nservers = [\"127.0.0.1:9000\"]\n";
const ROUTE: &str = "[[routes]]\npath = \"/\"\nupstream = \"intranet\"\n";

fn sess(extra: &str) -> String {
    format!("[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ file = \"session-secret.txt\" }}\n{extra}\n")
}

#[test]
fn scratch_print() {
    let cases: Vec<(&str, String)> = vec![
        ("syntax", format!("{BASE_SERVER}\n[upstreams.intranet\nservers = 1\n")),
        ("unknown top", format!("{BASE_SERVER}{UP}{ROUTE}[apps]\nx = 1\n[frobnicate]\n")),
        ("listn", format!("[server]\nlistn = [\"127.0.0.1:8080\"]\n{UP}{ROUTE}")),
        ("missing up", format!("{UP}[[routes]]\npath = \"/\"\nupstream = \"intrante\"\n")),
        ("both", format!("{UP}[[routes]]\npath = \"/\"\nupstream = \"intranet\"\napp = \"chat\"\n")),
        ("app", format!("{UP}[[routes]]\npath = \"/\"\napp = \"chat\"\n")),
        ("neither", format!("{UP}[[routes]]\npath = \"/\"\n")),
        ("literal", format!("[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = \"hunter2-literal\"\n{UP}{ROUTE}")),
        ("env missing", format!("[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ env = \"HANDOFF_CC_SURELY_UNSET\" }}\n{UP}{ROUTE}")),
        ("none alg", format!("{}{UP}{ROUTE}", sess("").replace("[\"HS256\"]", "[\"HS256\", \"none\"]"))),
        ("unknown alg", format!("{}{UP}{ROUTE}", sess("").replace("[\"HS256\"]", "[\"HS257\"]"))),
        ("rs256 no key", format!("{}{UP}{ROUTE}", sess("").replace("[\"HS256\"]", "[\"RS256\"]"))),
        ("rs256 only no secret no key", format!("[session]\ncookie = \"s\"\nalgorithms = [\"RS256\"]\n{UP}{ROUTE}")),
        ("cert as key", format!("[session]\ncookie = \"s\"\nalgorithms = [\"RS256\"]\npublic_key_file = \"tls_cert.pem\"\n{UP}{ROUTE}")),
        ("ec for rs", format!("[session]\ncookie = \"s\"\nalgorithms = [\"RS256\"]\npublic_key_file = \"ec_public.pem\"\n{UP}{ROUTE}")),
        ("missing key file", format!("[session]\ncookie = \"s\"\nalgorithms = [\"RS256\"]\npublic_key_file = \"nope.pem\"\n{UP}{ROUTE}")),
        ("bad listen", format!("[server]\nlisten = [\"localhost:8080\", \"127.0.0.1\"]\n{UP}{ROUTE}")),
        ("up no port", format!("[upstreams.intranet]\nservers = [\"127.0.0.1\"]\n{ROUTE}")),
        ("up no resolve", format!("[upstreams.intranet]\nservers = [\"no-such-host.invalid:80\"]\n{ROUTE}")),
        ("up empty", format!("[upstreams.intranet]\nservers = []\n{ROUTE}")),
        ("hc type", format!("{UP}[upstreams.intranet.health_check]\ntype = \"icmp\"\n{ROUTE}")),
        ("route path", format!("{UP}[[routes]]\npath = \"ai\"\nupstream = \"intranet\"\n")),
        ("route path query", format!("{UP}[[routes]]\npath = \"/ai?x\"\nupstream = \"intranet\"\n")),
        ("bad host", format!("{UP}[[routes]]\npath = \"/\"\nhost = \"exa mple.com\"\nupstream = \"intranet\"\n")),
        ("bad host wild", format!("{UP}[[routes]]\npath = \"/\"\nhost = \"foo.*.com\"\nupstream = \"intranet\"\n")),
        ("endpoints", format!("{UP}{ROUTE}[[routes]]\npath = \"/_handoff/x\"\nupstream = \"intranet\"\n")),
        ("endpoints exact", format!("{UP}{ROUTE}[[routes]]\npath = \"/_handoff\"\nupstream = \"intranet\"\n")),
        ("endpoints dotted", format!("{UP}{ROUTE}[[routes]]\npath = \"/x/../_handoff/\"\nupstream = \"intranet\"\n")),
        ("endpoints encoded", format!("{UP}{ROUTE}[[routes]]\npath = \"/%5Fhandoff\"\nupstream = \"intranet\"\n")),
        ("endpoints not prefix", format!("{UP}{ROUTE}[[routes]]\npath = \"/_handoffx\"\nupstream = \"intranet\"\n")),
        ("dup", format!("{UP}{ROUTE}[[routes]]\npath = \"/ai\"\nupstream = \"intranet\"\n[[routes]]\npath = \"/ai/\"\nupstream = \"intranet\"\n")),
        ("dup host", format!("{UP}[[routes]]\npath = \"/\"\nhost = \"A.example.com\"\nupstream = \"intranet\"\n[[routes]]\npath = \"/\"\nhost = \"a.example.com.\"\nupstream = \"intranet\"\n")),
        ("allow empty", format!("{}{UP}[[routes]]\npath = \"/\"\nupstream = \"intranet\"\nallow = {{}}\n", sess(""))),
        ("rs false allow", format!("{}{UP}[[routes]]\npath = \"/\"\nupstream = \"intranet\"\nrequire_session = false\nallow = {{ groups = [\"g\"] }}\n", sess(""))),
        ("no session", format!("{UP}[[routes]]\npath = \"/\"\nupstream = \"intranet\"\nrequire_session = true\n[[routes]]\npath = \"/a\"\nupstream = \"intranet\"\nidentity_headers = true\n[[routes]]\npath = \"/b\"\nupstream = \"intranet\"\nallow = {{ emails = [\"a@b.c\"] }}\n")),
        ("bad header", format!("{UP}{ROUTE}[identity_headers]\nemail = \"X Handoff Email\"\n")),
        ("reserved header", format!("{UP}{ROUTE}[identity_headers]\nemail = \"Cookie\"\n")),
        ("dup header", format!("{UP}{ROUTE}[identity_headers]\nemail = \"X-Handoff-User\"\n")),
        ("no routes", format!("{UP}")),
        ("routes empty arr", format!("{UP}routes = []\n")),
        ("leeway", format!("{}{UP}{ROUTE}", sess("leeway_seconds = \"sixty\""))),
        ("route path missing", format!("{UP}[[routes]]\nupstream = \"intranet\"\n")),
        ("route unknown key", format!("{UP}[[routes]]\npath = \"/\"\nupstream = \"intranet\"\nrequire_sesion = true\n")),
        ("upstream unknown key", format!("[upstreams.intranet]\nservers = [\"127.0.0.1:9000\"]\ntimeout = 3\n{ROUTE}")),
        ("server wrong type", format!("[server]\nlisten = \"127.0.0.1:8080\"\n{UP}{ROUTE}")),
        ("threads 0", format!("[server]\nthreads = 0\n{UP}{ROUTE}")),
        ("routes as table", format!("{UP}[routes]\npath = \"/\"\n")),
        ("upstreams not table", format!("upstreams = 3\n{ROUTE}")),
        ("server not table", format!("server = 3\n{UP}{ROUTE}")),
        ("secret bad ref", format!("[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ value = \"x\" }}\n{UP}{ROUTE}")),
        ("cookie bad", format!("{}{UP}{ROUTE}", sess("").replace("cookie = \"s\"", "cookie = \"a b\""))),
        ("session missing cookie", format!("[session]\nalgorithms = [\"HS256\"]\nsecret = {{ file = \"session-secret.txt\" }}\n{UP}{ROUTE}")),
        ("login url", format!("{}{UP}{ROUTE}", sess("login_url = \"javascript:alert(1)\""))),
        ("tls files", format!("[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert_file = \"nope.pem\"\nkey_file = \"tls_key.pem\"\n{UP}{ROUTE}")),
        ("tls upstream ip sni", format!("[upstreams.intranet]\nservers = [\"[::1]:9000\"]\ntls = true\n{ROUTE}")),
        ("hc timeout 0", format!("{UP}[upstreams.intranet.health_check]\ninterval_ms = 0\n{ROUTE}")),
        ("broken upstream + route", format!("[upstreams.intranet]\nservers = []\n{ROUTE}")),
        ("prefix slash", format!("[server]\nendpoints_prefix = \"/\"\n{UP}{ROUTE}")),
        ("prefix bad", format!("[server]\nendpoints_prefix = \"handoff\"\n{UP}{ROUTE}")),
        ("up name dot", format!("[upstreams.\"a.b\"]\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\npath = \"/\"\nupstream = \"a.b\"\n")),
        ("alg dup", format!("{}{UP}{ROUTE}", sess("").replace("[\"HS256\"]", "[\"HS256\", \"HS256\"]"))),
        ("algs empty", format!("{}{UP}{ROUTE}", sess("").replace("[\"HS256\"]", "[]"))),
        ("leeway neg", format!("{}{UP}{ROUTE}", sess("leeway_seconds = -1"))),
        ("secret empty file", format!("[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ file = \"/dev/null\" }}\n{UP}{ROUTE}")),
        ("secret missing file", format!("[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ file = \"nope.txt\" }}\n{UP}{ROUTE}")),
        ("invalid utf8 lines", "a = \"\n".to_string()),
        ("bare key error", "[server]\nlisten = [\"127.0.0.1:8080\"\n".to_string()),
    ];
    for (name, text) in cases {
        match handoff::config::from_toml_str(&text, &fixtures()) {
            Ok(_) => println!("=== {name}: OK"),
            Err(e) => {
                println!("=== {name}:");
                for err in &e.errors {
                    println!("    key={:?} message={:?}", err.key, err.message);
                }
            }
        }
    }
}

#[test]
fn scratch_keys() {
    for file in ["tls_cert.pem", "tls_key.pem", "rsa_private.pem", "ec_private.pem", "session-secret.txt", "rsa_public.pem"] {
        let text = format!("[session]\ncookie = \"s\"\nalgorithms = [\"RS256\"]\npublic_key_file = \"{file}\"\n{UP}[[routes]]\npath = \"/\"\nupstream = \"intranet\"\n");
        match handoff::config::from_toml_str(&text, &fixtures()) {
            Err(e) => println!("=== {file}: {e}"),
            Ok(c) => {
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(&read_fixture(if file == "tls_cert.pem" { "tls_key.pem" } else { "rsa_private.pem" })).unwrap();
                let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &person("a@b.c", &[]), &key).unwrap();
                let mut h = http::HeaderMap::new();
                h.insert("cookie", format!("s={token}").parse().unwrap());
                let r = c.session.as_ref().unwrap().verifier.identify(&h);
                println!("=== {file}: OK; identify = {:?}", r.map(|i| format!("{i:?}").len()));
            }
        }
    }
    // leaks
    let leaks = vec![
        ("int", "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = 123456789\n".to_string()),
        ("arr", "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = [\"LEAKME\"]\n".to_string()),
        ("unclosed", "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = \"LEAKME\n".to_string()),
        ("bare", "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = LEAKME\n".to_string()),
        ("env int", "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = { env = 5 }\n".to_string()),
        ("env both", "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = { env = \"LEAKME\", file = \"x\" }\n".to_string()),
    ];
    for (n, t) in leaks {
        match handoff::config::from_toml_str(&t, &fixtures()) {
            Err(e) => println!("=== leak {n}: {e}"),
            Ok(_) => println!("=== leak {n}: OK"),
        }
    }
}
