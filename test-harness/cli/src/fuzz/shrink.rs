//! Minimizing a failing sequence of steps: fewer steps first (the last one
//! alone, then without chunks of the earlier ones), then simpler steps
//! (each header, the body, its chunks, the protocol, the method, the path,
//! the wait, the backend's and the upstreams' answers), keeping each cut
//! that still shows the same finding. Greedy and bounded, as delta
//! debugging in practice is.

use serde_json::{Value, json};

/// How many candidate sequences one minimization may try.
const ATTEMPTS: usize = 400;

/// The smallest sequence found for which `still` holds, from `steps`
/// (for which it holds).
pub(crate) fn shrink(steps: Vec<Value>, still: &mut dyn FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut tries = 0;
    let mut check = |candidate: &[Value]| {
        tries += 1;
        tries <= ATTEMPTS && still(candidate)
    };
    let mut steps = steps;
    if let Some(last) = steps.last().cloned()
        && steps.len() > 1
        && check(std::slice::from_ref(&last))
    {
        steps = vec![last];
    }
    // Drop chunks of the steps before the last, halving the chunk size.
    let mut size = steps.len().saturating_sub(1).div_ceil(2).max(1);
    while steps.len() > 1 {
        let mut start = 0;
        while start < steps.len() - 1 {
            let end = (start + size).min(steps.len() - 1);
            let mut candidate = steps[..start].to_vec();
            candidate.extend_from_slice(&steps[end..]);
            if check(&candidate) {
                steps = candidate;
            } else {
                start = end;
            }
        }
        if size == 1 {
            break;
        }
        size = size.div_ceil(2);
    }
    for i in 0..steps.len() {
        for edit in edits(&steps[i]) {
            let mut candidate = steps.clone();
            edit(&mut candidate[i]);
            if candidate[i] != steps[i] && check(&candidate) {
                steps = candidate;
            }
        }
        // Bodies shrink by halves for as long as the finding stays.
        while let Some(body) = steps[i]["request"]["body"].as_str().map(str::to_owned) {
            if body.len() < 2 {
                break;
            }
            let mut candidate = steps.clone();
            let half: String = body.chars().take(body.chars().count() / 2).collect();
            candidate[i]["request"]["body"] = json!(half);
            if let Some(request) = candidate[i]["request"].as_object_mut() {
                request.remove("chunks");
            }
            if !check(&candidate) {
                break;
            }
            steps = candidate;
        }
    }
    steps
}

/// One simplification of a step.
type Edit = Box<dyn Fn(&mut Value)>;

/// The simplifications worth trying on `step`, each applied to the step as
/// the earlier ones left it.
fn edits(step: &Value) -> Vec<Edit> {
    let mut edits: Vec<Edit> = Vec::new();
    if let Some(headers) = step["request"]["headers"].as_object() {
        for name in headers.keys() {
            let name = name.clone();
            edits.push(Box::new(move |s: &mut Value| {
                if let Some(h) = s["request"]["headers"].as_object_mut() {
                    h.remove(&name);
                }
            }));
        }
    }
    for key in ["body", "chunks", "protocol"] {
        edits.push(Box::new(move |s: &mut Value| {
            if let Some(r) = s["request"].as_object_mut() {
                r.remove(key);
            }
        }));
    }
    edits.push(Box::new(|s: &mut Value| {
        s["request"]["method"] = json!("GET")
    }));
    edits.push(Box::new(|s: &mut Value| s["request"]["path"] = json!("/")));
    edits.push(Box::new(|s: &mut Value| {
        s["response"] = json!({"status": 200})
    }));
    if let Some(upstreams) = step["upstreams"].as_object() {
        for name in upstreams.keys() {
            let name = name.clone();
            edits.push(Box::new(move |s: &mut Value| {
                if let Some(u) = s["upstreams"].as_object_mut() {
                    u.remove(&name);
                }
            }));
        }
    }
    for key in ["upstreams", "wait_ms"] {
        edits.push(Box::new(move |s: &mut Value| {
            if let Some(o) = s.as_object_mut() {
                o.remove(key);
            }
        }));
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_and_fields_that_matter_are_all_that_stay() {
        let step = |n: u64, bad: bool| {
            let mut headers = serde_json::Map::new();
            headers.insert("x-n".into(), json!(n.to_string()));
            if bad {
                headers.insert("x-bad".into(), json!("1"));
            }
            json!({"request": {"method": "POST", "path": "/a/b", "headers": headers,
                   "body": "0123456789abcdef"}, "response": {"status": 404}, "wait_ms": 5})
        };
        let steps: Vec<Value> = (0..20).map(|n| step(n, n == 19)).collect();
        // The last step fails when it has x-bad and a body of at least 4
        // bytes (the fuzzer's history always ends at the failing step).
        let mut still = |s: &[Value]| {
            s.last().is_some_and(|s| {
                s["request"]["headers"].get("x-bad").is_some()
                    && s["request"]["body"].as_str().is_some_and(|b| b.len() >= 4)
            })
        };
        let small = shrink(steps, &mut still);
        assert_eq!(small.len(), 1);
        assert_eq!(
            small[0],
            json!({"request": {"method": "GET", "path": "/", "headers": {"x-bad": "1"},
                   "body": "0123"}, "response": {"status": 200}})
        );
    }

    #[test]
    fn a_finding_that_needs_history_keeps_it() {
        let steps: Vec<Value> = (0..10)
            .map(|n| json!({"request": {"path": format!("/{n}")}}))
            .collect();
        // Needs step /2 before the last.
        let mut still =
            |s: &[Value]| s.len() >= 2 && s.iter().any(|s| s["request"]["path"] == "/2");
        let small = shrink(steps, &mut still);
        assert_eq!(small.len(), 2, "{small:?}");
        assert_eq!(small[0]["request"]["path"], "/2");
    }
}
