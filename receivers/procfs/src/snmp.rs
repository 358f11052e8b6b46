//! `/proc/<pid>/net/snmp` and `/proc/<pid>/net/netstat` (pairs of `Section: names` /
//! `Section: values` lines), and `/proc/<pid>/net/snmp6` (`Name value` lines).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnmpError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Counters of one section (`Tcp`, `TcpExt`), in the kernel's order, borrowing the names
/// from the file's text (no allocation per field: this runs for every namespace).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section<'a> {
    pub name: &'a str,
    pub fields: Vec<(&'a str, i64)>,
}

impl Section<'_> {
    pub fn get(&self, field: &str) -> Option<i64> {
        self.fields.iter().find(|(f, _)| *f == field).map(|(_, v)| *v)
    }
}

/// Parses the paired-line format. A header without its value line, a count mismatch or a
/// non-numeric value fails the file: half a section would be misread as counter resets.
pub fn parse_sections(text: &str) -> Result<Vec<Section<'_>>, SnmpError> {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l)).collect();
    let mut sections = Vec::new();
    for pair in lines.chunks(2) {
        let (hline, header) = pair[0];
        let Some(&(vline, values)) = pair.get(1) else {
            return Err(SnmpError::Line { line: hline, reason: "header line without a value line".into() });
        };
        let (hname, hfields) =
            header.split_once(':').ok_or_else(|| SnmpError::Line { line: hline, reason: "no \"Section:\" prefix".into() })?;
        let (vname, vfields) =
            values.split_once(':').ok_or_else(|| SnmpError::Line { line: vline, reason: "no \"Section:\" prefix".into() })?;
        if hname != vname {
            return Err(SnmpError::Line {
                line: vline,
                reason: format!("value line of section \"{vname}\" follows header of \"{hname}\""),
            });
        }
        let names: Vec<&str> = hfields.split_whitespace().collect();
        let nums: Vec<&str> = vfields.split_whitespace().collect();
        if names.len() != nums.len() {
            return Err(SnmpError::Line {
                line: vline,
                reason: format!("section {hname}: {} names but {} values", names.len(), nums.len()),
            });
        }
        let mut fields = Vec::with_capacity(names.len());
        for (n, v) in names.iter().zip(&nums) {
            let value =
                v.parse::<i64>().map_err(|_| SnmpError::Line { line: vline, reason: format!("{hname}:{n}: \"{v}\" is not a number") })?;
            fields.push((*n, value));
        }
        sections.push(Section { name: hname, fields });
    }
    Ok(sections)
}

/// Parses `snmp6` into sections by prefix (`Ip6`, `Icmp6`, `Udp6`, `UdpLite6`), field names
/// without the prefix (`Ip6InReceives` → section `Ip6`, field `InReceives`).
pub fn parse_snmp6(text: &str) -> Result<Vec<Section<'_>>, SnmpError> {
    const PREFIXES: [&str; 4] = ["UdpLite6", "Icmp6", "Udp6", "Ip6"];
    let mut sections: Vec<Section<'_>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SnmpError::Line { line: i + 1, reason: "expected \"Name value\"".into() });
        };
        let value =
            value.parse::<i64>().map_err(|_| SnmpError::Line { line: i + 1, reason: format!("{name}: \"{value}\" is not a number") })?;
        let (section, field) = match PREFIXES.iter().find(|p| name.starts_with(**p)) {
            Some(p) => (*p, &name[p.len()..]),
            None => ("Other", name),
        };
        match sections.iter_mut().find(|s| s.name == section) {
            Some(s) => s.fields.push((field, value)),
            None => sections.push(Section { name: section, fields: vec![(field, value)] }),
        }
    }
    Ok(sections)
}

/// `ActiveOpens` → `active_opens`, `TCPSynRetrans` → `tcp_syn_retrans`: OTel-style names
/// from kernel field names.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            // "OKs", "Pkts": a plural "s" after an acronym does not start a new word.
            let plural_s = chars.get(i + 1) == Some(&'s') && chars.get(i + 2).is_none_or(|n| n.is_ascii_uppercase());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()) && !plural_s;
            if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_of_kernel_names() {
        assert_eq!(snake_case("ActiveOpens"), "active_opens");
        assert_eq!(snake_case("TCPSynRetrans"), "tcp_syn_retrans");
        assert_eq!(snake_case("PAWSEstab"), "paws_estab");
        assert_eq!(snake_case("InCsumErrors"), "in_csum_errors");
        assert_eq!(snake_case("TCPMemoryPressuresChrono"), "tcp_memory_pressures_chrono");
        assert_eq!(snake_case("ReasmOKs"), "reasm_oks");
        assert_eq!(snake_case("TW"), "tw");
    }
}
