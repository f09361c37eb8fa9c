//! The call to an external authorization service and what its answer
//! means, as Envoy's ext_authz HTTP service: the request's method, its path
//! under the configured prefix and the configured headers go out (with the
//! body when configured, saying whether it was cut); a 200 allows, 502–504
//! is no answer (the service could not be reached or did not answer in
//! time: Envoy answers such a callout itself), anything else denies. The
//! glue only sends and reads.

use filter_proxy::headers::HeaderMap;

use crate::config::ExtAuthz;
use crate::policy::AuthzAnswer;

/// The headers of the call for `request` (pseudo-headers first): `body` is
/// the body sent along, if any, and whether it is only its first part.
pub fn call_headers(
    settings: &ExtAuthz,
    request: &HeaderMap,
    body: Option<(&[u8], bool)>,
) -> Vec<(String, String)> {
    let text =
        |name: &str| String::from_utf8_lossy(&request.get(name).unwrap_or_default()).into_owned();
    let mut headers = vec![
        (":method".to_owned(), text(":method")),
        (
            ":path".to_owned(),
            format!("{}{}", settings.path_prefix, text(":path")),
        ),
        (":authority".to_owned(), settings.authority.clone()),
    ];
    for name in &settings.forward_headers {
        // A value that is not UTF-8 cannot be sent through the SDK's
        // string headers; it is left out rather than altered.
        for value in request.values(name) {
            if let Ok(v) = std::str::from_utf8(value) {
                headers.push((name.clone(), v.to_owned()));
            }
        }
    }
    if let Some((_, partial)) = body {
        let partial = if partial { "true" } else { "false" };
        headers.push(("x-envoy-auth-partial-body".to_owned(), partial.to_owned()));
    }
    headers
}

/// What the service's answer means: `headers` are the answer's headers
/// (with `:status`), `body` reads its body, only for a denial.
pub fn answer(headers: Vec<(String, Vec<u8>)>, body: impl FnOnce() -> Vec<u8>) -> AuthzAnswer {
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return AuthzAnswer::Error;
    };
    let plain: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .collect();
    match status {
        200 => AuthzAnswer::Allowed(plain),
        502..=504 => AuthzAnswer::Error,
        _ => AuthzAnswer::Denied {
            status,
            headers: plain,
            body: body(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ExtAuthz {
        ExtAuthz {
            cluster: "authz".into(),
            authority: "authz.internal".into(),
            path_prefix: "/check".into(),
            timeout_ms: 200,
            forward_headers: vec!["x-user".into(), "cookie".into()],
            upstream_headers: vec![],
            client_headers: None,
            failure_mode_allow: false,
            status_on_error: 403,
            with_request_body: None,
        }
    }

    fn request() -> HeaderMap {
        let mut map = HeaderMap::default();
        map.add(":method", b"POST");
        map.add(":path", b"/orders?id=7");
        map.add(":authority", b"shop.example.com");
        map.add("x-user", b"ada");
        map.add("cookie", b"a=1");
        map.add("cookie", b"b=2");
        map.add("x-other", b"not forwarded");
        map
    }

    fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
        headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn the_call_carries_method_prefixed_path_authority_and_the_configured_headers() {
        let headers = call_headers(&settings(), &request(), None);
        assert_eq!(
            pairs(&headers),
            [
                (":method", "POST"),
                (":path", "/check/orders?id=7"),
                (":authority", "authz.internal"),
                ("x-user", "ada"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
            ]
        );
    }

    #[test]
    fn a_body_sent_along_says_whether_it_was_cut() {
        let whole = call_headers(&settings(), &request(), Some((b"{}", false)));
        assert_eq!(
            whole.last().map(|(k, v)| (k.as_str(), v.as_str())),
            Some(("x-envoy-auth-partial-body", "false"))
        );
        let cut = call_headers(&settings(), &request(), Some((b"{", true)));
        assert_eq!(
            cut.last().map(|(k, v)| (k.as_str(), v.as_str())),
            Some(("x-envoy-auth-partial-body", "true"))
        );
    }

    #[test]
    fn a_forwarded_value_that_is_not_utf8_is_left_out() {
        let mut map = request();
        map.add("x-user", b"\xff\xfe");
        let headers = call_headers(&settings(), &map, None);
        assert_eq!(headers.iter().filter(|(k, _)| k == "x-user").count(), 1);
    }

    fn answer_with(status: &str) -> AuthzAnswer {
        answer(
            vec![
                (":status".into(), status.as_bytes().to_vec()),
                ("x-decision".into(), b"yes".to_vec()),
            ],
            || b"denied".to_vec(),
        )
    }

    #[test]
    fn a_200_allows_with_the_answers_headers() {
        assert!(matches!(
            answer_with("200"),
            AuthzAnswer::Allowed(h) if h == [("x-decision".to_owned(), b"yes".to_vec())]
        ));
    }

    #[test]
    fn another_status_denies_with_headers_and_body() {
        assert!(matches!(
            answer_with("403"),
            AuthzAnswer::Denied { status: 403, headers, body }
                if headers.len() == 1 && body == b"denied"
        ));
    }

    #[test]
    fn no_status_and_the_proxys_own_502_to_504_are_no_answer() {
        for status in ["502", "503", "504", "", "2OO"] {
            assert!(
                matches!(answer_with(status), AuthzAnswer::Error),
                "{status}"
            );
        }
        assert!(matches!(answer(vec![], Vec::new), AuthzAnswer::Error));
    }

    #[test]
    fn the_body_is_read_only_for_a_denial() {
        let mut read = false;
        let _ = answer(vec![(":status".into(), b"200".to_vec())], || {
            read = true;
            Vec::new()
        });
        assert!(!read);
    }
}
