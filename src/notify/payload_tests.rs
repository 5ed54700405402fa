use super::*;
use crate::events::{Event, EventKind};

fn notice(link: bool) -> Notice {
    let mut fields = serde_json::Map::new();
    fields.insert("commit_message".into(), json!("Bump <api> & co"));
    let e = Event {
        id: 9,
        time: 1_700_000_000_000,
        repo: "shop".into(),
        kind: EventKind::DeployFailed,
        severity: Severity::Error,
        service: None,
        commit: Some("abc1234def".into()),
        message: "service api exited 1".into(),
        fields,
        origin: None,
        stack: None,
    };
    Notice::of(&e, link.then_some("https://kedge.example.com"))
}

fn body(p: &HttpPayload) -> Value {
    serde_json::from_slice(&p.body).unwrap()
}

#[test]
fn the_webhook_posts_the_events_json_signed_when_a_secret_is_set() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature(&Secret("Jefe".into()), b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let n = notice(false);
    let plain = http(SinkKind::Webhook, &n, None);
    assert_eq!(body(&plain), n.json);
    assert_eq!(plain.content_type, "application/json");
    assert!(plain.headers.iter().all(|(h, _)| *h != SIGNATURE_HEADER));
    let secret = Secret("s3".into());
    let signed = http(SinkKind::Webhook, &n, Some(&secret));
    let sig = signed
        .headers
        .iter()
        .find(|(h, _)| *h == SIGNATURE_HEADER)
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(sig, signature(&secret, &signed.body));
    assert!(
        signed
            .headers
            .contains(&("X-Kedge-Event", "deploy_failed".into()))
    );
    assert!(signed.headers.contains(&("X-Kedge-Event-Id", "9".into())));
}

#[test]
fn slack_gets_text_and_blocks_escaped() {
    let v = body(&http(SinkKind::Slack, &notice(true), None));
    assert_eq!(
        v["text"],
        "shop: deploy of abc1234 'Bump &lt;api&gt; &amp; co' failed: service api exited 1"
    );
    let blocks = v["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["section", "context", "actions"]);
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    let section = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(section.contains("Bump &lt;api&gt; &amp; co"), "{section}");
    assert!(
        section.starts_with(":rotating_light: *shop: deploy failed*"),
        "{section}"
    );
    assert_eq!(
        blocks[2]["elements"][0]["url"],
        "https://kedge.example.com/repos/shop"
    );
    // Without a public URL, no button.
    let v = body(&http(SinkKind::Slack, &notice(false), None));
    assert_eq!(v["blocks"].as_array().unwrap().len(), 2);
}

/// A commit message is the pusher's text: in Slack's top-level `text` (the
/// notification itself) as in the blocks, it may not mention or link.
#[test]
fn slack_top_level_text_escapes_mentions_and_links_as_the_blocks_do() {
    let table = [
        ("<!channel> deploy now", "&lt;!channel&gt; deploy now"),
        ("<!here>", "&lt;!here&gt;"),
        ("<@U024BE7LH> look", "&lt;@U024BE7LH&gt; look"),
        (
            "<https://evil.example|Open in Kedge>",
            "&lt;https://evil.example|Open in Kedge&gt;",
        ),
        ("a && b > c", "a &amp;&amp; b &gt; c"),
        ("&lt; stays text", "&amp;lt; stays text"),
        ("plain *bold* text", "plain *bold* text"),
    ];
    for (commit_message, escaped) in table {
        let mut fields = serde_json::Map::new();
        fields.insert("commit_message".into(), json!(commit_message));
        let e = Event {
            id: 1,
            time: 1_700_000_000_000,
            repo: "shop".into(),
            kind: EventKind::DeploySucceeded,
            severity: Severity::Info,
            service: None,
            commit: Some("abc1234def".into()),
            message: String::new(),
            fields,
            origin: None,
            stack: None,
        };
        let n = Notice::of(&e, Some("https://kedge.example.com"));
        let v = body(&http(SinkKind::Slack, &n, None));
        let text = v["text"].as_str().unwrap();
        assert!(text.contains(escaped), "{commit_message:?}: {text}");
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(section.contains(escaped), "{commit_message:?}: {section}");
        for raw in ["<!", "<@", "<http"] {
            assert!(!text.contains(raw), "{commit_message:?}: {text}");
            assert!(!section.contains(raw), "{commit_message:?}: {section}");
        }
    }
}

#[test]
fn discord_gets_one_embed() {
    let v = body(&http(SinkKind::Discord, &notice(true), None));
    let embed = &v["embeds"][0];
    assert_eq!(v["embeds"].as_array().unwrap().len(), 1);
    assert_eq!(embed["title"], "shop: deploy failed");
    assert!(
        embed["description"]
            .as_str()
            .unwrap()
            .contains("service api exited 1")
    );
    assert_eq!(embed["color"], 0xD9_2D_20);
    assert_eq!(embed["timestamp"], "2023-11-14T22:13:20.000Z");
    assert_eq!(embed["url"], "https://kedge.example.com/repos/shop");
    let names: Vec<&str> = embed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Repository", "Event", "Commit"]);
}

#[test]
fn teams_gets_an_adaptive_card() {
    let v = body(&http(SinkKind::Teams, &notice(true), None));
    assert_eq!(v["type"], "message");
    let a = &v["attachments"][0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(a["content"]["type"], "AdaptiveCard");
    assert_eq!(a["content"]["body"][0]["color"], "Attention");
    assert_eq!(a["content"]["body"][2]["type"], "FactSet");
    assert_eq!(a["content"]["actions"][0]["type"], "Action.OpenUrl");
}

#[test]
fn ntfy_and_gotify_take_priority_from_severity() {
    let p = http(SinkKind::Ntfy, &notice(true), None);
    assert_eq!(p.content_type, "text/plain; charset=utf-8");
    assert!(
        String::from_utf8(p.body.clone())
            .unwrap()
            .starts_with("shop: deploy of abc1234")
    );
    let header = |name: &str| {
        p.headers
            .iter()
            .find(|(h, _)| *h == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("Title"), Some("shop: deploy failed"));
    assert_eq!(header("Priority"), Some("4"));
    assert_eq!(header("Tags"), Some("rotating_light,kedge,deploy_failed"));
    assert_eq!(
        header("Click"),
        Some("https://kedge.example.com/repos/shop")
    );
    assert_eq!(ntfy_priority(Severity::Info).0, 2);

    let v = body(&http(SinkKind::Gotify, &notice(true), None));
    assert_eq!(v["priority"], 8);
    assert_eq!(v["title"], "shop: deploy failed");
    assert_eq!(
        v["extras"]["client::notification"]["click"]["url"],
        "https://kedge.example.com/repos/shop"
    );
    assert_eq!(
        gotify_url("https://g.example.com/"),
        "https://g.example.com/message"
    );
    assert_eq!(
        gotify_url("https://g.example.com/message"),
        "https://g.example.com/message"
    );
}

#[test]
fn an_email_has_a_subject_and_the_facts() {
    let (subject, text) = email(&notice(true), "mail");
    assert_eq!(subject, "[kedge] shop: deploy failed");
    assert!(text.starts_with("shop: deploy of abc1234"), "{text}");
    assert!(
        text.contains("\nCommit: abc1234 'Bump <api> & co'\n"),
        "{text}"
    );
    assert!(
        text.contains("Dashboard: https://kedge.example.com/repos/shop"),
        "{text}"
    );
    assert!(text.contains("sink `mail`"), "{text}");
}
