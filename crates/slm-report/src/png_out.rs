//! PNG encoding and the atomic write of the file.
//!
//! Owns turning an RGB buffer into PNG bytes (the `png` crate, 8-bit RGB) and putting them on
//! disk so that a reader never sees a half-written image: the bytes go to a temporary file in
//! the target's directory, are flushed and fsynced, then renamed over the target, and the
//! directory is fsynced (Unix) so the rename survives a crash. The image is fully encoded in
//! memory first, so an encoding error leaves nothing behind. Missing parent directories are
//! created (`plots/` in a run directory).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use slm_core::error::IoContext;
use slm_core::{Error, Result};

/// Encodes a `width` × `height` RGB buffer (3 bytes per pixel, row-major) as PNG bytes.
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected {
        return Err(Error::invalid(format!(
            "RGB buffer of {} bytes for a {width}x{height} image (expected {expected})",
            rgb.len()
        )));
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Best);
        let mut writer = encoder.write_header().map_err(encode_error)?;
        writer.write_image_data(rgb).map_err(encode_error)?;
        writer.finish().map_err(encode_error)?;
    }
    Ok(out)
}

/// Encodes the image and writes it to `path` atomically.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let bytes = encode_png(width, height, rgb)?;
    write_atomic(path, &bytes)
}

fn encode_error(e: png::EncodingError) -> Error {
    Error::msg(format!("PNG encoding failed: {e}"))
}

/// Writes `bytes` to `path`: temporary file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_path(&dir)?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_path(&tmp)?;
        file.write_all(bytes).with_path(&tmp)?;
        file.flush().with_path(&tmp)?;
        file.sync_all().with_path(&tmp)?;
        drop(file);
        std::fs::rename(&tmp, path).with_path(path)
    })();
    if result.is_err() {
        // Best effort: the temporary file may not even exist.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_dir(&dir)
}

/// Makes a rename inside `dir` durable (Unix); a no-op elsewhere.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).with_path(dir)?;
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, File::open);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(bytes);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn round_trips() {
        let rgb: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let bytes = encode_png(4, 3, &rgb).unwrap();
        assert_eq!(decode(&bytes), (4, 3, rgb));
    }

    #[test]
    fn wrong_buffer_size_is_rejected() {
        let err = encode_png(4, 3, &[0; 5]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }

    #[test]
    fn writes_atomically_into_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plots").join("x.png");
        write_png(&path, 2, 2, &[255; 12]).unwrap();
        write_png(&path, 2, 2, &[0; 12]).unwrap();
        let (w, h, rgb) = decode(&std::fs::read(&path).unwrap());
        assert_eq!((w, h, rgb), (2, 2, vec![0; 12]));
        // No temporary files left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
