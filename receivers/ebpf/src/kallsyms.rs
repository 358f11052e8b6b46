//! Kernel addresses to `symbol+0xOFFSET`, from `/proc/kallsyms` (read once per receiver:
//! the kernel's own text does not move; module symbols are refreshed on a miss).

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// ~150,000 code symbols on a distribution kernel: kept as one string of names and two
/// flat arrays (~5 MiB) rather than a String per symbol (~10 MiB in small allocations).
pub struct Kallsyms {
    path: PathBuf,
    /// Sorted ascending.
    addrs: Vec<u64>,
    /// Where each symbol's name ends in `names`; it starts where the previous one ends.
    ends: Vec<u32>,
    names: String,
}

impl Kallsyms {
    pub fn load(path: &Path) -> Result<Kallsyms, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Kallsyms::from_reader(path, std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Symbols from text in kallsyms' format, e.g. a saved copy (also what the fuzz target
    /// feeds); `reload` rereads `path`.
    pub fn from_reader(path: &Path, reader: impl BufRead) -> std::io::Result<Kallsyms> {
        let mut k = Kallsyms { path: path.to_path_buf(), addrs: Vec::new(), ends: Vec::new(), names: String::new() };
        k.parse(reader)?;
        Ok(k)
    }

    /// Whether the addresses are real (kptr_restrict shows zeros to the unprivileged).
    pub fn usable(&self) -> bool {
        self.addrs.iter().any(|a| *a != 0)
    }

    /// The symbol at or below `addr`: (its address, its name).
    fn nearest(&self, addr: u64) -> Option<(u64, &str)> {
        let i = self.addrs.partition_point(|a| *a <= addr).checked_sub(1)?;
        let base = self.addrs[i];
        if base == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some((base, self.names.get(start..self.ends[i] as usize)?))
    }

    pub fn resolve(&self, addr: u64) -> Option<String> {
        let (base, name) = self.nearest(addr)?;
        Some(format!("{name}+0x{:X}", addr - base))
    }

    /// Only the symbol name, for the `podnet.drop.location` attribute.
    pub fn symbol(&self, addr: u64) -> Option<&str> {
        self.nearest(addr).map(|(_, name)| name)
    }

    pub fn reload(&mut self) {
        if let Ok(file) = std::fs::File::open(&self.path) {
            let _ = self.parse(std::io::BufReader::new(file));
        }
    }

    /// Lines are `ffffffff81000000 T _stext [module]`; code symbols only, as drop locations
    /// and stack frames are code addresses.
    fn parse(&mut self, reader: impl BufRead) -> std::io::Result<()> {
        let mut symbols: Vec<(u64, u32, u32)> = Vec::new();
        let mut names = String::new();
        for line in reader.lines() {
            let line = line?;
            let mut f = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else { continue };
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            if !matches!(kind, "T" | "t" | "W" | "w") || names.len() + name.len() > u32::MAX as usize {
                continue;
            }
            let start = names.len() as u32;
            names.push_str(name);
            symbols.push((addr, start, names.len() as u32));
        }
        symbols.sort_unstable_by_key(|(a, _, _)| *a);
        // Names in address order, so each one starts where the previous one ends.
        let mut sorted = String::with_capacity(names.len());
        self.addrs = Vec::with_capacity(symbols.len());
        self.ends = Vec::with_capacity(symbols.len());
        for (addr, start, end) in symbols {
            sorted.push_str(&names[start as usize..end as usize]);
            self.addrs.push(addr);
            self.ends.push(sorted.len() as u32);
        }
        self.names = sorted;
        Ok(())
    }
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
