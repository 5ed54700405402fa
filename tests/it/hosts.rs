//! Docker hosts reached without an agent (fleet.md §4), on the hosts lab:
//! engines in network namespaces, each with an sshd beside it. `kedge host
//! list` and `kedge host check` reach them through one SSH connection that
//! forwards the engine's socket; host keys are pinned on first use, a
//! changed one is refused and named, an open key file is refused.

use crate::support::Kedge;
use crate::support::hosts_lab::HostsLab;

pub(crate) fn kedge_for(lab: &HostsLab, extra: &str) -> (Kedge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = lab.key.display();
    let config = format!(
        "hosts:\n  a:\n    docker_host: ssh://root@{}\n    ssh_key: {key}\n  b:\n    docker_host: ssh://root@{}:22\n    ssh_key: {key}\n{extra}",
        lab.addrs[0], lab.addrs[1]
    );
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let kedge = Kedge::new().env(
        "KEDGE_CONFIG",
        dir.path().join("config.yaml").to_str().unwrap(),
    );
    (kedge, dir)
}

#[test]
fn hosts_are_reached_over_ssh_with_their_keys_pinned() {
    let lab = HostsLab::start();
    let (kedge, _config) = kedge_for(&lab, "");

    let hosts = kedge.run(["host", "list", "-o", "json"]).json();
    let names: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "a", "b"], "{hosts}");
    for h in hosts.as_array().unwrap() {
        assert_eq!(h["state"], "up", "{hosts}");
        assert!(h["engine"].as_str().unwrap().contains("API"), "{hosts}");
    }
    assert_eq!(hosts[1]["endpoint"], format!("ssh://root@{}", lab.addrs[0]));
    kedge
        .run(["host", "list"])
        .success()
        .stdout_has("NAME")
        .stdout_has("ENDPOINT")
        .stdout_has("STACKS");

    // The engine behind `a` is the lab's own, not this machine's.
    let a = kedge.run(["host", "check", "a", "-o", "json"]).json();
    assert_eq!(a["state"], "up", "{a}");
    // Its key was recorded on first contact, and the forwarded socket is
    // gone with the connection.
    let hosts_dir = kedge.data_dir().join("hosts");
    let known = std::fs::read_to_string(hosts_dir.join("a.known_hosts")).unwrap();
    assert!(known.starts_with(&lab.addrs[0]), "{known}");
    let sockets = || {
        std::fs::read_dir(&hosts_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sock")
            })
            .count()
    };
    assert_eq!(
        sockets(),
        0,
        "the forwarded socket goes with its connection"
    );

    // A new host key on `a`: refused, named, with the way out; `b` is fine.
    lab.rekey(1);
    let refused = kedge.run(["host", "check", "a"]);
    refused.code(1).stdout_has("has changed");
    assert!(
        refused.stdout.contains(&format!(
            "ssh-keygen -f {}",
            hosts_dir.join("a.known_hosts").display()
        )),
        "{}",
        refused.stdout
    );
    kedge
        .run(["host", "check", "b"])
        .success()
        .stdout_has("b: up");
    kedge
        .run(["host", "check", "c"])
        .code(1)
        .stderr_has("no host named 'c' (hosts: local, a, b)");
}

#[test]
fn a_given_known_hosts_file_is_the_only_truth_and_open_keys_are_refused() {
    let lab = HostsLab::start();
    let dir = tempfile::tempdir().unwrap();
    // A known_hosts that knows another key for `a`.
    let other = dir.path().join("other");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, format!("{} {public}", lab.addrs[0])).unwrap();
    // A copy of the client key others may read.
    let open_key = dir.path().join("open_key");
    std::fs::copy(&lab.key, &open_key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let extra = format!(
        "  pinned:\n    docker_host: ssh://root@{}\n    ssh_key: {}\n    ssh_known_hosts: {}\n  open:\n    docker_host: ssh://root@{}\n    ssh_key: {}\n",
        lab.addrs[0],
        lab.key.display(),
        known.display(),
        lab.addrs[1],
        open_key.display()
    );
    let (kedge, _config) = kedge_for(&lab, &extra);
    let pinned = kedge.run(["host", "check", "pinned"]);
    pinned.code(1).stdout_has("pinned: unreachable");
    assert!(pinned.stdout.contains("has changed"), "{}", pinned.stdout);
    // Nothing was added to the operator's file.
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        format!("{} {public}", lab.addrs[0])
    );
    kedge
        .run(["host", "check", "open"])
        .code(1)
        .stdout_has("(mode 644); ssh refuses it: `chmod 600` it");
}

/// A `tcp://` host: its engine reached over TLS with the host's CA and the
/// client's certificate; a CA that did not sign the engine's certificate
/// is refused at the handshake, said as such.
#[test]
fn a_tcp_host_is_reached_over_tls_and_a_foreign_ca_is_refused() {
    let lab = HostsLab::start();
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=someone else",
            "-keyout",
        ])
        .arg(dir.path().join("foreign-key.pem"))
        .arg("-out")
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tls = |ca: &std::path::Path| {
        format!(
            "    tls: {{ca: {}, cert: {}, key: {}}}\n",
            ca.display(),
            lab.tls.join("cert.pem").display(),
            lab.tls.join("key.pem").display()
        )
    };
    let extra = format!(
        "  edge:\n    docker_host: tcp://{addr}:2376\n{ok}  forged:\n    docker_host: tcp://{addr}:2376\n{bad}",
        addr = lab.addrs[1],
        ok = tls(&lab.tls.join("ca.pem")),
        bad = tls(&foreign),
    );
    let (kedge, _config) = kedge_for(&lab, &extra);
    let edge = kedge.run(["host", "check", "edge", "-o", "json"]).json();
    assert_eq!(edge["state"], "up", "{edge}");
    assert_eq!(edge["endpoint"], format!("tcp://{}:2376", lab.addrs[1]));
    assert!(edge["engine"].as_str().unwrap().contains("API"), "{edge}");
    let left: Vec<_> = std::fs::read_dir(kedge.data_dir().join("hosts"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".sock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let forged = kedge.run(["host", "check", "forged"]);
    forged.code(1).stdout_has("the TLS handshake with");
    assert!(forged.stdout.contains("UnknownIssuer"), "{}", forged.stdout);
}

/// `serve` looks at each configured host every check interval: the
/// `kedge_host_up` gauge follows an engine that stops and comes back (over
/// the SSH connection it kept), said once each way in its log.
#[test]
fn serve_watches_each_host_and_the_gauge_follows_an_engine_that_stops_and_returns() {
    use crate::support::plain_http::get;
    use crate::support::wait_for;
    let lab = HostsLab::start();
    let extra = format!(
        "  edge:\n    docker_host: tcp://{}:2376\n    tls: {{ca: {}, cert: {}, key: {}}}\n",
        lab.addrs[1],
        lab.tls.join("ca.pem").display(),
        lab.tls.join("cert.pem").display(),
        lab.tls.join("key.pem").display()
    );
    let (kedge, _config) = kedge_for(&lab, &extra);
    let api = kedge.serve_api(&["--check-interval", "1s"], &[]);
    let addr: std::net::SocketAddr = api.addr.parse().unwrap();
    let up = |host: &str| -> Option<f64> {
        let r = get(addr, "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        let series = format!("kedge_host_up{{host=\"{host}\"}} ");
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
    };
    wait_for(60, "every host up", || {
        (up("a") == Some(1.0) && up("b") == Some(1.0) && up("edge") == Some(1.0)).then_some(())
    });
    assert_eq!(up("local"), None, "`local` is the engine serve itself uses");

    lab.stop_engine(1);
    wait_for(60, "host a down, the others up", || {
        (up("a") == Some(0.0) && up("b") == Some(1.0)).then_some(())
    });
    lab.start_engine(1);
    wait_for(60, "host a back", || (up("a") == Some(1.0)).then_some(()));
    // A `kedge host check` beside serve has a connection of its own: serve's
    // is not taken from it.
    kedge.run(["host", "check", "a"]).success();
    kedge.run(["host", "check", "edge"]).success();
    let hosts_dir = kedge.data_dir().join("hosts");
    let pid = api.serve.child.id();
    for host in ["a", "edge"] {
        let socket = hosts_dir.join(format!("{host}-{pid}.sock"));
        assert!(
            std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            "serve's way to {host} is still there: {}",
            socket.display()
        );
    }
    let log = api.serve.log();
    assert_eq!(
        log.matches("host a is unreachable").count(),
        1,
        "said once: {log}"
    );
    assert_eq!(log.matches("host a answers again").count(), 1, "{log}");
}
