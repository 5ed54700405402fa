//! A real smart-HTTP git server: lighttpd running `git http-backend` as a
//! CGI behind basic auth, on a free loopback port, with its own config in a
//! temp dir. Stopped when dropped, even on panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::net::spawn_listening;

pub struct HttpGit {
    dir: TempDir,
    child: Child,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl HttpGit {
    /// Serves the bare repositories in `root` (`root/<name>.git`) to
    /// `user`:`password` only.
    pub fn start(root: &Path, user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("users"), format!("{user}:{password}\n")).unwrap();
        let backend = Path::new(&git_exec_path()).join("git-http-backend");
        assert!(backend.exists(), "no {}", backend.display());
        let conf = dir.path().join("lighttpd.conf");
        let (child, port) = spawn_listening("lighttpd", None, |port| {
            std::fs::write(&conf, config(dir.path(), root, &backend, port)).unwrap();
            Command::new(lighttpd())
                .args(["-D", "-f"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start lighttpd (scripts/provision.sh installs it)")
        });
        HttpGit {
            dir,
            child,
            port,
            user: user.into(),
            password: password.into(),
        }
    }

    /// `http://127.0.0.1:PORT/<name>.git`, without credentials.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }

    /// The same URL with the user and password in it.
    pub fn url_with_credentials(&self, name: &str) -> String {
        format!(
            "http://{}:{}@127.0.0.1:{}/{name}.git",
            self.user, self.password, self.port
        )
    }

    /// lighttpd's error log, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- lighttpd error log\n{}", self.error_log());
        }
    }
}

fn config(dir: &Path, root: &Path, backend: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{d}/error.log"
server.modules = ("mod_alias", "mod_setenv", "mod_auth", "mod_authn_file", "mod_cgi")
alias.url = ("/" => "{backend}/")
cgi.assign = ("" => "")
setenv.set-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1")
auth.backend = "plain"
auth.backend.plain.userfile = "{d}/users"
auth.require = ("/" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"#,
        root = root.display(),
        backend = backend.display(),
    )
}

fn git_exec_path() -> String {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("run git");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// lighttpd lives in /usr/sbin, which a non-root PATH may lack.
fn lighttpd() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/lighttpd");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("lighttpd")
    }
}
