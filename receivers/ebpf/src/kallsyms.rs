//! Kernel addresses to `symbol+0xOFFSET`, from `/proc/kallsyms` (read once per receiver:
//! the kernel's own text does not move; module symbols are refreshed on a miss).

use std::path::{Path, PathBuf};

pub struct Kallsyms {
    path: PathBuf,
    /// (address, name), sorted by address.
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    pub fn load(path: &Path) -> Result<Kallsyms, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Kallsyms { path: path.to_path_buf(), symbols: parse(&text) })
    }

    /// Whether the addresses are real (kptr_restrict shows zeros to the unprivileged).
    pub fn usable(&self) -> bool {
        self.symbols.iter().any(|(a, _)| *a != 0)
    }

    pub fn resolve(&self, addr: u64) -> Option<String> {
        let i = self.symbols.partition_point(|(a, _)| *a <= addr);
        let (base, name) = self.symbols.get(i.checked_sub(1)?)?;
        if *base == 0 {
            return None;
        }
        Some(format!("{name}+0x{:X}", addr - base))
    }

    /// Only the symbol name, for the `podnet.drop.location` attribute.
    pub fn symbol(&self, addr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|(a, _)| *a <= addr);
        let (base, name) = self.symbols.get(i.checked_sub(1)?)?;
        (*base != 0).then_some(name.as_str())
    }

    pub fn reload(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            self.symbols = parse(&text);
        }
    }
}

/// Lines are `ffffffff81000000 T _stext [module]`; text and data symbols alike, as drop
/// locations and stack frames are code addresses anyway.
fn parse(text: &str) -> Vec<(u64, String)> {
    let mut symbols: Vec<(u64, String)> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            if !matches!(kind, "T" | "t" | "W" | "w") {
                return None;
            }
            Some((addr, f.next()?.to_string()))
        })
        .collect();
    symbols.sort_unstable_by_key(|(a, _)| *a);
    symbols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_to_the_nearest_symbol_below() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut f,
            b"ffffffff81000100 T tcp_v4_rcv\nffffffff81000000 T _stext\nffffffff81000200 t nf_hook_slow\nffffffff82000000 D some_data\ngarbage line\n",
        )
        .unwrap();
        let k = Kallsyms::load(f.path()).unwrap();
        assert!(k.usable());
        assert_eq!(k.resolve(0xffffffff81000110).as_deref(), Some("tcp_v4_rcv+0x10"));
        assert_eq!(k.resolve(0xffffffff81000200).as_deref(), Some("nf_hook_slow+0x0"));
        assert_eq!(k.symbol(0xffffffff81000250), Some("nf_hook_slow"));
        assert_eq!(k.resolve(0x1000), None);
    }

    #[test]
    fn zeroed_addresses_are_not_usable() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"0000000000000000 T _stext\n0000000000000000 T tcp_v4_rcv\n").unwrap();
        let k = Kallsyms::load(f.path()).unwrap();
        assert!(!k.usable());
        assert_eq!(k.resolve(0xffffffff81000110), None);
    }
}
