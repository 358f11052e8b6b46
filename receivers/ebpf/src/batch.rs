//! Whole hash maps read in a few system calls. Iterating a map costs two `bpf()` calls per
//! entry (next key, then lookup): with the flow and drop tables full (~10,000 flows each at
//! 100 pods) that was ~40,000 calls and a tenth of the agent's CPU per collection.
//! `BPF_MAP_LOOKUP_BATCH` (Linux 5.6) returns thousands of entries per call. A kernel or map
//! type without it answers EINVAL (or ENOTSUPP/EOPNOTSUPP), and the caller iterates instead.

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::Map;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel's ENOTSUPP (524), which it returns for map types without batch operations.
const ENOTSUPP: i32 = 524;
const FIRST_BATCH: u32 = 4096;

/// The batch part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every (key, value bytes) of a hash map, LRU or per-CPU hash map of `V` values; split the
/// bytes with [`values`]. `Ok(None)`: the kernel cannot batch this map, iterate it.
pub fn read<K: aya::Pod, V: aya::Pod, T>(map: &Map, mut each: impl FnMut(K, &[u8]) -> T) -> Result<Option<Vec<T>>, std::io::Error> {
    let (data, per_cpu) = match map {
        Map::HashMap(d) | Map::LruHashMap(d) => (d, false),
        Map::PerCpuHashMap(d) | Map::PerCpuLruHashMap(d) => (d, true),
        _ => return Ok(None),
    };
    let entry_values = if per_cpu { aya::util::nr_cpus().map_err(|(_, e)| e)? * per_cpu_stride::<V>() } else { std::mem::size_of::<V>() };
    let key_size = std::mem::size_of::<K>();
    let fd = data.fd().as_fd().as_raw_fd();
    let mut count = FIRST_BATCH as usize;
    let (mut keys, mut values) = (vec![0u8; count * key_size], vec![0u8; count * entry_values]);
    // The kernel's position between calls (a bucket index for hash maps: 4 bytes).
    let (mut in_token, mut out_token) = (0u64, 0u64);
    let mut first = true;
    let mut out = Vec::new();
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw mut in_token as u64 },
            out_batch: &raw mut out_token as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: count as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: attr points at buffers of `count` keys and values of the sizes the map was
        // created with, and at two 8-byte tokens; all outlive the call.
        let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, &raw mut attr, std::mem::size_of::<BatchAttr>()) };
        let errno = if ret < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) } else { 0 };
        match errno {
            0 | libc::ENOENT => {}
            // A bucket holds more entries than the buffers: larger buffers, same position.
            libc::ENOSPC if count < 1 << 20 => {
                count *= 2;
                keys.resize(count * key_size, 0);
                values.resize(count * entry_values, 0);
                continue;
            }
            libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP if first => return Ok(None),
            _ => return Err(std::io::Error::from_raw_os_error(errno)),
        }
        let got = (attr.count as usize).min(count);
        for i in 0..got {
            // SAFETY: K is Pod (any bytes are a valid K); the slice holds exactly one key.
            let key: K = unsafe { std::ptr::read_unaligned(keys[i * key_size..].as_ptr().cast::<K>()) };
            out.push(each(key, &values[i * entry_values..(i + 1) * entry_values]));
        }
        if errno == libc::ENOENT {
            return Ok(Some(out));
        }
        in_token = out_token;
        first = false;
    }
}

/// Per-CPU values are laid out per possible CPU, each rounded up to 8 bytes.
fn per_cpu_stride<V>() -> usize {
    std::mem::size_of::<V>().div_ceil(8) * 8
}

/// An entry's values from [`read`]: one per possible CPU of a per-CPU map, the one value of a
/// shared map.
pub fn values<V: aya::Pod>(bytes: &[u8]) -> impl Iterator<Item = V> + '_ {
    bytes.chunks(per_cpu_stride::<V>()).filter(|c| c.len() >= std::mem::size_of::<V>()).map(|c| {
        // SAFETY: V is Pod; the chunk holds at least size_of::<V>() bytes.
        unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<V>()) }
    })
}
