//! `${env:VAR}` expansion on the raw config text, before YAML parsing (as the Collector
//! and Vector do): `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` and `$$` for a literal `$`.
//! Comment lines are left alone, so a commented-out reference cannot break a config.

use std::collections::BTreeSet;

/// The expanded text, plus the variables referenced but unset (expanded to "", as the
/// Collector does; the caller logs them).
#[derive(Debug, PartialEq)]
pub struct Expanded {
    pub text: String,
    pub unset: BTreeSet<String>,
    /// (variable, value) of every reference the environment filled: what `print-config`
    /// shows as `${env:NAME}` rather than as its value.
    pub from_env: Vec<(String, String)>,
}

/// What expansion saw besides the text.
#[derive(Default)]
struct Seen {
    unset: BTreeSet<String>,
    from_env: Vec<(String, String)>,
}

pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Expanded, String> {
    let mut out = String::with_capacity(text.len());
    let mut seen = Seen::default();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        expand_line(line, index + 1, &lookup, &mut out, &mut seen)?;
    }
    Ok(Expanded { text: out, unset: seen.unset, from_env: seen.from_env })
}

fn expand_line(
    line: &str,
    line_no: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    seen: &mut Seen,
) -> Result<(), String> {
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start.find('}').ok_or_else(|| {
                format!("line {line_no}: unterminated \"${{\": close the reference with \"}}\" (write \"$$\" for a literal \"$\")")
            })?;
            let body = &body_start[..end];
            out.push_str(&resolve(body, line_no, lookup, seen)?);
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(())
}

fn resolve(body: &str, line_no: usize, lookup: &impl Fn(&str) -> Option<String>, seen: &mut Seen) -> Result<String, String> {
    let reference = match body.strip_prefix("env:") {
        Some(r) => r,
        // KubeSkoop's pod-label template (`additional_labels: ["app=${labels:app}"]`), filled
        // per pod by k8s_attributes, not by the config loader.
        None if body.starts_with("labels:") => return Ok(format!("${{{body}}}")),
        None => match body.split_once(':') {
            Some((scheme, rest)) if !rest.starts_with('-') && is_valid_name(scheme) => {
                return Err(format!(
                    "line {line_no}: unsupported config source \"{scheme}\" in \"${{{body}}}\": only ${{env:NAME}} is supported"
                ));
            }
            _ => body,
        },
    };
    let (name, default) = match reference.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if !is_valid_name(name) {
        return Err(format!("line {line_no}: environment variable \"{name}\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$"));
    }
    let value = match (lookup(name), default) {
        (Some(v), _) if !v.is_empty() => {
            seen.from_env.push((name.to_string(), v.clone()));
            v
        }
        (_, Some(d)) => d.to_string(),
        (Some(v), None) => v,
        (None, None) => {
            seen.unset.insert(name.to_string());
            String::new()
        }
    };
    if value.contains('\n') {
        return Err(format!(
            "line {line_no}: environment variable \"{name}\" contains a newline, which could change the config's structure"
        ));
    }
    Ok(value)
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "LISTEN" => Some("1.2.3.4:9".into()),
            "EMPTY" => Some(String::new()),
            "NL" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn x(text: &str) -> Result<String, String> {
        expand_env(text, env).map(|e| e.text)
    }

    #[test]
    fn forms() {
        assert_eq!(x("a: ${env:LISTEN}\n").unwrap(), "a: 1.2.3.4:9\n");
        assert_eq!(x("a: ${LISTEN}").unwrap(), "a: 1.2.3.4:9");
        assert_eq!(x("a: ${NOPE:-x}").unwrap(), "a: x");
        assert_eq!(x("a: ${env:NOPE:-0.0.0.0:9102}").unwrap(), "a: 0.0.0.0:9102");
        assert_eq!(x("a: ${env:EMPTY:-d}").unwrap(), "a: d", "empty takes the default, like the shell's :-");
        assert_eq!(x("a: $${env:LISTEN} $5 $").unwrap(), "a: ${env:LISTEN} $5 $");
        assert_eq!(x("url: http://${env:LISTEN}/x").unwrap(), "url: http://1.2.3.4:9/x");
    }

    #[test]
    fn unset_is_empty_and_reported() {
        let e = expand_env("a: ${env:NOPE}\nb: ${env:NOPE2}", env).unwrap();
        assert_eq!(e.text, "a: \nb: ");
        assert_eq!(e.unset.into_iter().collect::<Vec<_>>(), vec!["NOPE", "NOPE2"]);
    }

    #[test]
    fn comments_are_not_expanded() {
        assert_eq!(x("  # ${env:bad name}\na: 1").unwrap(), "  # ${env:bad name}\na: 1");
    }

    #[test]
    fn errors() {
        assert_eq!(
            x("a: ${env:1X}").unwrap_err(),
            "line 1: environment variable \"1X\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$"
        );
        assert_eq!(
            x("\na: ${env:X").unwrap_err(),
            "line 2: unterminated \"${\": close the reference with \"}\" (write \"$$\" for a literal \"$\")"
        );
        assert_eq!(
            x("a: ${file:/x}").unwrap_err(),
            "line 1: unsupported config source \"file\" in \"${file:/x}\": only ${env:NAME} is supported"
        );
        assert!(x("a: ${env:NL}").unwrap_err().contains("contains a newline"));
    }

    #[test]
    fn pod_label_templates_pass_through() {
        assert_eq!(x("a: [\"app=${labels:app}\"]").unwrap(), "a: [\"app=${labels:app}\"]");
    }
}
