//! desired: images run in place of those Git names (fleet.md §3, `apply:
//! deploy`). An override holds while Git still names the image it
//! replaced; once Git names another, Git wins and the override goes.

use sha2::{Digest, Sha256};

use super::render::{Desired, hex};
use crate::model::updates::ImageOverride;

impl Desired {
    /// Runs each override's image in place of its `base` where the service
    /// still names `base`: the spec, its hash (so the service counts as
    /// changed) and the stored rendering say so. Returns the services
    /// whose override no longer applies.
    pub fn run_instead(&mut self, overrides: &[ImageOverride]) -> Vec<String> {
        let mut stale = Vec::new();
        let mut doc: Option<serde_json::Value> = None;
        for o in overrides {
            let Some(spec) = self.services.get_mut(&o.service) else {
                stale.push(o.service.clone());
                continue;
            };
            if spec.image.as_deref() != Some(o.base.as_str()) {
                stale.push(o.service.clone());
                continue;
            }
            if o.image == o.base {
                continue;
            }
            spec.image = Some(o.image.clone());
            let mut hasher = Sha256::new();
            hasher.update(spec.hash.as_bytes());
            hasher.update(b"\0image\0");
            hasher.update(o.image.as_bytes());
            spec.hash = hex(&hasher.finalize());
            let doc = doc.get_or_insert_with(|| {
                serde_json::from_str(&self.rendered).unwrap_or(serde_json::Value::Null)
            });
            if let Some(svc) = doc["services"].get_mut(&o.service)
                && svc.is_object()
            {
                svc["image"] = serde_json::Value::String(o.image.clone());
            }
            self.images.insert(o.service.clone(), o.image.clone());
        }
        if let Some(doc) = doc
            && !doc.is_null()
        {
            self.rendered = serde_json::to_string_pretty(&doc).unwrap_or_default();
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::service::ServiceSpec;

    fn desired() -> Desired {
        let spec = |name: &str, image: &str| ServiceSpec {
            name: name.to_string(),
            hash: format!("h-{name}"),
            image: Some(image.to_string()),
            replicas: 1,
            ..Default::default()
        };
        Desired {
            commit: "c".into(),
            project: "p".into(),
            kedge: Default::default(),
            files: vec![],
            stack_dir: None,
            env_files: vec![],
            dormant: vec![],
            rendered: r#"{"services":{"web":{"image":"app:1.4.2"},"cache":{"image":"redis:7"}}}"#
                .into(),
            inputs: None,
            secrets: None,
            images: Default::default(),
            services: [
                ("web".to_string(), spec("web", "app:1.4.2")),
                ("cache".to_string(), spec("cache", "redis:7")),
            ]
            .into(),
        }
    }

    fn o(service: &str, base: &str, image: &str) -> ImageOverride {
        ImageOverride {
            service: service.into(),
            base: base.into(),
            image: image.into(),
            previous: None,
        }
    }

    #[test]
    fn an_override_holds_while_git_names_its_base() {
        let mut d = desired();
        let stale = d.run_instead(&[
            o("web", "app:1.4.2", "app:1.4.3"),
            o("cache", "redis:6", "redis:6@sha256:aa"),
            o("gone", "x:1", "x:2"),
        ]);
        assert_eq!(stale, ["cache", "gone"], "Git moved cache on; gone is gone");
        assert_eq!(d.services["web"].image.as_deref(), Some("app:1.4.3"));
        assert_ne!(
            d.services["web"].hash, "h-web",
            "the service counts as changed"
        );
        assert_eq!(d.services["cache"].image.as_deref(), Some("redis:7"));
        assert_eq!(d.services["cache"].hash, "h-cache");
        assert_eq!(d.images.len(), 1);
        let doc: serde_json::Value = serde_json::from_str(&d.rendered).unwrap();
        assert_eq!(doc["services"]["web"]["image"], "app:1.4.3");
        assert_eq!(doc["services"]["cache"]["image"], "redis:7");
        // The same override gives the same hash: deploying it twice changes nothing.
        let mut again = desired();
        again.run_instead(&[o("web", "app:1.4.2", "app:1.4.3")]);
        assert_eq!(again.services["web"].hash, d.services["web"].hash);
    }
}
