//! model: the sha256 digest in hex, for every stage that keys or stores
//! something by its content (snapshots, deployed files, tokens).

/// The sha256 of `bytes`, in hex: how snapshots are keyed and tokens stored.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lowercase_hex_of_the_sha256() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
