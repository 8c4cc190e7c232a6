//! One status code per fault, for unary calls as for sessions (the table
//! is in `shim.proto`). A session maps the faults of its messages itself;
//! a unary call's request is decoded by tonic before giva sees it, and
//! tonic answers those faults with other codes: this rewrites them.

use tonic::codegen::http::{HeaderValue, Response};

/// `grpc-status` of an over-long message from tonic (`OUT_OF_RANGE`).
const OUT_OF_RANGE: &[u8] = b"11";
/// `grpc-status` of an undecodable message from tonic (`INTERNAL`).
const INTERNAL: &[u8] = b"13";

/// A unary call's answer with tonic's codes for a message over the size
/// limit (`OUT_OF_RANGE`) or one that does not decode (`INTERNAL`, for
/// example a string that is not UTF-8) rewritten to the session's:
/// `RESOURCE_EXHAUSTED` and `INVALID_ARGUMENT`. Such answers carry their
/// status in their headers (a "trailers-only" response); every other
/// answer passes unchanged.
pub fn unary_codes<B>(mut resp: Response<B>) -> Response<B> {
    let headers = resp.headers_mut();
    let Some(code) = headers.get("grpc-status").map(HeaderValue::as_bytes) else {
        return resp;
    };
    // The message is percent-encoded (spaces as %20).
    let message = headers
        .get("grpc-message")
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let starts = |prefix: &str| message.starts_with(prefix.replace(' ', "%20").as_bytes());
    let new = if code == OUT_OF_RANGE && starts("Error, decoded message length too large") {
        Some(tonic::Code::ResourceExhausted)
    } else if code == INTERNAL && starts("failed to decode Protobuf message") {
        Some(tonic::Code::InvalidArgument)
    } else {
        None
    };
    if let Some(c) = new {
        headers.insert("grpc-status", HeaderValue::from(c as i32));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: &str, message: &str) -> Response<()> {
        let mut r = Response::new(());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_str(code).unwrap());
        r.headers_mut()
            .insert("grpc-message", HeaderValue::from_str(message).unwrap());
        r
    }

    fn code(r: &Response<()>) -> &[u8] {
        r.headers().get("grpc-status").unwrap().as_bytes()
    }

    #[test]
    fn decoding_faults_get_the_sessions_codes() {
        let r = unary_codes(answer(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%201%20bytes",
        ));
        assert_eq!(code(&r), b"8");
        let r = unary_codes(answer(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20invalid%20string",
        ));
        assert_eq!(code(&r), b"3");
        // Other answers pass as they are.
        let r = unary_codes(answer("13", "scan%20failed"));
        assert_eq!(code(&r), b"13");
        let r = unary_codes(answer("5", "not%20found"));
        assert_eq!(code(&r), b"5");
        let r = unary_codes(Response::new(()));
        assert!(r.headers().get("grpc-status").is_none());
    }
}
