//! Unsigned LEB128 varints as go-varint reads them: minimal, at most 9 bytes (63 bits).

/// Append `v` as an unsigned varint.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Read a varint from the front of `buf`: `(value, bytes used)`.
/// Rejects non-minimal encodings and values past 2^63, like go-varint.
pub fn get(buf: &[u8]) -> Result<(u64, usize), &'static str> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i >= 9 {
            return Err("varints larger than uint63 not supported");
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err("varint not minimally encoded");
            }
            return Ok((v, i + 1));
        }
    }
    Err("varint truncated")
}
