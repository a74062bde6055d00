//! What the event source mapping does with a function's answer: the pure part of the emulator.
//!
//! With `ReportBatchItemFailures`, a successful invocation that lists failed sequence numbers
//! means "everything before the lowest of them is done; retry from it". An identifier that is not
//! in the batch (or empty) fails the whole batch, as AWS does. A function error fails the whole
//! batch, or splits it in two when bisecting is on.

use serde_json::Value;

/// How an invocation ended, as the mapping sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The function returned; `failures` are the reported item identifiers.
    Returned {
        /// `batchItemFailures[].itemIdentifier`, as given.
        failures: Vec<Option<String>>,
    },
    /// The function raised an error or timed out.
    FunctionError(String),
    /// No answer came back: the emulator could not be reached or its answer read. As when AWS
    /// cannot invoke a function, the batch is sent again until its records are too old; this
    /// uses no retry and splits nothing.
    Unanswered(String),
}

/// What to do next with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Every record is done.
    Done,
    /// Records `from..` must be retried (everything before is done).
    RetryFrom(usize),
    /// Split and retry both halves (bisect on function error).
    Bisect,
    /// The function was not reached: send the whole batch again, not counting it as a retry.
    Resend,
}

/// Reads `batchItemFailures` from a function's response; anything else means no failures.
pub fn answer_from_response(body: &Value, report_batch_item_failures: bool) -> Answer {
    if let (Some(kind), Some(message)) = (body.get("errorType"), body.get("errorMessage")) {
        return Answer::FunctionError(format!(
            "{}: {}",
            kind.as_str().unwrap_or("error"),
            message.as_str().unwrap_or("")
        ));
    }
    if !report_batch_item_failures {
        return Answer::Returned { failures: Vec::new() };
    }
    let failures = body
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(|i| i.get("itemIdentifier").and_then(Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default();
    Answer::Returned { failures }
}

/// Decides what happens to a batch of records (given by sequence number, in order).
pub fn next(sequence_numbers: &[String], answer: &Answer, bisect: bool) -> Next {
    match answer {
        Answer::Unanswered(_) => Next::Resend,
        Answer::FunctionError(_) if bisect && sequence_numbers.len() > 1 => Next::Bisect,
        Answer::FunctionError(_) => Next::RetryFrom(0),
        Answer::Returned { failures } if failures.is_empty() => Next::Done,
        Answer::Returned { failures } => {
            let mut lowest = usize::MAX;
            for failure in failures {
                match failure.as_deref().and_then(|id| sequence_numbers.iter().position(|s| s == id)) {
                    Some(index) => lowest = lowest.min(index),
                    // Unknown or empty identifier: the whole batch failed.
                    None => return Next::RetryFrom(0),
                }
            }
            Next::RetryFrom(lowest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seqs() -> Vec<String> {
        ["10", "20", "30", "40"].map(String::from).to_vec()
    }

    #[test]
    fn retries_from_the_lowest_reported_failure() {
        let body = json!({"batchItemFailures": [{"itemIdentifier": "40"}, {"itemIdentifier": "20"}]});
        assert_eq!(next(&seqs(), &answer_from_response(&body, true), false), Next::RetryFrom(1));
        let ok = json!({"batchItemFailures": []});
        assert_eq!(next(&seqs(), &answer_from_response(&ok, true), false), Next::Done);
        assert_eq!(next(&seqs(), &answer_from_response(&json!(null), true), false), Next::Done);
    }

    #[test]
    fn unknown_identifiers_and_errors_fail_the_whole_batch() {
        let body = json!({"batchItemFailures": [{"itemIdentifier": "99"}]});
        assert_eq!(next(&seqs(), &answer_from_response(&body, true), false), Next::RetryFrom(0));
        let empty = json!({"batchItemFailures": [{"itemIdentifier": ""}, {}]});
        assert_eq!(next(&seqs(), &answer_from_response(&empty, true), false), Next::RetryFrom(0));
        let error = json!({"errorType": "Boom", "errorMessage": "x"});
        assert_eq!(next(&seqs(), &answer_from_response(&error, true), false), Next::RetryFrom(0));
        assert_eq!(next(&seqs(), &answer_from_response(&error, true), true), Next::Bisect);
        assert_eq!(next(&seqs()[..1], &answer_from_response(&error, true), true), Next::RetryFrom(0));
        let unreachable = Answer::Unanswered("connection refused".into());
        assert_eq!(next(&seqs(), &unreachable, true), Next::Resend, "not a function error: no split");
    }

    #[test]
    fn failures_are_ignored_without_report_batch_item_failures() {
        let body = json!({"batchItemFailures": [{"itemIdentifier": "20"}]});
        assert_eq!(next(&seqs(), &answer_from_response(&body, false), false), Next::Done);
    }
}
