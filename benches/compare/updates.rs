//! The `updates` row (fleet.md §3): one check pass over 200 services of
//! 50 images (two policies: `patch` by tag list, `digest` by HEAD) against
//! Debian's `docker-registry` with basic auth on loopback, through the
//! client and planner `serve`'s checks use; beside the same pass without
//! the cache, in the same run.

use std::time::{Duration, Instant};

use super::*;
use ::kedge::plan::updates::{Policy, candidate};
use ::kedge::registry::{Client, Login, Reference};
use support::registry::Registry;

const IMAGES: usize = 50;
const SERVICES_PER_IMAGE: usize = 4;

/// One pass: every service asks for what its policy needs. Returns the
/// requests made and the time.
fn pass(client: &Client, images: &[Reference]) -> (u64, Duration) {
    let before = client.requests();
    let start = Instant::now();
    for (i, image) in images.iter().enumerate() {
        for _ in 0..SERVICES_PER_IMAGE {
            if i % 2 == 0 {
                let tags = client.tags(image).unwrap();
                let _ = candidate(&image.tag, &tags, Policy::Patch, None, &[]);
            } else {
                client.digest(image).unwrap();
            }
        }
    }
    (client.requests() - before, start.elapsed())
}

pub fn updates() -> Vec<Row> {
    let registry = Registry::start("bench", "bench-pw");
    let ns = unique_name("updbench");
    let images: Vec<Reference> = (0..IMAGES)
        .map(|i| {
            let pushed = registry.push(IMAGE_1, &format!("{ns}/img{i}:1.0.0"));
            Reference::parse(&pushed).unwrap()
        })
        .collect();
    let login = || Login {
        host: registry.host(),
        username: "bench".into(),
        password: "bench-pw".into(),
    };
    let cached = Client::new(vec![login()], Duration::from_secs(60));
    let (requests, took) = pass(&cached, &images);
    let uncached = Client::new(vec![login()], Duration::ZERO);
    let (raw_requests, raw_took) = pass(&uncached, &images);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    vec![Row {
        what: format!(
            "one update check of {} services over {IMAGES} images (patch: tag list, digest: HEAD), basic auth, loopback",
            IMAGES * SERVICES_PER_IMAGE
        ),
        kedge: format!("{requests} requests, {}", ms(took)),
        baseline: format!(
            "the same pass without the cache: {raw_requests} requests, {}",
            ms(raw_took)
        ),
        goal: "≤ 100 requests, ≤ 2 s".into(),
    }]
}
