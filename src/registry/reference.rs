//! registry: an image reference as compose files write it, split the way
//! the distribution API addresses it (registry host, repository, tag).

/// Where Docker Hub's API lives, for images that name no registry.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `127.0.0.1:5000`, `ghcr.io`, [`DOCKER_HUB`].
    pub registry: String,
    /// `library/redis`, `team/app`.
    pub repository: String,
    /// `latest` when the reference names none.
    pub tag: String,
    /// `sha256:…` when the reference pins one.
    pub digest: Option<String>,
}

impl Reference {
    /// `None` for what is not an image reference a registry serves.
    pub fn parse(image: &str) -> Option<Reference> {
        if image.is_empty() || image.contains(char::is_whitespace) || image.contains("${") {
            return None;
        }
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) if d.starts_with("sha256:") => (n, Some(d.to_string())),
            Some(_) => return None,
            None => (image, None),
        };
        // A tag is after the last colon that follows the last slash.
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], name[slash + i + 1..].to_string()),
            None => (name, "latest".to_string()),
        };
        if path.is_empty() || tag.is_empty() {
            return None;
        }
        let (registry, repository) = match path.split_once('/') {
            // A first component with a dot or a colon, or `localhost`, is a
            // registry host, as docker reads it.
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => (DOCKER_HUB.to_string(), path.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{path}")),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        };
        if !valid(&repository) {
            return None;
        }
        Some(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The same image at another tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: tag.to_string(),
            digest: None,
            ..self.clone()
        }
    }

    /// Plain HTTP for a registry on this machine, as the engine allows it
    /// without configuration; HTTPS everywhere else.
    pub fn base_url(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        let loopback = host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_the_engine_reads_them() {
        let r = |s: &str| Reference::parse(s).map(|r| (r.registry, r.repository, r.tag, r.digest));
        let some = |reg: &str, repo: &str, tag: &str| {
            Some((reg.to_string(), repo.to_string(), tag.to_string(), None))
        };
        assert_eq!(r("redis"), some(DOCKER_HUB, "library/redis", "latest"));
        assert_eq!(r("redis:7"), some(DOCKER_HUB, "library/redis", "7"));
        assert_eq!(r("team/app:1.4.2"), some(DOCKER_HUB, "team/app", "1.4.2"));
        assert_eq!(
            r("ghcr.io/o/app:v1.2.3-alpine"),
            some("ghcr.io", "o/app", "v1.2.3-alpine")
        );
        assert_eq!(
            r("127.0.0.1:5000/app"),
            some("127.0.0.1:5000", "app", "latest")
        );
        assert_eq!(r("localhost/app:2"), some("localhost", "app", "2"));
        let pinned = Reference::parse("app:1@sha256:abc").unwrap();
        assert_eq!(pinned.digest.as_deref(), Some("sha256:abc"));
        for bad in ["", "App:1", "app:${TAG}", "a b", "app@md5:x", "app:"] {
            assert_eq!(Reference::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Reference::parse("127.0.0.1:5000/app").unwrap().base_url(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            Reference::parse("ghcr.io/o/app").unwrap().base_url(),
            "https://ghcr.io"
        );
    }
}
