// Compress length-prefixed (u32 little-endian) chunks from stdin with snap::raw::Encoder, the
// encoder rfs uses for v2 blocks, and write each result length-prefixed to stdout.
use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut encoder = snap::raw::Encoder::new();
    let mut size = [0u8; 4];
    while input.read_exact(&mut size).is_ok() {
        let mut chunk = vec![0u8; u32::from_le_bytes(size) as usize];
        input.read_exact(&mut chunk)?;
        let packed = encoder.compress_vec(&chunk).expect("snap compress");
        output.write_all(&(packed.len() as u32).to_le_bytes())?;
        output.write_all(&packed)?;
        output.flush()?;
    }
    Ok(())
}
