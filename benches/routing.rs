//! Criterion micro-benchmarks of the per-request decision's pure parts:
//! - route matching (host + longest segment prefix, with path normalisation) in a table of 10
//!   and of 1,000 routes, for a path near the end of the table and for a miss;
//! - claim mapping: verified claims → `Identity` (OIDC names, a nested path, a name split).
//!
//! Run: `cargo bench --bench routing`
// Test, bench and example code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use handoff::internals::identity::{ClaimMapping, ClaimPath};
use handoff::internals::routes::{parse_route_path, HostPattern, RouteTable};
use serde_json::{json, Map, Value};

/// `n` routes: `/app{i}/section` (half of them on a host), plus a catch-all.
fn table(n: usize) -> RouteTable<usize> {
    RouteTable::new((0..n).map(|i| {
        let host = (i % 2 == 1).then(|| HostPattern::parse("*.corp.example").expect("host"));
        let path = parse_route_path(&format!("/app{i}/section")).expect("path");
        (host, path, i)
    }))
}

fn routes(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10, 1000] {
        let t = table(n);
        let near_end = format!("/app{}/section/page?q=1", n - 2);
        group.bench_with_input(BenchmarkId::new("hit", n), &near_end, |b, path| {
            b.iter(|| t.find(Some("intranet.corp.example"), path))
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &"/nowhere/x", |b, path| {
            b.iter(|| t.find(Some("intranet.corp.example"), path))
        });
    }
    group.finish();
}

fn claims() -> Map<String, Value> {
    match json!({
        "sub": "u-1", "email": "ada@corp.example", "name": "Ada King Lovelace",
        "preferred_username": "ada", "picture": "https://pics.corp.example/ada.png",
        "realm_access": { "roles": ["eng", "staff", "ai-users"] },
        "iat": 1, "exp": 2,
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn mapping(c: &mut Criterion) {
    let claims = claims();
    let oidc = ClaimMapping::default();
    let nested = ClaimMapping {
        groups: ClaimPath::new("realm_access.roles"),
        ..ClaimMapping::default()
    };
    let mut group = c.benchmark_group("claim_mapping");
    group.bench_function("oidc_defaults", |b| b.iter(|| oidc.identity(&claims)));
    group.bench_function("nested_groups_and_name_split", |b| {
        b.iter(|| nested.identity(&claims))
    });
    group.finish();
}

criterion_group!(benches, routes, mapping);
criterion_main!(benches);
