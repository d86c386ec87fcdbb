//! The operations pieces in `conf/monitoring` — the Prometheus alerting rules, their promtool
//! unit tests and the Grafana dashboard — checked against what the `handoff` binary really
//! exports: a gateway with every feature that has metrics (JWKS and userinfo sessions, YourGPT
//! and TypingMind apps, a health-checked upstream, `[state]` on a real Redis,
//! `max_connections`) is driven until every series the rules and the dashboard select exists,
//! then every `handoff_…`/`process_…` name in every expression must be an exported family, every
//! label it is matched, grouped or templated by must be on it, and every literal label value
//! it selects must have been seen. promtool (Debian's `prometheus` package, which `.ci/run`
//! installs) checks the rules, runs their unit tests and lints the scrape.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::common::*;
use crate::idp::{IdentityProvider, Mode as IdpMode, TestKey};
use handoff::internals::standins::yourgpt::{Mode, YourGptStandIn, CLIENT_ID};

/// Labels Prometheus adds to every scraped series (the target's), not the gateway.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Metric names the gateway owns: every one of these in an expression must be exported.
const OWN_PREFIXES: [&str; 2] = ["handoff_", "process_"];

fn monitoring_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conf/monitoring")
}

// --- what the gateway exports --------------------------------------------------------------

/// One metric family of a scrape: its `# TYPE` and, per label name, the values seen.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// A scrape in Prometheus' text format, read into families.
#[derive(Debug)]
struct Exported(BTreeMap<String, Family>);

impl Exported {
    fn parse(text: &str) -> Exported {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                families.entry(name.to_string()).or_default().kind = kind.to_string();
            }
        }
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let end = line.find(['{', ' ']).expect("a sample line");
            let name = &line[..end];
            let family = Self::family_of(&families, name)
                .unwrap_or_else(|| panic!("sample of no # TYPE'd family: {line}"));
            let labels = if line[end..].starts_with('{') {
                parse_sample_labels(&line[end + 1..])
            } else {
                Vec::new()
            };
            let family = families.get_mut(&family).expect("family");
            for (label, value) in labels {
                family.labels.entry(label).or_default().insert(value);
            }
        }
        Exported(families)
    }

    /// The family a sample or a queried name belongs to: itself, or a histogram's (summary's)
    /// `_bucket`, `_sum`, `_count`.
    fn family_of(families: &BTreeMap<String, Family>, name: &str) -> Option<String> {
        if families.contains_key(name) {
            return Some(name.to_string());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            let kind = families.get(base)?.kind.as_str();
            (kind == "histogram" || (kind == "summary" && *suffix != "_bucket"))
                .then(|| base.to_string())
        })
    }

    fn family(&self, name: &str) -> Option<&Family> {
        self.0.get(&Self::family_of(&self.0, name)?)
    }

    fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(name, f)| {
                let labels: Vec<_> = f.labels.keys().map(String::as_str).collect();
                format!("{name} ({}) {{{}}}", f.kind, labels.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `a="x",b="y\"z"} 1` → [(a, x), (b, y"z)].
fn parse_sample_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        match chars.peek() {
            Some('}') | None => return out,
            Some(',') | Some(' ') => {
                chars.next();
                continue;
            }
            _ => {}
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "a quoted label value in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                c => value.push(c),
            }
        }
        out.push((name, value));
    }
}

// --- what an expression asks for -----------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Op(String),
}

/// PromQL's tokens, as far as names, labels and values go (numbers, durations and Grafana's
/// `$variables` are dropped; strings keep their text).
fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                    i += 1;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Token::Str(text));
        } else if c == '$' {
            // A Grafana variable: `$name` or `${name}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (5m, 1e3, 0.99).
            while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["=~", "!~", "!=", "==", "<=", ">="].contains(&two.as_str()) {
                out.push(Token::Op(two));
                i += 2;
            } else {
                out.push(Token::Op(c.to_string()));
                i += 1;
            }
        }
    }
    out
}

/// `name{label op "value", …}` in an expression.
#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String, String)>,
}

/// The selectors of our own metrics in `expr`, and the label names it groups or matches by
/// (`by`, `without`, `on`, `ignoring`, `group_left`, `group_right`).
fn read_expr(expr: &str) -> Result<(Vec<Selector>, Vec<String>), String> {
    let toks = tokens(expr);
    let mut selectors = Vec::new();
    let mut grouping = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let next_is = |j: usize, op: &str| toks.get(j) == Some(&Token::Op(op.to_string()));
        match &toks[i] {
            Token::Ident(word)
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str())
                    && next_is(i + 1, "(") =>
            {
                i += 2;
                while i < toks.len() && !next_is(i, ")") {
                    if let Token::Ident(label) = &toks[i] {
                        grouping.push(label.clone());
                    }
                    i += 1;
                }
            }
            Token::Ident(name) if !next_is(i + 1, "(") => {
                let own = OWN_PREFIXES.iter().any(|p| name.starts_with(p));
                let mut matchers = Vec::new();
                if next_is(i + 1, "{") {
                    i += 2;
                    while !next_is(i, "}") {
                        match (toks.get(i), toks.get(i + 1), toks.get(i + 2)) {
                            (Some(Token::Ident(l)), Some(Token::Op(op)), Some(Token::Str(v))) => {
                                matchers.push((l.clone(), op.clone(), v.clone()));
                                i += 3;
                            }
                            (Some(Token::Op(comma)), _, _) if comma == "," => i += 1,
                            _ => {
                                return Err(format!("cannot read the matchers of {name} in {expr}"))
                            }
                        }
                    }
                }
                if own {
                    selectors.push(Selector {
                        metric: name.clone(),
                        matchers,
                    });
                }
            }
            Token::Op(brace) if brace == "{" => {
                return Err(format!("a selector without a metric name in {expr}"));
            }
            _ => {}
        }
        i += 1;
    }
    Ok((selectors, grouping))
}

/// What is wrong with `expr` (found in `place`) against the scrape: unknown metrics, labels it
/// is matched/grouped by that its metrics do not have, literal values never exported, and
/// `templated` labels (an alert's `$labels.x`, a legend's `{{x}}`) its metrics lack.
fn problems(place: &str, expr: &str, templated: &[String], exported: &Exported) -> Vec<String> {
    let (selectors, grouping) = match read_expr(expr) {
        Ok(read) => read,
        Err(e) => return vec![format!("{place}: {e}")],
    };
    let mut out = Vec::new();
    let mut all_labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    for selector in &selectors {
        let name = &selector.metric;
        let Some(family) = exported.family(name) else {
            out.push(format!("{place}: {name} is not exported by the gateway"));
            continue;
        };
        if family.kind == "histogram" && exported.0.contains_key(name) {
            out.push(format!(
                "{place}: {name} is a histogram: query {name}_bucket, _sum or _count"
            ));
        }
        all_labels.extend(family.labels.keys().cloned());
        for (label, op, value) in &selector.matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            let Some(seen) = family.labels.get(label) else {
                out.push(format!("{place}: {name} has no label {label:?}"));
                continue;
            };
            // A literal value (no Grafana variable) must be one the gateway exported: `=` one
            // value, `=~` each alternative of a plain `a|b|c` (other regexes: the name only).
            let literals: Vec<&str> = match op.as_str() {
                "=" if !value.contains('$') => vec![value.as_str()],
                "=~" if value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|') =>
                {
                    value.split('|').collect()
                }
                _ => Vec::new(),
            };
            for literal in literals {
                if !seen.contains(literal) {
                    out.push(format!(
                        "{place}: {name}{{{label}=\"{literal}\"}} was never exported (seen: {seen:?})"
                    ));
                }
            }
        }
    }
    if selectors.is_empty() {
        return out;
    }
    let used: BTreeSet<&String> = grouping.iter().chain(templated).collect();
    for label in used {
        if !all_labels.contains(label) {
            out.push(format!(
                "{place}: label {label:?} is on none of its metrics (they have {all_labels:?})"
            ));
        }
    }
    out
}

/// The label names in `{{ $labels.x }}` (alert templates) or `{{x}}` (Grafana legends).
fn templated_labels(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in text.split("{{").skip(1) {
        let inner = part.split("}}").next().unwrap_or_default().trim();
        let name = inner.strip_prefix("$labels.").unwrap_or(inner);
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let plain = !inner.starts_with('$') || inner.starts_with("$labels.");
        if plain && !name.is_empty() && !inner.starts_with('.') {
            out.push(name);
        }
    }
    out
}

// --- the files -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<AlertRule>,
}

/// An alerting rule as the README asks for it: every field required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertRule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn alert_rules() -> Vec<AlertRule> {
    let path = monitoring_dir().join("handoff-alerts.yml");
    let text = std::fs::read_to_string(&path).expect("handoff-alerts.yml");
    let file: RuleFile = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not a rule file of alerts: {e}", path.display()));
    assert!(!file.groups.is_empty());
    let mut names = BTreeSet::new();
    let rules: Vec<AlertRule> = file
        .groups
        .into_iter()
        .inspect(|g| assert!(!g.name.is_empty() && !g.rules.is_empty(), "{g:?}"))
        .flat_map(|g| g.rules)
        .collect();
    for rule in &rules {
        let name = &rule.alert;
        assert!(names.insert(name.clone()), "{name} twice");
        assert!(
            !rule.for_.is_empty(),
            "{name}: `for:` says how long before it fires"
        );
        let severity = rule.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: labels.severity critical or warning, not {severity:?}"
        );
        for key in ["summary", "description"] {
            let text = rule.annotations.get(key).map(String::as_str);
            assert!(
                text.is_some_and(|t| t.trim().len() > 20),
                "{name}: annotations.{key} must tell the operator what happened: {text:?}"
            );
        }
    }
    rules
}

/// Every panel of the dashboard, rows' nested panels included.
fn all_panels(panels: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in panels.as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(all_panels(&panel["panels"]));
    }
    out
}

/// The dashboard, its structure checked: (where, expression, legend labels) of every query.
fn dashboard_queries() -> Vec<(String, String, Vec<String>)> {
    let path = monitoring_dir().join("handoff-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
        .expect("the dashboard is JSON");
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion ≥ 36: {}",
        dash["schemaVersion"]
    );
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    assert_eq!(var("instance")["type"], "query");
    let own_datasource = |v: &Value, what: &str| {
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{what}: {v}");
        assert_eq!(v["datasource"]["type"], "prometheus", "{what}: {v}");
    };
    own_datasource(var("instance"), "the instance variable");

    let mut out = vec![(
        "dashboard variable instance".to_string(),
        var("instance")["query"]["query"]
            .as_str()
            .expect("instance query")
            .to_string(),
        Vec::new(),
    )];
    let mut ids = BTreeSet::new();
    for panel in all_panels(&dash["panels"]) {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "{title}: id twice"
        );
        assert!(panel["gridPos"]["w"].is_u64(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        own_datasource(panel, title);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            own_datasource(target, title);
            let expr = target["expr"].as_str().expect("expr").to_string();
            let legend = templated_labels(target["legendFormat"].as_str().unwrap_or_default());
            out.push((format!("panel {title:?}"), expr, legend));
        }
    }
    out
}

// --- promtool ------------------------------------------------------------------------------

/// Runs promtool (with `input` on its standard input): (success, what it said). Fails with what
/// to install when it is missing: the rules are never left unchecked.
fn promtool(args: &[&str], dir: &Path, input: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool does not run ({e}): it checks conf/monitoring. Install Debian's \
                 `prometheus` package (`apt-get install prometheus`; .ci/run does)"
            )
        });
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).expect("promtool's stdin");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("promtool ends");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn monitoring_rules_pass_promtool_and_their_unit_tests() {
    let dir = monitoring_dir();
    let (ok, said) = promtool(&["check", "rules", "handoff-alerts.yml"], &dir, None);
    assert!(ok, "promtool check rules:\n{said}");
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", alert_rules().len())),
        "{said}"
    );
    let (ok, said) = promtool(&["test", "rules", "handoff-alerts.test.yml"], &dir, None);
    assert!(ok, "promtool test rules:\n{said}");
    // The unit tests cover the alerts they say they do.
    let tests = std::fs::read_to_string(dir.join("handoff-alerts.test.yml")).unwrap();
    for alert in [
        "HandoffConfigReloadFailed",
        "HandoffHigh5xxRate",
        "HandoffUpstreamNoHealthyServers",
        "HandoffInstanceDown",
    ] {
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert}");
    }
    // The instance-down rules name the scrape job the README tells the operator to use.
    let rules = alert_rules();
    for alert in ["HandoffInstanceDown", "HandoffTargetMissing"] {
        let rule = rules.iter().find(|r| r.alert == alert).expect(alert);
        assert!(
            rule.expr.contains(r#"up{job="handoff"}"#),
            "{alert}: {}",
            rule.expr
        );
    }
}

// --- the gateway ---------------------------------------------------------------------------

/// A browser's navigation with `cookie`: the status.
async fn visit(url: String, cookie: &str) -> u16 {
    client()
        .get(url)
        .header("Accept", "text/html")
        .header("Sec-Fetch-Dest", "document")
        .header("Cookie", cookie)
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_rules_and_dashboard_use_only_what_the_gateway_exports() {
    let rules = alert_rules();
    let queries = dashboard_queries();

    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::rsa("rsa_private.pem", "k1");
    idp.publish(&[&key]);
    idp.add_session("opaque-ada", person("ada.ops@corp.example", &["eng"]));
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let redis = RedisServer::start();
    // Nothing listens there (ports from free_port are never handed to a listener twice).
    let unreachable_vendor = free_port();
    let secret = |name: &str| fixtures().join(name).display().to_string();
    let body = format!(
        "[session]\ncookie = \"sid\"\nalgorithms = [\"RS256\"]\n\
         [session.jwks]\nurl = \"{jwks}\"\n\
         [session.userinfo]\nurl = \"{userinfo}\"\n\
         [upstreams.intranet]\nservers = [\"{intranet}\"]\n\
         [upstreams.intranet.health_check]\ntype = \"tcp\"\ninterval_ms = 200\n\
         [state]\nredis_url = \"{redis}\"\nkey_prefix = \"monitoring-{redis_port}:\"\n\
         [apps.yourgpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"{yourgpt_secret}\" }}\napi_url = \"{api}\"\n\
         login_url = \"https://chatbot.yourgpt.test/\"\n\
         [apps.offline]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"{yourgpt_secret}\" }}\napi_url = \"http://127.0.0.1:{unreachable_vendor}\"\n\
         login_url = \"https://chatbot.yourgpt.test/\"\n\
         [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://chat.example.test/\"\n\
         secret = {{ file = \"{typingmind_secret}\" }}\n\
         [apps.forum]\nkind = \"discourse_connect\"\nforum_url = \"https://forum.example.test\"\n\
         secret = {{ file = \"{discourse_secret}\" }}\n\
         [[routes]]\npath = \"/ai/forum\"\napp = \"forum\"\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"yourgpt\"\n\
         [[routes]]\npath = \"/ai/offline\"\napp = \"offline\"\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        jwks = idp.jwks_url(),
        userinfo = idp.userinfo_url(),
        intranet = intranet.server(),
        redis = redis.url(),
        redis_port = redis.port,
        yourgpt_secret = secret("yourgpt-secret.txt"),
        typingmind_secret = secret("typingmind-secret.txt"),
        discourse_secret = secret("discourse-secret.txt"),
        api = api.url(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let server_extra =
        format!("metrics_listen = \"127.0.0.1:{metrics_port}\"\nmax_connections = 64");
    let config = write_process_config(dir.path(), port, &server_extra, &body);
    let gw = GatewayProcess::start(&config, &[]);
    tokio::task::spawn_blocking(move || {
        wait_until_connectable(([127, 0, 0, 1], port).into());
        wait_until_connectable(([127, 0, 0, 1], metrics_port).into());
    })
    .await
    .unwrap();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // Reloads first (an unchanged file keeps every cache and count): one that works, one
    // refused.
    let reloads = |result: &str| format!("handoff_config_reloads_total{{result=\"{result}\"}}");
    let wait_for = |series: String| async move {
        let start = Instant::now();
        while metric(metrics_port, &series).await != Some(1.0) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{series} never 1"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    gw.signal(libc::SIGHUP);
    wait_for(reloads("success")).await;
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{good}[[routes]]\npath = \"/typo\"\nupstream = \"intrante\"\n"),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    wait_for(reloads("failure")).await;
    std::fs::write(&config, good).unwrap();

    // People: a JWT cookie (twice: remembered), a bearer token, an opaque cookie the userinfo
    // endpoint knows, an expired token, and an opaque cookie while the endpoint is down.
    let ada = format!(
        "sid={}",
        key.sign(&person("ada.ops@corp.example", &["eng"]))
    );
    assert_eq!(visit(url("/page"), &ada).await, 200);
    assert_eq!(visit(url("/page"), &ada).await, 200);
    let bot = key.sign(&person("bot.ops@corp.example", &[]));
    let r = client()
        .get(url("/api/x"))
        .header("Authorization", format!("Bearer {bot}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(visit(url("/page"), "sid=opaque-ada").await, 200);
    let whoami = |cookie: String| {
        let request = client()
            .get(url("/_handoff/whoami"))
            .header("Cookie", cookie);
        async move { request.send().await.expect("whoami").status().as_u16() }
    };
    let mut expired = person("old.ops@corp.example", &[]);
    expired["exp"] = serde_json::json!(now() - 3600);
    assert_eq!(whoami(format!("sid={}", key.sign(&expired))).await, 401);
    idp.set_userinfo_mode(IdpMode::Down);
    assert_eq!(whoami("sid=opaque-nobody".to_string()).await, 503);
    idp.set_userinfo_mode(IdpMode::Normal);

    // Handoffs: redirected; a confirmation email (a round trip to Redis); the vendor's error;
    // a vendor nobody answers for; TypingMind.
    assert_eq!(visit(url("/ai/yourgpt"), &ada).await, 302);
    api.add_unconfirmed("linus.ops@corp.example");
    let linus = format!("sid={}", key.sign(&person("linus.ops@corp.example", &[])));
    assert_eq!(visit(url("/ai/yourgpt"), &linus).await, 302);
    api.set_verify(Mode::CodeInBody(403));
    assert_eq!(visit(url("/ai/yourgpt"), &ada).await, 502);
    api.set_verify(Mode::Real);
    assert_eq!(visit(url("/ai/offline"), &ada).await, 502);
    assert_eq!(visit(url("/ai/chat"), &ada).await, 302);
    // A forum request that is not the forum's.
    assert_eq!(visit(url("/ai/forum?sso=x&sig=y"), &ada).await, 400);

    // Requests are counted after their answer went out and the health check runs every
    // 200 ms: scrape until nothing is missing, for up to 15 s, then say what is.
    let start = Instant::now();
    let (text, exported) = loop {
        let text = scrape(metrics_port).await;
        let exported = Exported::parse(&text);
        let mut found = Vec::new();
        for rule in &rules {
            let templated: BTreeSet<String> = rule
                .annotations
                .values()
                .flat_map(|t| templated_labels(t))
                .collect();
            let templated: Vec<String> = templated.into_iter().collect();
            found.extend(problems(
                &format!("alert {}", rule.alert),
                &rule.expr,
                &templated,
                &exported,
            ));
        }
        for (place, expr, legend) in &queries {
            found.extend(problems(place, expr, legend, &exported));
        }
        if found.is_empty() {
            break (text, exported);
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{}\n\nthe gateway exports:\n{}\n\nits log:\n{}",
            found.join("\n"),
            exported.summary(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The dashboard shows every family the gateway exports.
    let on_dashboard: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, expr, _)| read_expr(expr).unwrap().0)
        .filter_map(|s| Exported::family_of(&exported.0, &s.metric))
        .collect();
    let missing: Vec<_> = exported
        .0
        .keys()
        .filter(|name| name.starts_with("handoff_") && !on_dashboard.contains(*name))
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");

    // The check itself catches a misspelt metric, label or value, and a bare histogram.
    let nothing = Vec::new();
    for (expr, says) in [
        (
            "rate(handoff_request_total[5m])",
            "handoff_request_total is not exported",
        ),
        (
            r#"handoff_requests_total{stauts="5xx"}"#,
            r#"no label "stauts""#,
        ),
        (
            r#"handoff_upstream_servers{state="heathy"} == 0"#,
            r#"{state="heathy"} was never exported"#,
        ),
        (
            r#"handoff_handoffs_total{outcome=~"vendor_error|vendor_unreachabel"}"#,
            "vendor_unreachabel",
        ),
        (
            "sum by (rout) (rate(handoff_requests_total[5m]))",
            r#"label "rout" is on none"#,
        ),
        (
            "histogram_quantile(0.99, rate(handoff_request_duration_seconds[5m]))",
            "is a histogram",
        ),
        (
            r#"{__name__="handoff_requests_total"}"#,
            "without a metric name",
        ),
    ] {
        let found = problems("self-test", expr, &nothing, &exported);
        assert!(
            found.len() == 1 && found[0].contains(says),
            "{expr}: {found:?}"
        );
    }
    let found = problems(
        "self-test",
        "handoff_jwks_keys",
        &["code".into()],
        &exported,
    );
    assert!(
        found.len() == 1 && found[0].contains(r#"label "code" is on none"#),
        "a templated label is checked against the expression's metrics: {found:?}"
    );

    // promtool lints the scrape as Prometheus' own tooling reads it.
    let (ok, said) = promtool(&["check", "metrics"], &monitoring_dir(), Some(&text));
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}
