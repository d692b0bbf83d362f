//! Reading a file a user names (a config, a data file, a checkpoint's
//! state): only a regular file, so that a device (`/dev/zero`), a FIFO or a
//! directory where a file is expected is an error at once, not a read that
//! never ends or fills the memory.

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// `path`'s metadata, refusing anything but a regular file (symlinks are
/// followed).
pub fn regular(path: &Path) -> std::io::Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        Ok(meta)
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a directory, device or FIFO)",
        ))
    }
}

/// The bytes of regular file `path`.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let len = regular(path)?.len();
    let mut bytes = Vec::with_capacity(len as usize);
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The text of regular file `path` (UTF-8).
pub fn read_regular_to_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular(path)?).map_err(|e| Error::new(ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_and_files_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "text").unwrap();
        assert_eq!(read_regular_to_string(&file).unwrap(), "text");
        let e = read_regular(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        if Path::new("/dev/zero").exists() {
            let e = read_regular(Path::new("/dev/zero")).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        assert_eq!(
            read_regular(&dir.path().join("none")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
