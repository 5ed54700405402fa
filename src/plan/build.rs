//! Whether a service with `build:` is built before an apply: exactly when
//! its build inputs changed or its image is not on the host, never merely
//! because something else about the service changed.

use crate::desired::render::ServiceSpec;

pub use crate::observe::ImageOnHost;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildReason {
    ImageMissing,
    /// The build fingerprint differs from the deployed one.
    InputsChanged,
    /// The service changed and its build inputs cannot be fingerprinted
    /// (no object ids, as for a stored snapshot): built to be safe.
    InputsUnknown,
    /// Nothing deployed tells the inputs (a first deploy, or a record of
    /// an older Kedge) and the image was not built by Kedge from these.
    ImageFromOtherInputs,
}

impl BuildReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildReason::ImageMissing => "its image is not on the host",
            BuildReason::InputsChanged => "its build inputs changed",
            BuildReason::InputsUnknown => "it changed and its build inputs are not known from Git",
            BuildReason::ImageFromOtherInputs => {
                "its image on the host was not built by Kedge from these inputs"
            }
        }
    }
}

/// Why `spec` must be built now, or `None`. `previous`: the service as last
/// deployed.
pub fn build_reason(
    spec: &ServiceSpec,
    previous: Option<&ServiceSpec>,
    image: &ImageOnHost,
) -> Option<BuildReason> {
    spec.build.as_ref()?;
    let ImageOnHost::Present { build_label } = image else {
        return Some(BuildReason::ImageMissing);
    };
    // The hash covers the build inputs: an unchanged service keeps its image.
    if previous.is_some_and(|p| p.hash == spec.hash) {
        return None;
    }
    let Some(fingerprint) = &spec.build_fingerprint else {
        return Some(BuildReason::InputsUnknown);
    };
    match previous.and_then(|p| p.build_fingerprint.as_ref()) {
        Some(deployed) if deployed == fingerprint => None,
        // Built from these inputs once (a revert, a rollback), and put back
        // under its name from its build's tag: the very image, no build.
        Some(_) if build_label.as_ref() == Some(fingerprint) => None,
        Some(_) => Some(BuildReason::InputsChanged),
        None if build_label.as_ref() == Some(fingerprint) => None,
        None => Some(BuildReason::ImageFromOtherInputs),
    }
}

/// Where Kedge keeps the image of one build of a service: its reference
/// with the tag `kedge-` and the first 16 hex of the build fingerprint
/// (`app-web:kedge-1f2e…`). A restore, a rollback or a revert puts that
/// image back under the service's name, so they run the exact image that
/// was deployed then, whatever was built or tagged under the name since.
pub fn build_tag(image: &str, fingerprint: &str) -> String {
    // The tag follows the last `:` after the last `/` (a registry's port
    // comes before it); a digest (`@sha256:…`) is no name to tag.
    let name = image.split('@').next().unwrap_or(image);
    let repo = match name.rfind(':') {
        Some(at) if !name[at..].contains('/') => &name[..at],
        _ => name,
    };
    let short: String = fingerprint.chars().take(16).collect();
    format!("{repo}:kedge-{short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hash: &str, build: bool, fingerprint: Option<&str>) -> ServiceSpec {
        ServiceSpec {
            name: "app".into(),
            hash: hash.into(),
            image: None,
            build: build.then(|| "app@t1".into()),
            build_fingerprint: fingerprint.map(String::from),
            replicas: 1,
            restart: None,
            ignored: false,
        }
    }

    fn present(label: Option<&str>) -> ImageOnHost {
        ImageOnHost::Present {
            build_label: label.map(String::from),
        }
    }

    /// What, the service now, as deployed, the image on the host, the answer.
    type Case = (
        &'static str,
        ServiceSpec,
        Option<ServiceSpec>,
        ImageOnHost,
        Option<BuildReason>,
    );

    #[test]
    fn builds_exactly_when_inputs_changed_or_the_image_is_missing() {
        use BuildReason::*;
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("not a build service", spec("h2", false, None), Some(spec("h1", false, None)), ImageOnHost::Missing, None),
            ("unchanged, image present", spec("h1", true, Some("f1")), Some(spec("h1", true, Some("f1"))), present(None), None),
            ("unchanged, image removed by hand", spec("h1", true, Some("f1")), Some(spec("h1", true, Some("f1"))), ImageOnHost::Missing, Some(ImageMissing)),
            ("environment-only change", spec("h2", true, Some("f1")), Some(spec("h1", true, Some("f1"))), present(None), None),
            ("context, dockerfile or args changed", spec("h2", true, Some("f2")), Some(spec("h1", true, Some("f1"))), present(Some("f1")), Some(InputsChanged)),
            ("changed, inputs not known from Git", spec("h2", true, None), Some(spec("h1", true, None)), present(None), Some(InputsUnknown)),
            ("first deploy, no image", spec("h1", true, Some("f1")), None, ImageOnHost::Missing, Some(ImageMissing)),
            ("first deploy, image Kedge built from these inputs", spec("h1", true, Some("f1")), None, present(Some("f1")), None),
            ("first deploy, image built by hand", spec("h1", true, Some("f1")), None, present(None), Some(ImageFromOtherInputs)),
            ("first deploy, image from other inputs", spec("h1", true, Some("f1")), None, present(Some("f0")), Some(ImageFromOtherInputs)),
            ("record of an older Kedge, image labelled", spec("h2", true, Some("f1")), Some(spec("h1", true, None)), present(Some("f1")), None),
            ("record of an older Kedge, image unlabelled", spec("h2", true, Some("f1")), Some(spec("h1", true, None)), present(None), Some(ImageFromOtherInputs)),
            ("reverted to inputs built before, their image put back", spec("h1", true, Some("f1")), Some(spec("h2", true, Some("f2"))), present(Some("f1")), None),
        ];
        for (what, now, before, image, want) in cases {
            assert_eq!(build_reason(&now, before.as_ref(), &image), want, "{what}");
        }
    }

    #[test]
    fn a_build_is_tagged_by_its_fingerprint_beside_its_name() {
        let fp = "1f2e3d4c5b6a79880123456789abcdef";
        for (image, want) in [
            ("shop-web", "shop-web:kedge-1f2e3d4c5b6a7988"),
            ("shop-web:latest", "shop-web:kedge-1f2e3d4c5b6a7988"),
            ("acme/app:1.2", "acme/app:kedge-1f2e3d4c5b6a7988"),
            (
                "registry.local:5000/app",
                "registry.local:5000/app:kedge-1f2e3d4c5b6a7988",
            ),
            (
                "registry.local:5000/app:2",
                "registry.local:5000/app:kedge-1f2e3d4c5b6a7988",
            ),
            ("app@sha256:abcd", "app:kedge-1f2e3d4c5b6a7988"),
        ] {
            assert_eq!(build_tag(image, fp), want, "{image}");
        }
    }
}
