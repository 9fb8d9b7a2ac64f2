//! Real payloads of each source read into alerts, the payloads refused and why, and triggers
//! applied to alerts: accepted, passed over, and failing with a message that says where.

use super::*;
use crate::runbook::TriggerAction;

/// A failover proposed by each source's alert, with parameters that have patterns.
const RUNBOOK: &str = r#"
name: failover
params:
  cluster: { type: string, required: true, pattern: "^[a-z0-9-]+$" }
  standby_host: { type: string, required: true, pattern: "^[A-Za-z0-9][A-Za-z0-9.-]*$" }
  mode: { type: string, enum: [fast, careful], default: careful }
triggers:
  - source: alertmanager
    when: "alert.labels.alertname == 'PostgresPrimaryDown'"
    params: { cluster: "{{ alert.labels.cluster }}", standby_host: "{{ alert.labels.standby }}" }
    then: dry-run
  - source: grafana
    when: "alert.labels.alertname == 'PostgresPrimaryDown' and alert['values'].A == 0"
    params: { cluster: "{{ alert.labels.cluster }}", standby_host: "{{ alert.labels.standby }}", mode: fast }
  - source: json
    when: "alert.check == 'postgres-primary'"
    params: { cluster: "{{ alert.cluster }}", standby_host: "{{ alert.standby }}" }
steps:
  - id: look
    run: ["true"]
    read_only: true
    timeout: 5s
"#;

fn runbook() -> Runbook {
    let parsed = crate::parse(RUNBOOK);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    parsed.runbook.expect("the test runbook is valid")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/alerts/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn alerts(source: AlertSource, name: &str) -> Vec<Alert> {
    parse_payload(source, &fixture(name)).expect("a valid payload")
}

fn error(source: AlertSource, body: &str) -> String {
    parse_payload(source, body.as_bytes()).expect_err("a refused payload").to_string()
}

fn trigger(runbook: &Runbook, source: AlertSource) -> &Trigger {
    runbook.triggers.iter().find(|trigger| trigger.source == source).expect("a trigger")
}

fn given(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect())
}

#[test]
fn the_runbook_reads_its_triggers() {
    let runbook = runbook();
    let sources: Vec<_> = runbook.triggers.iter().map(|trigger| trigger.source).collect();
    assert_eq!(sources, [AlertSource::Alertmanager, AlertSource::Grafana, AlertSource::Json]);
    let actions: Vec<_> = runbook.triggers.iter().map(|trigger| trigger.then).collect();
    assert_eq!(actions, [TriggerAction::DryRun, TriggerAction::Propose, TriggerAction::Propose]);
    let first = &runbook.triggers[0];
    assert_eq!(first.at.line, 8);
    let names: Vec<_> = first.params.iter().map(|mapping| mapping.name.as_str()).collect();
    assert_eq!(names, ["cluster", "standby_host"]);
}

#[test]
fn an_alertmanager_alert_is_read_with_its_labels_and_fingerprint() {
    let [alert] = alerts(AlertSource::Alertmanager, "alertmanager-firing.json").try_into().unwrap();
    assert_eq!(alert.source, AlertSource::Alertmanager);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.labels["alertname"], "PostgresPrimaryDown");
    assert_eq!(alert.labels["standby"], "db2.example.com");
    assert_eq!(alert.annotations["summary"], "PostgreSQL primary of main is down");
    assert_eq!(
        alert.starts_at.map(|at| at.to_rfc3339()),
        Some("2025-03-14T03:12:45.918+00:00".to_owned())
    );
    assert_eq!(alert.fingerprint.as_deref(), Some("8f3c2a1b9d0e4f56"));
    assert_eq!(alert_key(&alert), "8f3c2a1b9d0e4f56");
    // Templates see the alert as sent, every field of it.
    assert_eq!(alert.value["endsAt"], "0001-01-01T00:00:00Z");
    assert!(alert.value["generatorURL"].as_str().is_some_and(|url| url.contains("pg_up")));

    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Alertmanager);
    assert_eq!(
        evaluate(&runbook, trigger, &alert),
        Ok(given(&[("cluster", "main"), ("standby_host", "db2.example.com")]))
    );
    let params = resolve(&runbook, trigger, &alert).unwrap().expect("accepted");
    assert_eq!(params["standby_host"].to_string(), "db2.example.com");
    assert_eq!(params["mode"].to_string(), "careful", "defaults are filled in");
}

#[test]
fn a_grouped_notification_gives_each_alert_with_its_own_status() {
    let alerts = alerts(AlertSource::Alertmanager, "alertmanager-grouped.json");
    let statuses: Vec<_> = alerts.iter().map(|alert| alert.status).collect();
    assert_eq!(statuses, [AlertStatus::Firing, AlertStatus::Resolved]);
    let clusters: Vec<_> = alerts.iter().map(|alert| alert.labels["cluster"].as_str()).collect();
    assert_eq!(clusters, ["billing", "main"]);
    let keys: Vec<_> = alerts.iter().map(alert_key).collect();
    assert_eq!(keys, ["1d7e0b3a55c2f908", "8f3c2a1b9d0e4f56"]);
    // `evaluate` leaves the status to the caller, which notes a resolved alert on its proposal.
    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Alertmanager);
    assert_eq!(
        evaluate(&runbook, trigger, &alerts[1]),
        Ok(given(&[("cluster", "main"), ("standby_host", "db2.example.com")]))
    );
}

#[test]
fn a_grafana_alert_is_read_with_its_values() {
    let [alert] = alerts(AlertSource::Grafana, "grafana-firing.json").try_into().unwrap();
    assert_eq!(alert.source, AlertSource::Grafana);
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.labels["grafana_folder"], "Databases");
    assert_eq!(
        alert.starts_at.map(|at| at.to_rfc3339()),
        Some("2025-03-14T03:12:50+00:00".to_owned())
    );
    assert_eq!(alert.value["values"]["C"], 1);
    assert!(alert.value["silenceURL"].is_string());

    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Grafana);
    assert_eq!(
        evaluate(&runbook, trigger, &alert),
        Ok(given(&[("cluster", "main"), ("standby_host", "db2.example.com"), ("mode", "fast")]))
    );
    // The Alertmanager trigger does not answer Grafana's alert, whatever its labels.
    let other = self::trigger(&runbook, AlertSource::Alertmanager);
    assert_eq!(evaluate(&runbook, other, &alert), Ok(None));
}

#[test]
fn a_resolved_grafana_alert_has_no_values() {
    let [alert] = alerts(AlertSource::Grafana, "grafana-resolved.json").try_into().unwrap();
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(alert.fingerprint.as_deref(), Some("a40c5e2f7b1d9c36"));
    assert!(alert.value["values"].is_null());
    // `alert['values'].A` of null is undefined, and unequal to 0: passed over.
    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Grafana);
    assert_eq!(evaluate(&runbook, trigger, &alert), Ok(None));
}

#[test]
fn a_when_that_reads_through_nothing_fails_naming_itself() {
    let source = RUNBOOK.replace(
        "when: \"alert.labels.alertname == 'PostgresPrimaryDown'\"\n    params: { cluster: \"{{ alert.labels.cluster }}\", standby_host: \"{{ alert.labels.standby }}\" }\n    then",
        "when: \"alert.lables.alertname == 'PostgresPrimaryDown'\"\n    params: { cluster: \"{{ alert.labels.cluster }}\", standby_host: \"{{ alert.labels.standby }}\" }\n    then",
    );
    let runbook = crate::parse(&source).runbook.expect("valid: labels are not known statically");
    let alert = alerts(AlertSource::Alertmanager, "alertmanager-firing.json").remove(0);
    let trigger = trigger(&runbook, AlertSource::Alertmanager);
    let error = evaluate(&runbook, trigger, &alert).expect_err("`lables` is undefined");
    assert_eq!(
        error.to_string(),
        "runbook `failover`, trigger on line 8: `when: alert.lables.alertname == 'PostgresPrimaryDown'` failed on this alert: undefined value"
    );
}

#[test]
fn a_json_body_is_the_alert() {
    let [alert] = alerts(AlertSource::Json, "json-body.json").try_into().unwrap();
    assert_eq!(alert.status, AlertStatus::Firing);
    assert!(alert.labels.is_empty());
    assert_eq!(alert.starts_at, None);
    assert_eq!(alert.value["seen_by"][1], "probe-us-1");
    // Without fingerprint or labels, the whole body is the alert's identity.
    assert!(alert_key(&alert).starts_with("body:"), "{}", alert_key(&alert));

    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Json);
    assert_eq!(
        evaluate(&runbook, trigger, &alert),
        Ok(given(&[("cluster", "main"), ("standby_host", "db2.example.com")]))
    );
}

#[test]
fn a_json_body_may_say_its_status_labels_and_fingerprint() {
    let body = r#"{"status": "resolved", "labels": {"b": "2", "a": "1"}, "startsAt": "2025-03-14T03:00:00Z", "check": "x"}"#;
    let [alert] = parse_payload(AlertSource::Json, body.as_bytes()).unwrap().try_into().unwrap();
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(alert.labels.len(), 2);
    assert!(alert.starts_at.is_some());
    // Labels in another order are the same alert.
    let reordered = r#"{"labels": {"a": "1", "b": "2"}, "check": "y"}"#;
    let [other] =
        parse_payload(AlertSource::Json, reordered.as_bytes()).unwrap().try_into().unwrap();
    assert_eq!(alert_key(&alert), alert_key(&other));
    assert!(alert_key(&alert).starts_with("labels:"));

    let with_fingerprint = r#"{"fingerprint": "abc", "labels": {"a": "1"}}"#;
    let [alert] =
        parse_payload(AlertSource::Json, with_fingerprint.as_bytes()).unwrap().try_into().unwrap();
    assert_eq!(alert_key(&alert), "abc");
}

#[test]
fn fields_the_senders_add_are_ignored_and_kept() {
    let body = String::from_utf8(fixture("alertmanager-firing.json"))
        .unwrap()
        .replace(
            r#""receiver": "steady","#,
            r#""receiver": "steady", "newTopLevel": {"x": [1, 2]},"#,
        )
        .replace(
            r#""status": "firing",
      "labels""#,
            r#""status": "firing", "silencedBy": ["x"],
      "labels""#,
        );
    let [alert] =
        parse_payload(AlertSource::Alertmanager, body.as_bytes()).unwrap().try_into().unwrap();
    assert_eq!(alert.value["silencedBy"][0], "x");
}

#[test]
fn an_alert_with_another_name_is_passed_over() {
    let mut alert = alerts(AlertSource::Alertmanager, "alertmanager-firing.json").remove(0);
    alert.value["labels"]["alertname"] = "PostgresReplicationLag".into();
    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Alertmanager);
    assert_eq!(evaluate(&runbook, trigger, &alert), Ok(None));
    // A label the alert lacks is undefined in `when`, and so unequal: passed over too.
    alert.value["labels"] = serde_json::json!({});
    assert_eq!(evaluate(&runbook, trigger, &alert), Ok(None));
}

#[test]
fn a_missing_label_names_the_parameter_and_its_template() {
    let mut alert = alerts(AlertSource::Alertmanager, "alertmanager-firing.json").remove(0);
    alert.value["labels"].as_object_mut().unwrap().remove("standby");
    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Alertmanager);
    let error = evaluate(&runbook, trigger, &alert).expect_err("no standby label");
    assert_eq!(
        error.to_string(),
        "runbook `failover`, trigger on line 8: parameter `standby_host` (`{{ alert.labels.standby }}`, line 10) cannot be rendered from this alert: undefined value (the alert has no such field or label)"
    );
}

#[test]
fn a_label_that_breaks_a_pattern_is_refused_by_the_parameter() {
    let mut alert = alerts(AlertSource::Alertmanager, "alertmanager-firing.json").remove(0);
    alert.value["labels"]["cluster"] = "main; rm -rf /".into();
    alert.value["labels"]["standby"] = "-oProxyCommand=evil".into();
    let runbook = runbook();
    let trigger = trigger(&runbook, AlertSource::Alertmanager);
    let error = resolve(&runbook, trigger, &alert).expect_err("patterns refuse it");
    assert_eq!(
        error.to_string(),
        "runbook `failover`, trigger on line 8: parameter `cluster` must match `^[a-z0-9-]+$`, got `main; rm -rf /`; parameter `standby_host` must match `^[A-Za-z0-9][A-Za-z0-9.-]*$`, got `-oProxyCommand=evil`"
    );
}

#[test]
fn rendering_a_trigger_is_bounded() {
    let source = RUNBOOK.replace(
        "standby_host: \"{{ alert.labels.standby }}\" }\n    then: dry-run",
        "standby_host: \"{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}\" }",
    );
    let parsed = crate::parse(&source);
    let runbook = parsed.runbook.unwrap_or_else(|| panic!("{:?}", parsed.diagnostics));
    let alert = alerts(AlertSource::Alertmanager, "alertmanager-firing.json").remove(0);
    let trigger = trigger(&runbook, AlertSource::Alertmanager);
    let error = evaluate(&runbook, trigger, &alert).expect_err("out of fuel");
    assert!(error.to_string().contains("fuel"), "{error}");
}

#[test]
fn malformed_payloads_are_refused_where_they_fail() {
    use AlertSource::{Alertmanager, Grafana, Json};
    assert_eq!(
        error(Alertmanager, "{\"version\": \"4\",\n \"status\": firing}"),
        "not a valid alertmanager payload: expected value at line 2, column 12"
    );
    assert_eq!(
        error(Alertmanager, ""),
        "not a valid alertmanager payload: EOF while parsing a value at line 1, column 0"
    );
    assert_eq!(
        error(Alertmanager, "[]"),
        "not a valid alertmanager payload: invalid type: sequence, expected a JSON object at line 1, column 0"
    );
    assert_eq!(
        error(Alertmanager, r#"{"version": "4", "status": "firing"}"#),
        "not a valid alertmanager payload: missing field `alerts` at line 1, column 36"
    );
    assert_eq!(
        error(Alertmanager, r#"{"version": "4", "status": "firing", "alerts": {}}"#),
        "not a valid alertmanager payload: invalid type: map, expected a sequence at line 1, column 47"
    );
    assert_eq!(
        error(Alertmanager, r#"{"version": "5", "status": "firing", "alerts": []}"#),
        "Alertmanager webhook payload version `5` is not supported: Steady reads version 4"
    );
    let long_version =
        format!(r#"{{"version": "{}", "status": "firing", "alerts": []}}"#, "9".repeat(5000));
    assert_eq!(
        error(Alertmanager, &long_version),
        format!(
            "Alertmanager webhook payload version `{}…` is not supported: Steady reads version 4",
            "9".repeat(40)
        )
    );
    assert_eq!(
        error(Grafana, r#"{"status": "pending", "alerts": []}"#),
        "not a valid grafana payload: unknown variant `pending`, expected `firing` or `resolved` at line 1, column 20"
    );
    assert_eq!(
        error(
            Grafana,
            r#"{"status": "firing", "alerts": [{"status": "firing", "labels": {"a": 1}, "startsAt": "2025-03-14T03:00:00Z"}]}"#
        ),
        "not a valid grafana payload: invalid type: integer `1`, expected a string at line 1, column 70"
    );
    assert_eq!(
        error(
            Grafana,
            r#"{"status": "firing", "alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]}"#
        ),
        "not a valid grafana payload: `yesterday` is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z at line 1, column 91"
    );
    assert_eq!(
        error(Grafana, r#"{"status": "firing", "alerts": [{"status": "firing", "labels": {}}]}"#),
        "not a valid grafana payload: missing field `startsAt` at line 1, column 66"
    );
    assert_eq!(
        error(Json, "[1, 2]"),
        "a json alert must be a JSON object, and this payload is an array"
    );
    assert_eq!(
        error(Json, r#"{"status": "critical"}"#),
        "not a valid json payload: unknown variant `critical`, expected `firing` or `resolved` at line 1, column 21"
    );
    assert_eq!(
        error(Json, "{} {}"),
        "not a valid json payload: trailing characters at line 1, column 4"
    );
}

#[test]
fn a_payload_over_a_mebibyte_is_refused_unread() {
    let mut body = vec![b' '; MAX_PAYLOAD_BYTES];
    body[0] = b'{';
    body[MAX_PAYLOAD_BYTES - 1] = b'}';
    assert!(parse_payload(AlertSource::Json, &body).is_ok(), "exactly 1 MiB is read");
    body.push(b' ');
    assert_eq!(
        parse_payload(AlertSource::Json, &body),
        Err(PayloadError::TooLarge { size: MAX_PAYLOAD_BYTES + 1 })
    );
    assert_eq!(
        PayloadError::TooLarge { size: MAX_PAYLOAD_BYTES + 1 }.to_string(),
        "the payload has 1048577 bytes; a hook reads at most 1048576 (1 MiB)"
    );
}

#[test]
fn a_long_unexpected_value_is_not_echoed_whole() {
    let long = "x".repeat(10_000);
    let body = format!(r#"{{"status": "{long}", "alerts": []}}"#);
    let message = error(AlertSource::Grafana, &body);
    assert!(message.len() < 300, "{message}");
    assert!(message.contains("…"), "{message}");
}

#[test]
fn the_shipped_failover_is_proposed_by_its_alert_after_a_dry_run() {
    let source = include_str!("../../../../runbooks/postgres-failover.yaml");
    let runbook = crate::parse(source).runbook.expect("the shipped runbook is valid");
    let [trigger] = runbook.triggers.as_slice() else { panic!("one trigger") };
    assert_eq!(trigger.then, TriggerAction::DryRun);
    let alert = alerts(AlertSource::Alertmanager, "alertmanager-firing.json").remove(0);
    let params = resolve(&runbook, trigger, &alert).unwrap().expect("the alert is answered");
    let shown: Vec<String> = params.iter().map(|(name, value)| format!("{name}={value}")).collect();
    assert_eq!(
        shown,
        [
            "cluster=main",
            "data_dir=/var/lib/postgresql/16/main",
            "max_lag_bytes=0",
            "standby_host=db2.example.com"
        ]
    );
}
