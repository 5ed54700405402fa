//! A real SSH git server: Debian's `sshd` on a free loopback port with its
//! own host key and config in a temp dir, serving bare repositories through
//! `git-shell` as the `git` account (`scripts/provision.sh` makes it) to
//! the holder of a generated deploy key. Stopped when dropped, even on panic.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::net::{kill_tree, spawn_listening};

pub struct SshGit {
    dir: TempDir,
    child: Option<Child>,
    pub port: u16,
    /// The deploy key whose public half is authorized.
    pub key: PathBuf,
    /// The bare repositories' directory.
    root: PathBuf,
}

/// A new ed25519 key pair at `path` (private key mode 600, as ssh-keygen
/// writes it) and `path.pub`.
pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kedge-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `SHA256:…` of a public key file, as ssh prints it.
pub fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("run ssh-keygen");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_string()
}

impl SshGit {
    /// Serves the bare repositories in `root` (`root/<name>.git`), which the
    /// `git` account is given read access to.
    pub fn start(root: &Path) -> Self {
        // sshd as root needs its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        // The git account walks from / to the repositories and reads them.
        let mut dir = Some(root);
        while let Some(d) = dir {
            if d.starts_with(std::env::temp_dir()) && d != std::env::temp_dir() {
                let mode = std::fs::metadata(d).unwrap().permissions().mode();
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
            }
            dir = d.parent();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // sshd reads authorized_keys as the git account.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = dir.path().join("deploy_key");
        keygen(&key);
        std::fs::copy(
            key.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        keygen(&dir.path().join("host_key"));
        let mut server = SshGit {
            dir,
            child: None,
            port: 0,
            key,
            root: root.to_path_buf(),
        };
        server.launch();
        server
    }

    /// `ssh://git@127.0.0.1:PORT/<root>/<name>.git`
    pub fn url(&self, name: &str) -> String {
        format!(
            "ssh://git@127.0.0.1:{}{}/{name}.git",
            self.port,
            self.root.display()
        )
    }

    pub fn host_key_fingerprint(&self) -> String {
        fingerprint(&self.dir.path().join("host_key.pub"))
    }

    /// Stops the server, gives it a new host key and starts it again on the
    /// same port: what a client sees when a server is replaced (or faked).
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        let host_key = self.dir.path().join("host_key");
        let _ = std::fs::remove_file(&host_key);
        let _ = std::fs::remove_file(host_key.with_extension("pub"));
        keygen(&host_key);
        self.launch();
    }

    fn launch(&mut self) {
        let d = self.dir.path().to_path_buf();
        let conf = d.join("sshd_config");
        let port = (self.port != 0).then_some(self.port);
        let (child, port) = spawn_listening("sshd", port, |port| {
            std::fs::write(&conf, config(&d, port)).unwrap();
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .expect("start sshd (scripts/provision.sh installs openssh-server)")
        });
        self.port = port;
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Its connections too: a client must connect afresh.
            kill_tree(&mut child);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshGit {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- sshd log\n{}", self.log());
        }
    }
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile {d}/sshd.pid
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers git
MaxStartups 100
"
    )
}
