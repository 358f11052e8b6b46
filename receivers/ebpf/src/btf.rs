//! Reads the values of an enum from the running kernel's BTF (`/sys/kernel/btf/vmlinux`),
//! so drop and reset reasons are named as this kernel names them: the lists grow with
//! every release and their numbers move, so no table is compiled in.

use std::collections::BTreeMap;
use std::path::Path;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("{path}: cannot read: {reason}")]
    Read { path: String, reason: String },
    #[error("BTF data: {0}")]
    Malformed(String),
    #[error("BTF data has no enum {0}")]
    NoSuchEnum(String),
}

const MAGIC: u16 = 0xeb9f;

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| BtfError::Malformed(format!("truncated at byte {off}")))
}

fn string_at(strings: &[u8], off: u32) -> Result<&str, BtfError> {
    let rest = strings.get(off as usize..).ok_or_else(|| BtfError::Malformed(format!("string offset {off} out of range")))?;
    let end = rest.iter().position(|&c| c == 0).ok_or_else(|| BtfError::Malformed("unterminated string".into()))?;
    std::str::from_utf8(&rest[..end]).map_err(|_| BtfError::Malformed(format!("string at {off} is not UTF-8")))
}

/// Bytes that follow a type's 12-byte header, by kind (`include/uapi/linux/btf.h`).
fn extra_len(kind: u32, vlen: usize) -> Result<usize, BtfError> {
    Ok(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        other => return Err(BtfError::Malformed(format!("unknown type kind {other}"))),
    })
}

/// The members of enum `name`: value → member name.
pub fn enum_values(data: &[u8], name: &str) -> Result<BTreeMap<u64, String>, BtfError> {
    if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
        return Err(BtfError::Malformed("no BTF header (little-endian magic 0xeb9f)".into()));
    }
    let hdr_len = u32_at(data, 4)? as usize;
    let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
    let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
    let section = |off: usize, len: usize| {
        data.get(hdr_len + off..hdr_len + off + len).ok_or_else(|| BtfError::Malformed("section out of range".into()))
    };
    let types = section(type_off, type_len)?;
    let strings = section(str_off, str_len)?;
    let mut pos = 0;
    while pos + 12 <= types.len() {
        let name_off = u32_at(types, pos)?;
        let info = u32_at(types, pos + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let body = pos + 12;
        let next = body + extra_len(kind, vlen)?;
        if next > types.len() {
            return Err(BtfError::Malformed(format!("type at byte {pos} runs past the type section")));
        }
        if (kind == 6 || kind == 19) && name_off != 0 && string_at(strings, name_off)? == name {
            let signed = info & (1 << 31) != 0;
            let mut out = BTreeMap::new();
            for i in 0..vlen {
                let (member, value) = if kind == 6 {
                    let m = body + i * 8;
                    let raw = u32_at(types, m + 4)?;
                    let v = if signed { raw as i32 as i64 as u64 } else { u64::from(raw) };
                    (u32_at(types, m)?, v)
                } else {
                    let m = body + i * 12;
                    (u32_at(types, m)?, u64::from(u32_at(types, m + 4)?) | (u64::from(u32_at(types, m + 8)?) << 32))
                };
                out.insert(value, string_at(strings, member)?.to_string());
            }
            return Ok(out);
        }
        pos = next;
    }
    Err(BtfError::NoSuchEnum(name.to_string()))
}

/// The kernel's BTF blob at `path` (several megabytes: read it once for every enum).
pub fn read(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|e| BtfError::Read { path: path.display().to_string(), reason: e.to_string() })
}

/// Reason names of one enum, with the common prefix the tracepoints also leave out
/// (`SKB_DROP_REASON_NO_SOCKET` → `NO_SOCKET`).
#[derive(Clone, Debug, Default)]
pub struct ReasonNames {
    names: BTreeMap<u64, String>,
}

impl ReasonNames {
    pub fn new(values: BTreeMap<u64, String>, prefix: &str) -> ReasonNames {
        let names = values.into_iter().map(|(v, n)| (v, n.strip_prefix(prefix).map(str::to_string).unwrap_or(n))).collect();
        ReasonNames { names }
    }

    /// The members of `enum_name` in a BTF blob (see [`read`]).
    pub fn from_btf(data: &[u8], enum_name: &str, prefix: &str) -> Result<ReasonNames, BtfError> {
        Ok(ReasonNames::new(enum_values(data, enum_name)?, prefix))
    }

    /// The name of `value`, or the number itself when the kernel has no name for it.
    pub fn name(&self, value: u32) -> String {
        self.names.get(&u64::from(value)).cloned().unwrap_or_else(|| value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with an INT, a STRUCT of one member and the enum `colour`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0colour\0RED\0BLUE\0".to_vec();
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_le_bytes()));
        push(&[1, 1 << 24, 4, 32]); // int
        push(&[5, (4 << 24) | 1, 4, 7, 1, 0]); // struct s { int a; }
        push(&[9, (6 << 24) | 2, 4, 16, 0, 20, 7]); // enum colour { RED = 0, BLUE = 7 }
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn reads_an_enum_after_other_kinds() {
        let v = enum_values(&blob(), "colour").unwrap();
        assert_eq!(v.into_iter().collect::<Vec<_>>(), vec![(0, "RED".to_string()), (7, "BLUE".to_string())]);
        assert_eq!(enum_values(&blob(), "shape").unwrap_err(), BtfError::NoSuchEnum("shape".into()));
    }

    #[test]
    fn malformed_data_is_an_error() {
        assert!(matches!(enum_values(b"not btf at all, really not", "x"), Err(BtfError::Malformed(_))));
        let mut b = blob();
        b.truncate(40);
        assert!(matches!(enum_values(&b, "colour"), Err(BtfError::Malformed(_))));
    }

    #[test]
    fn names_strip_the_prefix_and_fall_back_to_the_number() {
        let n = ReasonNames::new(BTreeMap::from([(3, "SKB_DROP_REASON_NO_SOCKET".into()), (1, "SKB_CONSUMED".into())]), "SKB_DROP_REASON_");
        assert_eq!(n.name(3), "NO_SOCKET");
        assert_eq!(n.name(1), "SKB_CONSUMED");
        assert_eq!(n.name(999), "999");
    }

    #[test]
    fn running_kernel_names_its_drop_reasons() {
        if !Path::new(VMLINUX).exists() {
            podnet_pipeline::testing::skip(podnet_pipeline::testing::Lacks::Kernel, &format!("{VMLINUX} absent (kernel without BTF)"));
            return;
        }
        let n = ReasonNames::from_btf(&read(Path::new(VMLINUX)).unwrap(), "skb_drop_reason", "SKB_DROP_REASON_").unwrap();
        assert!(n.names.values().any(|v| v == "NO_SOCKET"), "{:?}", n.names);
        assert!(n.names.values().any(|v| v == "NETFILTER_DROP"));
    }
}
