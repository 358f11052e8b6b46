//! `/proc/net/softnet_stat`: one line of hexadecimal counters per online CPU. The kernel
//! has added columns over time; the first three (processed, dropped, time_squeeze) are
//! always there, and from 5.x the 13th is the CPU's index (offline CPUs have no line, so
//! the row number is not the CPU number).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct SoftnetError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSoftnet {
    pub cpu: u32,
    pub processed: u64,
    pub dropped: u64,
    pub time_squeeze: u64,
}

pub fn parse(text: &str) -> Result<Vec<CpuSoftnet>, SoftnetError> {
    let mut out = Vec::new();
    for (row, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let err = |reason: String| SoftnetError { line: row + 1, reason };
        let cols: Vec<u64> = line
            .split_whitespace()
            .map(|c| u64::from_str_radix(c, 16).map_err(|_| err(format!("\"{c}\" is not hexadecimal"))))
            .collect::<Result<_, _>>()?;
        if cols.len() < 3 {
            return Err(err(format!("expected at least 3 columns, found {}", cols.len())));
        }
        let cpu = if cols.len() >= 13 { cols[12] as u32 } else { row as u32 };
        out.push(CpuSoftnet { cpu, processed: cols[0], dropped: cols[1], time_squeeze: cols[2] });
    }
    Ok(out)
}
