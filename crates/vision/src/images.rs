//! Image grids as PNG files: the report's sample grids and `cogrpo sample
//! --png`. White ink on black, as the digits are stored; images are scaled
//! up by nearest neighbour and separated by a gray gap.

use std::path::Path;

use anyhow::Context;
use envs::image::GrayImage;

/// Gray value of the gaps between images.
const GAP: u8 = 96;

/// Encodes a grid (`rows[r][c]`) of same-size images, each pixel drawn as a
/// `scale` x `scale` square; rows may have different lengths.
pub fn grid_png(rows: &[Vec<GrayImage>], scale: usize) -> anyhow::Result<Vec<u8>> {
    let first = rows.iter().flatten().next().context("no images to draw")?;
    let (w, h) = (first.width, first.height);
    if let Some(odd) = rows
        .iter()
        .flatten()
        .find(|im| (im.width, im.height) != (w, h))
    {
        anyhow::bail!(
            "images differ in size: {}x{} and {}x{}",
            w,
            h,
            odd.width,
            odd.height
        );
    }
    let scale = scale.max(1);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (cell_w, cell_h) = (w * scale + scale, h * scale + scale);
    let (width, height) = (cols * cell_w + scale, rows.len() * cell_h + scale);
    let mut canvas = vec![GAP; width * height];
    for (r, row) in rows.iter().enumerate() {
        for (c, im) in row.iter().enumerate() {
            let (x0, y0) = (scale + c * cell_w, scale + r * cell_h);
            for (i, &v) in im.pixels.iter().enumerate() {
                let gray = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                let (px, py) = (x0 + (i % w) * scale, y0 + (i / w) * scale);
                for dy in 0..scale {
                    let line = (py + dy) * width + px;
                    canvas[line..line + scale].fill(gray);
                }
            }
        }
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("encoding PNG")?;
    writer.write_image_data(&canvas).context("encoding PNG")?;
    writer.finish().context("encoding PNG")?;
    Ok(bytes)
}

/// Writes [`grid_png`] to `path` atomically.
pub fn write_grid_png(path: &Path, rows: &[Vec<GrayImage>], scale: usize) -> anyhow::Result<()> {
    let bytes = grid_png(rows, scale)?;
    mdm::atomic::write(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Decodes an 8-bit grayscale PNG: `(width, height, pixels)`.
pub fn read_gray_png(bytes: &[u8]) -> anyhow::Result<(usize, usize, Vec<u8>)> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .context("not a PNG")?;
    let size = reader
        .output_buffer_size()
        .context("PNG too large to decode")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).context("decoding PNG")?;
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        anyhow::bail!(
            "expected an 8-bit grayscale PNG, got {:?} {:?}",
            info.color_type,
            info.bit_depth
        );
    }
    buf.truncate(info.buffer_size());
    Ok((info.width as usize, info.height as usize, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u32) -> GrayImage {
        GrayImage {
            width: 3,
            height: 2,
            pixels: (0..6).map(|i| ((i * 7 + seed) % 5) as f32 / 4.0).collect(),
        }
    }

    #[test]
    fn a_grid_round_trips_through_png() {
        let rows = vec![vec![image(0), image(1)], vec![image(2)]];
        let scale = 2;
        let bytes = grid_png(&rows, scale).unwrap();
        let (w, h, px) = read_gray_png(&bytes).unwrap();
        // Two columns of 3x2 images at scale 2 with 2-pixel gaps.
        assert_eq!((w, h), (2 * (3 * 2 + 2) + 2, 2 * (2 * 2 + 2) + 2));
        for (r, row) in rows.iter().enumerate() {
            for (c, im) in row.iter().enumerate() {
                for (i, &v) in im.pixels.iter().enumerate() {
                    let x = scale + c * 8 + (i % 3) * scale + 1;
                    let y = scale + r * 6 + (i / 3) * scale + 1;
                    assert_eq!(
                        px[y * w + x],
                        (v * 255.0).round() as u8,
                        "row {r} col {c} pixel {i}"
                    );
                }
            }
        }
        // The missing cell of the second row is gap.
        assert_eq!(px[(scale + 6 + 1) * w + scale + 8 + 1], GAP);
        let odd = GrayImage {
            width: 2,
            height: 2,
            pixels: vec![0.0; 4],
        };
        assert!(grid_png(&[vec![image(0), odd]], 1).is_err());
        assert!(grid_png(&[], 1).is_err());
    }
}
