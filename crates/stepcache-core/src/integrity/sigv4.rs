//! AWS Signature Version 4 for single requests without a body (pure): what an S3-compatible
//! server needs to answer a HEAD with credentials. The clock is an argument.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// SHA-256 of the empty payload, the `x-amz-content-sha256` of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A request to sign.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// Already URI-encoded path (see [`encode_path`]).
    pub path: &'a str,
    /// Headers to sign, lowercase names; `host`, `x-amz-date` and `x-amz-content-sha256`
    /// must be among them.
    pub headers: &'a [(&'a str, &'a str)],
    /// `YYYYMMDDTHHMMSSZ`, the value of `x-amz-date`.
    pub amz_date: &'a str,
    /// Signing region.
    pub region: &'a str,
    /// Service (`s3`).
    pub service: &'a str,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// URI-encodes an object path for the canonical request and the URL alike: every byte outside
/// `A-Za-z0-9-_.~/` becomes `%XX`.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Authorization` header value for `req` signed with the given key pair.
pub fn authorization(req: &Request<'_>, access_key: &str, secret_key: &str) -> String {
    let mut headers: Vec<(String, String)> =
        req.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned())).collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let payload =
        headers.iter().find(|(k, _)| k == "x-amz-content-sha256").map(|(_, v)| v.as_str()).unwrap_or(EMPTY_SHA256);
    let canonical = format!("{}\n{}\n\n{}\n{}\n{}", req.method, req.path, canonical_headers, signed, payload);
    let date = req.amz_date.get(..8).unwrap_or(req.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", req.region, req.service);
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{}\n{}\n{}", req.amz_date, scope, hex::encode(Sha256::digest(canonical.as_bytes())));
    let k_date = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, req.region.as_bytes());
    let k_service = hmac(&k_region, req.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
    format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GET Object example of the Amazon S3 SigV4 documentation.
    #[test]
    fn matches_the_published_example() {
        let req = Request {
            method: "GET",
            path: "/test.txt",
            headers: &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", "20130524T000000Z"),
            ],
            amz_date: "20130524T000000Z",
            region: "us-east-1",
            service: "s3",
        };
        let auth = authorization(&req, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn paths_are_encoded_except_unreserved_and_slashes() {
        assert_eq!(encode_path("/b/a dir/f+1.tgz"), "/b/a%20dir/f%2B1.tgz");
        assert_eq!(encode_path("/b/ü"), "/b/%C3%BC");
    }
}
