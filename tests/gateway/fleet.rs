//! Several gateways as one fleet: the YourGPT email limit and resend window shared on a real
//! `redis-server`, and what happens when Redis dies and comes back.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use handoff::internals::standins::yourgpt::{Mode, YourGptStandIn, CLIENT_ID};

/// Two gateways of one fleet in front of one YourGPT stand-in and one intranet, sharing
/// `redis` (or, with `None`, each on its own).
async fn fleet(api: &YourGptStandIn, redis: Option<&RedisServer>) -> [TestGateway; 2] {
    let intranet = Intranet::start().await;
    let state = redis.map_or(String::new(), |r| {
        format!(
            "[state]\nredis_url = \"{}\"\nkey_prefix = \"fleet-{}:\"\n",
            r.url(),
            r.port
        )
    });
    let config = format!(
        "{session}{upstream}{state}\
         [apps.yourgpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{api}\"\n\
         login_url = \"https://chatbot.yourgpt.test\"\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"yourgpt\"\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
        api = api.url(),
    );
    [TestGateway::start(&config), TestGateway::start(&config)]
}

async fn stand_in() -> YourGptStandIn {
    YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap()
}

/// One click on the YourGPT route by `email`: the status.
async fn click(gw: &TestGateway, email: &str) -> u16 {
    client()
        .get(gw.url("/ai/yourgpt"))
        .header("Accept", "text/html")
        .header(
            "Cookie",
            format!("intranet_session={}", hs256(&person(email, &[]))),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `count` unconfirmed people (`tag`0…), each clicking once, alternately on the two
/// instances; their statuses in order.
async fn people_click(
    api: &YourGptStandIn,
    gws: &[TestGateway; 2],
    tag: &str,
    count: usize,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..count {
        let who = format!("{tag}{i}@corp.example");
        api.add_unconfirmed(&who);
        statuses.push(click(&gws[i % 2], &who).await);
    }
    statuses
}

async fn readyz(gw: &TestGateway) -> (u16, Value) {
    let resp = client()
        .get(gw.url("/_handoff/readyz"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn emails_and_waits(statuses: &[u16]) -> (usize, usize) {
    let sent = statuses.iter().filter(|s| **s == 302).count();
    let waits = statuses.iter().filter(|s| **s == 429).count();
    (sent, waits)
}

#[tokio::test(flavor = "multi_thread")]
async fn twelve_people_over_two_instances_get_exactly_five_emails_in_a_minute() {
    let redis = RedisServer::start();
    let api = stand_in().await;
    let gws = fleet(&api, Some(&redis)).await;
    let statuses = people_click(&api, &gws, "twelve", 12).await;
    assert_eq!(emails_and_waits(&statuses), (5, 7), "{statuses:?}");
    assert_eq!(api.count("email"), 5, "the fleet keeps YourGPT's limit");
    let (status, body) = readyz(&gws[0]).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"]["backend"], "redis");
    assert_eq!(body["state"]["up"], true, "{body}");

    // The same fleet without [state]: each instance counts alone (the bug this fixes).
    let api = stand_in().await;
    let gws = fleet(&api, None).await;
    let statuses = people_click(&api, &gws, "alone", 12).await;
    assert_eq!(emails_and_waits(&statuses), (10, 2), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_person_clicking_on_both_instances_at_once_gets_one_email() {
    let redis = RedisServer::start();
    let api = stand_in().await;
    api.add_unconfirmed("both@corp.example");
    // Every click arrives while the first email is on its way.
    api.set_email(Mode::Slow(300));
    let gws = fleet(&api, Some(&redis)).await;
    let clicks = (0..10).map(|i| click(&gws[i % 2], "both@corp.example"));
    let mut statuses = futures_util::future::join_all(clicks).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [vec![200; 9], vec![302]].concat());
    assert_eq!(api.count("email"), 1);
    // Later clicks, on either instance, within the resend window: no second email.
    for gw in &gws {
        assert_eq!(click(gw, "both@corp.example").await, 200);
    }
    assert_eq!(api.count("email"), 1);
    // Nothing on Redis names the person or the client id in clear.
    let keys = redis_keys(&redis).await;
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(
            key.starts_with(&format!("fleet-{}:yourgpt:", redis.port)),
            "{key}"
        );
        assert!(!key.contains("both") && !key.contains(CLIENT_ID), "{key}");
    }
}

/// Every key on `redis` (the test's own, so `KEYS` is fine).
async fn redis_keys(redis: &RedisServer) -> Vec<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_handoffs_go_on_limited_per_instance_and_sharing_resumes_when_it_is_back() {
    let mut redis = RedisServer::start();
    let api = stand_in().await;
    let gws = fleet(&api, Some(&redis)).await;
    assert_eq!(people_click(&api, &gws, "before", 2).await, [302, 302]);

    redis.kill();
    let started = Instant::now();
    let statuses = people_click(&api, &gws, "during", 12).await;
    // Each instance had sent one email (recorded locally too): four more each, then waits.
    assert_eq!(emails_and_waits(&statuses), (8, 4), "{statuses:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an outage costs no waiting: {:?}",
        started.elapsed()
    );
    for gw in &gws {
        let (status, body) = readyz(gw).await;
        assert_eq!(status, 200, "still ready without Redis: {body}");
        assert_eq!(body["state"]["up"], false, "{body}");
        assert!(body["state"]["errors"].as_u64().unwrap() >= 1, "{body}");
    }
    let url = format!("127.0.0.1:{}", redis.port);
    let warnings = || {
        captured_logs()
            .lines()
            .filter(|l| l.contains(&url) && l.contains("failed"))
            .count()
    };
    assert_eq!(warnings(), 2, "one warning per instance per outage");

    redis.restart();
    // Back within the rest after a failure (1 s) or the next ping (5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    for gw in &gws {
        while readyz(gw).await.1["state"]["up"] != true {
            assert!(
                Instant::now() < deadline,
                "the gateway never saw Redis back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The restarted Redis is empty: the fleet's window starts again — five emails, while
    // each instance's own window is full.
    let statuses = people_click(&api, &gws, "after", 8).await;
    assert_eq!(emails_and_waits(&statuses), (5, 3), "{statuses:?}");
    assert_eq!(api.count("email"), 2 + 8 + 5);
    assert_eq!(warnings(), 2, "no new warning once it is back");
    assert!(
        captured_logs()
            .lines()
            .any(|l| l.contains(&url) && l.contains("answers again")),
        "the recovery is logged"
    );
}
