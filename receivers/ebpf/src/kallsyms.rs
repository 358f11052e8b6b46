//! Kernel addresses to `symbol+0xOFFSET`, from `/proc/kallsyms`: the whole table in memory
//! where events carry stacks (many addresses), or only the addresses seen so far where
//! they carry one drop location each (a few dozen distinct sites: ~4.4 MiB of table saved).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How a receiver turns kernel addresses into symbols.
pub enum Symbols {
    /// Every code symbol, for stacks.
    Table(Kallsyms),
    /// Addresses resolved on first sight by one pass over the file, then remembered.
    Lazy(LazySymbols),
}

impl Symbols {
    /// `symbol+0xOFFSET` of each address, `None` where no code symbol is at or below it.
    pub fn resolve_all(&self, addrs: &[u64]) -> Vec<Option<String>> {
        match self {
            Symbols::Table(t) => addrs.iter().map(|a| t.resolve(*a)).collect(),
            Symbols::Lazy(l) => l.resolve_all(addrs),
        }
    }

    pub fn resolve(&self, addr: u64) -> Option<String> {
        self.resolve_all(&[addr]).pop().flatten()
    }
}

/// Addresses seen so far and their symbols. A miss reads the file once for every address
/// missing at that moment (~40 ms of kernel time for ~120,000 lines), so a stream of
/// events with the same few drop sites reads it a few times in all.
#[derive(Debug)]
pub struct LazySymbols {
    path: PathBuf,
    known: Mutex<HashMap<u64, Nearest>>,
}

/// The nearest code symbol at or below an address: (its address, its name).
type Nearest = Option<(u64, Box<str>)>;

/// Distinct addresses remembered; past it the memory starts over (a kernel with this many
/// distinct drop sites is already unusual).
const LAZY_CAPACITY: usize = 4096;

impl LazySymbols {
    /// Checks that `path` is readable and shows real addresses (kptr_restrict shows zeros
    /// to the unprivileged), reading only up to its first code symbol.
    pub fn open(path: &Path) -> Result<LazySymbols, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some((addr, _)) = code_symbol(&line) {
                return if addr != 0 {
                    Ok(LazySymbols { path: path.to_path_buf(), known: Mutex::new(HashMap::new()) })
                } else {
                    Err(format!("{}: addresses hidden (kptr_restrict)", path.display()))
                };
            }
        }
        Err(format!("{}: no code symbols", path.display()))
    }

    pub fn resolve_all(&self, addrs: &[u64]) -> Vec<Option<String>> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut missing: Vec<u64> = addrs.iter().copied().filter(|a| !known.contains_key(a)).collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            if known.len() + missing.len() > LAZY_CAPACITY {
                known.clear();
            }
            // Unreadable now (the file went away): the addresses stay unresolved, and are
            // tried again next time.
            if let Ok(found) = self.scan(&missing) {
                known.extend(missing.into_iter().zip(found));
            }
        }
        addrs.iter().map(|a| known.get(a).cloned().flatten().map(|(base, name)| format!("{name}+0x{:X}", a - base))).collect()
    }

    /// One pass over the file: for each address (sorted), the nearest code symbol at or below.
    fn scan(&self, sorted: &[u64]) -> std::io::Result<Vec<Nearest>> {
        let file = std::fs::File::open(&self.path)?;
        scan_nearest(std::io::BufReader::new(file), sorted)
    }
}

/// `addr` and `name` of a line such as `ffffffff81000000 T _stext [module]` when it is a
/// code symbol (drop locations and stack frames are code addresses).
fn code_symbol(line: &str) -> Option<(u64, &str)> {
    let mut f = line.split_whitespace();
    let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
    let addr = u64::from_str_radix(addr, 16).ok()?;
    matches!(kind, "T" | "t" | "W" | "w").then_some((addr, name))
}

/// For each address of `sorted`, the code symbol with the highest address at or below it,
/// from kallsyms text in any order (module symbols follow the kernel's own).
fn scan_nearest(reader: impl BufRead, sorted: &[u64]) -> std::io::Result<Vec<Nearest>> {
    let mut best: Vec<Nearest> = vec![None; sorted.len()];
    for line in reader.lines() {
        let line = line?;
        let Some((addr, name)) = code_symbol(&line) else { continue };
        if addr == 0 {
            continue;
        }
        // The addresses at or above this symbol take it unless they have a closer one; the
        // nearest symbol below only grows with the address, so the first one that has a
        // closer symbol means every later one does too. Of two symbols at one address the
        // later line wins, as in the table.
        for nearest in best.iter_mut().skip(sorted.partition_point(|a| *a < addr)) {
            match nearest {
                Some((b, _)) if *b > addr => break,
                _ => *nearest = Some((addr, name.into())),
            }
        }
    }
    Ok(best)
}

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
            let Some((addr, name)) = code_symbol(&line) else { continue };
            if names.len() + name.len() > u32::MAX as usize {
                continue;
            }
            let start = names.len() as u32;
            names.push_str(name);
            symbols.push((addr, start, names.len() as u32));
        }
        // Stable: of aliases at one address, the lookup below takes the file's last.
        symbols.sort_by_key(|(a, _, _)| *a);
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

    const TEXT: &[u8] = b"ffffffff81000100 T tcp_v4_rcv\nffffffff81000000 T _stext\nffffffff81000200 t nf_hook_slow\nffffffff82000000 D some_data\ngarbage line\nffffffffc0001000 t veth_xmit\t[veth]\nffffffff81000300 T alias_a\nffffffff81000300 T alias_b\n";

    #[test]
    fn lazy_symbols_resolve_as_the_table_does() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, TEXT).unwrap();
        let table = Symbols::Table(Kallsyms::load(f.path()).unwrap());
        let lazy = Symbols::Lazy(LazySymbols::open(f.path()).unwrap());
        // Unsorted, repeated, below every symbol, on a symbol, past the data symbol, in a
        // module, on two aliases.
        let addrs = [
            0xffffffff81000250,
            0xffffffff81000110,
            0x1000,
            0xffffffff81000200,
            0xffffffff82000010,
            0xffffffffc0001004,
            0xffffffff81000110,
            0xffffffff81000308,
        ];
        let want = table.resolve_all(&addrs);
        assert_eq!(want[1].as_deref(), Some("tcp_v4_rcv+0x10"));
        assert_eq!(want[4].as_deref(), Some("alias_b+0xFFFD10"), "data symbols are not code");
        assert_eq!(want[7].as_deref(), Some("alias_b+0x8"), "of aliases, the later line");
        assert_eq!(want[5].as_deref(), Some("veth_xmit+0x4"));
        assert_eq!(lazy.resolve_all(&addrs), want);
        // Remembered: the file can go and known addresses still resolve.
        let path = f.path().to_path_buf();
        drop(f);
        assert!(!path.exists());
        assert_eq!(lazy.resolve(0xffffffff81000110).as_deref(), Some("tcp_v4_rcv+0x10"));
        assert_eq!(lazy.resolve(0xffffffff81000310), None, "a new address with the file gone stays unresolved");
    }

    #[test]
    fn lazy_symbols_refuse_hidden_addresses() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"0000000000000000 T _stext\n").unwrap();
        assert!(LazySymbols::open(f.path()).unwrap_err().contains("kptr_restrict"));
        assert!(LazySymbols::open(Path::new("/nonexistent/kallsyms")).is_err());
    }

    #[test]
    fn lazy_symbols_match_the_table_on_this_kernel() {
        let path = Path::new("/proc/kallsyms");
        let (Ok(table), Ok(lazy)) = (Kallsyms::load(path), LazySymbols::open(path)) else {
            use podnet_pipeline::testing::{Lacks, skip};
            skip(Lacks::Root, "/proc/kallsyms unreadable or its addresses hidden (kptr_restrict): run as root");
            return;
        };
        // Addresses spread over the kernel's text, modules included.
        let step = (table.addrs.len() / 50).max(1);
        let addrs: Vec<u64> = table.addrs.iter().step_by(step).map(|a| a + 3).collect();
        assert_eq!(lazy.resolve_all(&addrs), addrs.iter().map(|a| table.resolve(*a)).collect::<Vec<_>>());
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
